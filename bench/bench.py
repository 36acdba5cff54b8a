#!/usr/bin/env python3
"""Benchmarks ocistep against peers on this machine, in one run.

Generates the corpora (bench/gen_corpus.py, cached under bench/.corpus),
starts a throwaway docker-registry on a loopback port, runs every command
several times, and writes a markdown table of median, min and max wall time,
peak RSS, and the ratio to the peer measured in the same run.

  python3 bench/bench.py                 # full run, writes bench/results.md (about 15 GB of disk)
  python3 bench/bench.py --smoke         # tiny corpora, one run, checks it all works
"""
import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

from benchlib import Registry, measure, measure_interleaved
from copy_bench import copy_rows
from link_bench import link_rows

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


ARCHES = ["amd64", "arm64", "arm", "ppc64le", "s390x", "386", "riscv64", "mips64le"]


def platform_images(reg, work, count, cross):
    """Pushes `count` single-platform images made with umoci; returns their references."""
    refs = []
    for arch in ARCHES[:count]:
        layout = os.path.join(work, f"img-{arch}")
        if not os.path.isdir(layout):
            payload = os.path.join(work, f"payload-{arch}")
            with open(payload, "wb") as f:
                f.write(arch.encode() * 100000)
            subprocess.run(["umoci", "init", "--layout", layout], check=True)
            subprocess.run(["umoci", "new", "--image", f"{layout}:t"], check=True)
            subprocess.run(["umoci", "insert", "--rootless", "--image", f"{layout}:t", payload, "/payload"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["umoci", "config", "--image", f"{layout}:t", "--os", "linux", "--architecture", arch], check=True)
        ref = f"{reg.host}/bench/app-{arch}:v1" if cross else f"{reg.host}/bench/app:v1-{arch}"
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{ref}"], check=True)
        refs.append((f"linux/{arch}", ref))
    return refs


def assemble_rows(ocistep, reg, work, runs):
    """ocistep --assemble-index against buildah manifest create/add/push --all."""
    rows = []
    store = os.path.join(work, "buildah")
    conf = os.path.join(work, "registries.conf")
    with open(conf, "w") as f:
        f.write(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    buildah = f"buildah --registries-conf {conf} --root {store}/root --runroot {store}/run --storage-driver vfs"
    for count in (2, 8):
        for cross in (False, True):
            refs = platform_images(reg, work, count, cross)
            where = "cross-repository" if cross else "same repository"
            key = f"{count}{'x' if cross else 's'}"
            entries = " ".join(f"--platform-image {p}={r}" for p, r in refs)
            ours = measure(
                f"ocistep --assemble-index, {count} platforms, {where}",
                lambda i: f"{ocistep} -q --assemble-index --image {reg.host}/bench/app:idx{key}{i} {entries}",
                runs,
            )
            adds = " && ".join(f"{buildah} manifest add --tls-verify=false list{key} docker://{r}" for _, r in refs)
            peer = measure(
                f"buildah manifest create/add/push --all, {count} platforms, {where}",
                lambda i: f"({buildah} manifest rm list{key} >/dev/null 2>&1 || true) && "
                f"{buildah} manifest create list{key} >/dev/null && {adds} >/dev/null && "
                f"{buildah} manifest push -q --all --tls-verify=false list{key} docker://{reg.host}/bench/app:bh{key}{i}",
                runs,
            )
            rows.append(("assemble", peer, None))
            rows.append(("assemble", ours, peer))
    return rows


def push_rows(group, src, reg, o, level, runs, have_pigz, tag):
    """Push (walk, tar, compress, hash, upload) of `src` against `tar | gzip` and
    `tar | pigz` at the same level, taking turns round by round, so drift in
    the machine's speed during the run weighs on every command alike. Each
    ocistep run pushes to a new repository (bench/TAG0, TAG1, ...), which
    cannot have the layer, so ocistep uploads while packing; and with a
    source timestamp of its own, so its layer is new to the registry too,
    as a changed tree's is. Pushing the same bytes again costs the registry
    more at the end (distribution then deletes the duplicate upload rather
    than moving it into place: about 10 ms for a 40 MB layer), which the row
    "same layer again" shows. The row "existing repository" pushes a changed
    tree into a repository that holds an older bundle of it, as a pipeline
    does on every commit. Returns the rows and the ocistep, gzip and pigz
    rows."""
    commands = [("tar | gzip", lambda i: f"tar -cf - -C {src} . | gzip -{level} > /dev/null")]
    if have_pigz:
        commands.append(("tar | pigz", lambda i: f"tar -cf - -C {src} . | pigz -{level} > /dev/null"))
    stamps = [new_timestamp() for _ in range(runs)]
    commands.append(("ocistep push", lambda i: f"{o} --source-timestamp {stamps[i]} --push-source-bundle {src} --image {reg.host}/bench/{tag}{i}:v1"))
    # Each round, the layer run 0 pushed, into yet another repository.
    commands.append(("ocistep push, same layer again", lambda i: f"{o} --source-timestamp {stamps[0]} --push-source-bundle {src} --image {reg.host}/bench/{tag}again{i}:v1"))
    subprocess.run(f"{o} --source-timestamp {new_timestamp()} --push-source-bundle {src} --image {reg.host}/bench/{tag}existing:base", shell=True, check=True)
    commands.append(("ocistep push, existing repository", lambda i: f"{o} --source-timestamp {new_timestamp()} --push-source-bundle {src} --image {reg.host}/bench/{tag}existing:v{i}"))
    measured = measure_interleaved(commands, runs)
    gzip_row, push, again, existing = measured[0], measured[-3], measured[-2], measured[-1]
    pigz_row = measured[1] if have_pigz else None
    rows = [(group, gzip_row, None)]
    if pigz_row:
        rows.append((group, pigz_row, gzip_row))
    rows.append((group, push, pigz_row or gzip_row))
    if pigz_row:
        rows.append((group, dict(push, name="ocistep push (vs gzip)"), gzip_row))
    rows.append((group, again, push))
    rows.append((group, existing, pigz_row or gzip_row))
    return rows, push, gzip_row, pigz_row


_timestamps = iter(range(1_000_000, 2_000_000))


def new_timestamp():
    """A source timestamp no push in this run has used: another layer for the same tree."""
    return next(_timestamps)


def pull_rows(group, image, ocistep, work, runs):
    """Pull (download, verify, decompress, extract into an empty directory) of
    `image` against `skopeo copy` followed by `tar -xzf` of the layer.

    Every run extracts into a directory of its own under WORK/trees, deleted
    only when the whole benchmark ends: ext4 spends seconds of kernel time
    skipping recently deleted inodes when many files are created right after
    many were deleted, whatever tool creates them."""
    rows = []
    label = group.replace(" ", "").replace(",", "-")
    layout = os.path.join(work, f"layout-{label}")
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{image}", f"oci:{layout}:x"], check=True)
    trees = os.path.join(work, "trees")
    os.makedirs(trees, exist_ok=True)
    fresh = iter(range(1_000_000))

    def new_target(kind):
        path = os.path.join(trees, f"{label}-{kind}-{next(fresh)}")
        os.makedirs(path)
        return path

    # Each run starts with the data of the runs before it written out.
    peer, tarx, pull = measure_interleaved(
        [
            ("skopeo copy + tar -xzf",
             lambda i: (lambda t: f"skopeo copy -q --src-tls-verify=false docker://{image} oci:{t}/layout:x && "
                        f"tar -xzf $(ls -S {t}/layout/blobs/sha256/* | head -1) -C {t}")(new_target("skopeo"))),
            ("tar -xzf (layer on disk)",
             lambda i: f"tar -xzf $(ls -S {layout}/blobs/sha256/* | head -1) -C {new_target('tar')}"),
            ("ocistep pull",
             lambda i: f"{ocistep} -q --pull-source-bundle {new_target('ocistep')} --image {image}"),
        ],
        runs,
        setup=os.sync,
    )
    rows.append((group, peer, None))
    rows.append((group, tarx, None))
    rows.append((group, pull, peer))
    rows.append((group, dict(pull, name="ocistep pull (vs tar -xzf)"), tarx))
    return rows


def real_tree(smoke):
    """A real source tree: the sources of ocistep's own dependencies as
    `cargo vendor` lays them out from cargo's cache (the same files for the
    same Cargo.lock; about 270 MB in 13,000 files), or the project's own
    src/ for a smoke run. Returns its path and what it is."""
    if smoke:
        return os.path.join(ROOT, "src"), "the project's src/"
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as f:
        lock = hashlib.sha256(f.read()).hexdigest()[:12]
    path = os.path.join(HERE, ".corpus", f"vendor-{lock}")
    if not os.path.isdir(path):
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run(
            ["cargo", "vendor", "--locked", "--versioned-dirs", tmp],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, CARGO_NET_OFFLINE="true"),
        )
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            sys.exit("cargo vendor failed: the real-tree rows need ocistep's dependencies in cargo's cache (run make build first)")
        os.rename(tmp, path)
    return path, "vendored dependency sources"


def corpus(kind, mb, files, smoke):
    path = os.path.join(HERE, ".corpus", f"{kind}-{mb}mb-{files}")
    if not os.path.isdir(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(HERE, "gen_corpus.py"), kind, path + ".tmp", "--mb", str(mb), "--files", str(files)], check=True)
        os.rename(path + ".tmp", path)
    return path


def tree_stats(path):
    n, size = 0, 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                n += 1
                size += os.path.getsize(p)
    return n, size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny corpora, one run each")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--source-mb", type=int, default=300)
    ap.add_argument("--files", type=int, default=14870)
    ap.add_argument("--large-mb", type=int, default=2048)
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "ocistep"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.source_mb, a.files, a.large_mb = 1, 4, 200, 16
    for tool in ("tar", "gzip", "skopeo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y {tool}")
    have_pigz = shutil.which("pigz") is not None
    ocistep = os.path.abspath(a.binary)
    if not os.access(ocistep, os.X_OK):
        sys.exit(f"{ocistep} is missing: run make build first")

    src = corpus("source", a.source_mb, a.files, a.smoke)
    large = corpus("large", a.large_mb, 0, a.smoke)
    work = tempfile.mkdtemp(prefix="ocistep-bench-")
    reg = Registry(work)
    rows = []
    try:
        level = a.level
        o = f"{ocistep} -q --compression-level {level}"
        print(f"source corpus: {src}", file=sys.stderr)
        n_files, n_bytes = tree_stats(src)

        push_group, push, gzip_row, pigz_row = push_rows("push", src, reg, o, level, a.runs, have_pigz, "push")
        rows.extend(push_group)
        cache = os.path.join(work, "cache")
        subprocess.run(f"{o} --cache-dir {cache} --push-source-bundle {src} --image {reg.host}/bench/push0:v1", shell=True, check=True)
        again = measure("ocistep push, unchanged tree (--cache-dir)", f"{o} --cache-dir {cache} --push-source-bundle {src} --image {reg.host}/bench/push0:v2", a.runs)
        rows.append(("push", again, push))
        default_push = measure("ocistep push, default level", lambda i: f"{ocistep} -q --source-timestamp {new_timestamp()} --push-source-bundle {src} --image {reg.host}/bench/default{i}:v1", a.runs)
        rows.append(("push", default_push, gzip_row))
        # An existing repository and a changed tree, packed first, then a
        # HEAD, then the upload (the default streams it, see push_rows).
        packed_first = measure("ocistep push, existing repository, --stream-upload=never", lambda i: f"{o} --stream-upload=never --source-timestamp {new_timestamp()} --push-source-bundle {src} --image {reg.host}/bench/pushexisting:n{i}", a.runs)
        rows.append(("push", packed_first, pigz_row or gzip_row))
        zstd_push = measure("ocistep push --compression zstd (level 3)", lambda i: f"{ocistep} -q --compression zstd --source-timestamp {new_timestamp()} --push-source-bundle {src} --image {reg.host}/bench/zstd{i}:v1", a.runs)
        rows.append(("push", zstd_push, pigz_row or gzip_row))

        # The same on a real source tree.
        real, real_label = real_tree(a.smoke)
        real_files, real_bytes = tree_stats(real)
        real_push_rows, _, _, _ = push_rows("push, real tree", real, reg, o, level, a.runs, have_pigz, "real")
        later = []
        target = os.path.join(work, "target")

        def clean():
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)

        # Memory: a large incompressible tree.
        big_push = measure("ocistep push, large incompressible", lambda i: f"{o} --source-timestamp {new_timestamp()} --push-source-bundle {large} --image {reg.host}/bench/large{i}:v1", max(1, a.runs // 2))
        later.append(("memory", big_push, None))
        big_pull = measure("ocistep pull, large incompressible", f"{ocistep} -q --pull-source-bundle {target} --image {reg.host}/bench/large0:v1", max(1, a.runs // 2), clean)
        later.append(("memory", big_pull, None))
        shutil.rmtree(target, ignore_errors=True)

        if shutil.which("buildah") and shutil.which("umoci"):
            later.extend(assemble_rows(ocistep, reg, work, a.runs))
        else:
            print("buildah or umoci missing: no assemble-index rows (apt-get install -y buildah umoci)", file=sys.stderr)

        later.extend(copy_rows(ocistep, work, a.runs, a.smoke))
        later.extend(link_rows(ocistep, real, work, a.runs))

        help_row = measure("ocistep --help", f"{ocistep} --help", max(3, a.runs))
        later.append(("startup", help_row, None))

        # Pulls last: they keep every tree they extract until the end (see
        # pull_rows), and nothing after them deletes many files.
        rows.extend(pull_rows("pull", f"{reg.host}/bench/push0:v1", ocistep, work, a.runs))
        rows.extend(real_push_rows)
        rows.extend(pull_rows("pull, real tree", f"{reg.host}/bench/real0:v1", ocistep, work, a.runs))
        rows.extend(later)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)

    size_mb = os.path.getsize(ocistep) / (1 << 20)
    with open(a.out, "w") as f:
        f.write("# Benchmark results\n\n")
        f.write(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; ")
        f.write(f"{a.runs} runs each; source corpus {n_files} files, {n_bytes / 1e6:.0f} MB; ")
        f.write(f"real tree ({real_label}) {real_files} files, {real_bytes / 1e6:.0f} MB; large corpus {a.large_mb} MiB; gzip level {a.level}; ")
        f.write(f"release binary {size_mb:.1f} MiB.\n\n")
        f.write("| group | command | median s | min s | max s | peak RSS MiB | ratio | vs |\n|---|---|---|---|---|---|---|---|\n")
        for group, row, peer in rows:
            ratio = f"{row['median'] / peer['median']:.2f}x" if peer else ""
            name = row["name"].replace("|", "\\|")
            vs = peer["name"].replace("|", "\\|") if peer else ""
            f.write(f"| {group} | {name} | {row['median']:.3f} | {row['min']:.3f} | {row['max']:.3f} | {row['rss']:.0f} | {ratio} | {vs} |\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
