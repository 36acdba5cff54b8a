#!/usr/bin/env python3
"""Moves the references to ocistep's release in the CI wiring to a new
release, pinned by digest:

  tasks/, pipelines/   the OCISTEP_IMAGE defaults (and the tasks' READMEs):
                       REPOSITORY:VERSION@NONROOT_DIGEST
  templates/           the component's image: REPOSITORY:VERSION-shell@SHELL_DIGEST,
                       and the release .ocistep-install installs: VERSION
  examples/gitlab/     the component release the example includes: @VERSION
  action.yml           the release the action installs, and the sha256 of
                       that release's SHA256SUMS, which it checks

  pin_release.py [--root DIR] [--repository REPO] VERSION NONROOT_DIGEST SHELL_DIGEST SUMS_SHA256

The references it finds are ghcr.io/ocistep/ocistep:X.Y.Z[-shell|-root],
pinned or not; --repository writes another repository name (a dry run's
loopback registry). Fails when a file it should change has no reference.
"""
import argparse
import glob
import os
import re
import sys

DEFAULT_REPOSITORY = "ghcr.io/ocistep/ocistep"
REFERENCE = re.compile(
    re.escape(DEFAULT_REPOSITORY)
    + r":[0-9]+\.[0-9]+\.[0-9]+(?P<variant>-shell|-root)?(?:@sha256:[0-9a-f]{64})?(?![\w.@-])")


def checked(pattern, value, what):
    if not re.fullmatch(pattern, value):
        sys.exit(f"error: {what} {value!r} is not of the form {pattern}")
    return value


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--repository", default=DEFAULT_REPOSITORY)
    ap.add_argument("version")
    ap.add_argument("nonroot_digest")
    ap.add_argument("shell_digest")
    ap.add_argument("sums_sha256")
    a = ap.parse_args()
    version = checked(r"[0-9]+\.[0-9]+\.[0-9]+", a.version, "version")
    digest = r"sha256:[0-9a-f]{64}"
    pins = {
        None: f"{a.repository}:{version}@{checked(digest, a.nonroot_digest, 'digest')}",
        "-shell": f"{a.repository}:{version}-shell@{checked(digest, a.shell_digest, 'digest')}",
    }
    sums = checked(r"[0-9a-f]{64}", a.sums_sha256, "SHA256SUMS sha256")

    def pin(match):
        if match["variant"] not in pins:
            sys.exit(f"error: no digest for {match[0]}")
        return pins[match["variant"]]

    root = os.path.abspath(a.root)
    files = sorted(glob.glob(f"{root}/tasks/*/*/*.yaml") + glob.glob(f"{root}/tasks/*/*/README.md")
                   + glob.glob(f"{root}/pipelines/*.yaml") + [f"{root}/templates/ocistep.yml"])
    for path in files:
        with open(path) as f:
            text = f.read()
        new, count = REFERENCE.subn(pin, text)
        if count == 0 and path.endswith((".yaml", ".yml")):
            sys.exit(f"error: {os.path.relpath(path, root)} names no ocistep release")
        with open(path, "w") as f:
            f.write(new)
        print(f"{os.path.relpath(path, root)}: {count} reference(s)")

    component = os.path.join(root, "templates/ocistep.yml")
    with open(component) as f:
        text = f.read()
    text, count = re.subn(r'(\n    version:\n      default: )"[^"]*"', rf'\g<1>"{version}"', text)
    if count != 1:
        sys.exit("error: templates/ocistep.yml has no version input")
    with open(component, "w") as f:
        f.write(text)
    example = os.path.join(root, "examples/gitlab/.gitlab-ci.yml")
    if os.path.exists(example):
        with open(example) as f:
            text = f.read()
        text, count = re.subn(r"(/ocistep/ocistep/ocistep@)[0-9.]+", rf"\g<1>{version}", text)
        if count != 1:
            sys.exit("error: examples/gitlab/.gitlab-ci.yml includes no ocistep component release")
        with open(example, "w") as f:
            f.write(text)

    action = os.path.join(root, "action.yml")
    with open(action) as f:
        text = f.read()
    text, versions = re.subn(r'(OCISTEP_PINNED_VERSION: )"[^"]*"', rf'\g<1>"{version}"', text)
    text, sums_pins = re.subn(r'(OCISTEP_PINNED_SUMS: )"[^"]*"', rf'\g<1>"{sums}"', text)
    if (versions, sums_pins) != (1, 1):
        sys.exit("error: action.yml has no OCISTEP_PINNED_VERSION and OCISTEP_PINNED_SUMS")
    with open(action, "w") as f:
        f.write(text)
    print(f"action.yml: ocistep {version}, SHA256SUMS sha256 {sums}")


if __name__ == "__main__":
    main()
