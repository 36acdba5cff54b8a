#!/usr/bin/env python3
"""Generates deterministic benchmark corpora.

source: a source-like tree (default about 300 MB in about 15,000 files):
  mostly text files of realistic sizes built from a fixed vocabulary (so they
  compress like code, 3-5x), a few directories of binary assets
  (incompressible), some executables and symlinks.
large: a few large incompressible files (default 2 GiB in all).

Same arguments, same bytes: every random choice comes from a seeded PRNG.
"""
import argparse
import os
import random

WORDS = (
    "fn let mut pub struct impl enum match if else for while loop return self "
    "Result Option Some None Ok Err use mod crate super async await move ref "
    "const static type where trait dyn Box Vec String HashMap BTreeMap Arc Mutex "
    "import from def class return yield lambda with as try except finally raise "
    "package func var interface go defer chan select range map make new error "
    "config value name path file dir node build image layer digest manifest index "
    "registry platform arch os variant tag reference source bundle pull push "
    "0 1 2 3 42 100 1024 true false nil null ( ) { } [ ] ; , . : = == != < > + - * /"
).split()


def text_blob(rng, size):
    out = []
    n = 0
    indent = 0
    while n < size:
        line = " " * (4 * indent) + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) + "\n"
        indent = max(0, min(6, indent + rng.choice((-1, 0, 0, 1))))
        out.append(line)
        n += len(line)
    return "".join(out)[:size].encode()


def source_tree(root, total_bytes, files, seed):
    rng = random.Random(seed)
    binary_share = 0.2
    dirs = [""]
    for i in range(max(1, files // 12)):
        parent = rng.choice(dirs)
        dirs.append(os.path.join(parent, f"d{i:04d}"))
    mean = total_bytes * (1 - binary_share) / files
    written = 0
    for i in range(files):
        d = rng.choice(dirs)
        size = max(16, int(rng.expovariate(1 / mean)))
        path = os.path.join(root, "src", d, f"f{i:05d}.{rng.choice(['rs', 'go', 'py', 'ts', 'md', 'json'])}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text_blob(rng, size))
        if i % 97 == 0:
            os.chmod(path, 0o755)
        written += size
    assets = int(total_bytes * binary_share)
    chunk = 4 << 20
    i = 0
    while assets > 0:
        n = min(chunk, assets)
        path = os.path.join(root, "assets", f"blob{i:03d}.bin")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(n))
        assets -= n
        i += 1
    os.symlink("src", os.path.join(root, "src-link"))


def large_tree(root, total_bytes, seed):
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    per = 256 << 20
    i = 0
    while total_bytes > 0:
        n = min(per, total_bytes)
        with open(os.path.join(root, f"large{i}.bin"), "wb") as f:
            left = n
            while left > 0:
                k = min(8 << 20, left)
                f.write(rng.randbytes(k))
                left -= k
        total_bytes -= n
        i += 1


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=["source", "large"])
    p.add_argument("dir")
    p.add_argument("--mb", type=int, default=300)
    p.add_argument("--files", type=int, default=14870)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if os.path.exists(a.dir):
        raise SystemExit(f"{a.dir} exists; remove it or choose another directory")
    if a.kind == "source":
        source_tree(a.dir, a.mb << 20, a.files, a.seed)
    else:
        large_tree(a.dir, a.mb << 20, a.seed)


if __name__ == "__main__":
    main()
