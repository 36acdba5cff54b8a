#!/usr/bin/env python3
"""Writes an OCI image layout of one ocistep image variant, built without a
container engine on an empty base, deterministically (the same inputs give
the same digests):

  nonroot  /ocistep and CA certificates; user 65532 (the Tekton tasks' image)
  root     the same as user 0
  shell    the same plus a static busybox (/bin/sh and its applets, /tmp),
           ocistep also at /usr/local/bin/ocistep; user 65532, CMD sh
           (GitLab's docker executor runs job scripts in a shell)

The image carries the build machine's CA certificates, which a TLS
registry's certificate is checked against (there is no other system here).

  image_layout.py --binary B --variant V --arch A --version X --revision R OUT
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SOURCE = "https://github.com/ocistep/ocistep"
DESCRIPTION = ("A CI step that moves source bundles and images through OCI "
               "registries for native multi-architecture builds")
EPOCH = "1970-01-01T00:00:00Z"


def entry(name, mode, content=None, link=None):
    """A tar entry owned by root with mtime 0: a directory, file or symlink."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        return info, None
    if content is None:
        info.type = tarfile.DIRTYPE
        return info, None
    info.size = len(content)
    return info, io.BytesIO(content)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def layer_entries(binary, variant, busybox):
    """Every entry of the one layer, parents before children."""
    entries = [
        ("etc", 0o755, None, None),
        ("etc/ssl", 0o755, None, None),
        ("etc/ssl/certs", 0o755, None, None),
        ("etc/ssl/certs/ca-certificates.crt", 0o644, read(CA_BUNDLE), None),
        ("ocistep", 0o755, read(binary), None),
    ]
    if variant == "shell":
        applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                                 text=True).stdout.split()
        entries += [
            ("bin", 0o755, None, None),
            ("bin/busybox", 0o755, read(busybox), None),
            ("tmp", 0o1777, None, None),
            ("usr", 0o755, None, None),
            ("usr/local", 0o755, None, None),
            ("usr/local/bin", 0o755, None, None),
            ("usr/local/bin/ocistep", 0o777, None, "/ocistep"),
        ]
        entries += [(f"bin/{a}", 0o777, None, "busybox")
                    for a in sorted(set(applets)) if a != "busybox"]
    return entries


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True, help="the static ocistep binary")
    ap.add_argument("--variant", choices=["nonroot", "root", "shell"], required=True)
    ap.add_argument("--arch", required=True, help="OCI architecture, e.g. amd64")
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", default="unknown", help="the commit")
    ap.add_argument("--busybox", default="/bin/busybox", help="a static busybox (shell)")
    ap.add_argument("out", help="the layout directory to write (replaced)")
    args = ap.parse_args()
    if not os.path.isfile(CA_BUNDLE):
        sys.exit(f"error: {CA_BUNDLE} is missing; install ca-certificates")
    if args.variant == "shell" and b"INTERP" in subprocess.run(
            ["readelf", "--program-headers", args.busybox], check=True,
            capture_output=True).stdout:
        sys.exit(f"error: {args.busybox} is not static; install busybox-static")

    blobs = os.path.join(args.out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put_blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, mode, content, link in layer_entries(args.binary, args.variant, args.busybox):
            t.addfile(*entry(name, mode, content, link))
    layer_tar = tar.getvalue()
    layer = put_blob(gzip.compress(layer_tar, compresslevel=9, mtime=0))

    title = "ocistep (shell)" if args.variant == "shell" else "ocistep"
    labels = {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.description": DESCRIPTION,
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": SOURCE,
    }
    image_config = {
        "User": "0:0" if args.variant == "root" else "65532:65532",
        "Env": ["PATH=/usr/local/bin:/bin:/"],
        "Labels": labels,
    }
    if args.variant == "shell":
        image_config["Cmd"] = ["sh"]
    else:
        image_config["Entrypoint"] = ["/ocistep"]
    config = {
        "created": EPOCH,
        "architecture": args.arch,
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created": EPOCH, "created_by": f"scripts/image_layout.py {args.variant}"}],
    }
    config_blob = put_blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_blob},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        "annotations": {
            "org.opencontainers.image.version": args.version,
            "org.opencontainers.image.revision": args.revision,
            "org.opencontainers.image.source": SOURCE,
        },
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_blob = put_blob(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": manifest["mediaType"],
            **manifest_blob,
            "platform": {"os": "linux", "architecture": args.arch},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(f"{args.variant}: {manifest_blob['digest']} ({layer['size']} bytes compressed layer)")


if __name__ == "__main__":
    main()
