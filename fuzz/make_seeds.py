#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

Deterministic (fixed mtimes, gzip without a timestamp), so running it again
gives the same files. Seeds are small: valid inputs of each kind plus the
hostile shapes the tests use, for the fuzzer to mutate from.

    python3 fuzz/make_seeds.py
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


D1 = digest(b"one")
D2 = digest(b"two")
D3 = digest(b"three")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- reference

REFERENCES = [
    "registry.example.com/org/app:v1",
    "localhost:5000/app",
    "localhost/app:latest",
    f"127.0.0.1:5000/o/app@{D1}",
    f"ghcr.io/a/b/c:tag@{D2}",
    "alpine",
    "library/alpine:3.19",
    "docker.io/library/alpine:3.19",
    "index.docker.io/user/app",
    "[::1]:5000/app:v1",
    "reg.io:443/deep/nested/path/app:v1.2.3-rc_1",
    "reg.io/app:" + "t" * 128,
    "UPPER/Case:tag",
    "Uppercase/lowercase:tag",
    "app:",
    "app@sha256:",
    "app@sha256:0123",
    "app@sha512:" + "a" * 128,
    "reg.io//app",
    "reg.io/app:v1:v2",
    ":tag",
    "@" + D1,
    "oci:./layout:v1",
    "oci:/tmp/a/b",
    f"oci:dir@{D1}",
    f"oci:dir:v1@{D3}",
    "oci:x:t",
    "oci:",
    "oci::v1",
    "oci:a:b:c",
    "oci:path/with:colon/inside",
    "oci:a@b",
    D1,
]

# ----------------------------------------------------------------- platform

PLATFORMS = [
    "linux/amd64",
    "linux/arm64/v8",
    "linux-arm64",
    "aarch64",
    "armhf",
    "x86_64",
    "linux/arm",
    "linux/arm/v6\nlinux/arm/v7\nlinux/amd64\nwindows/amd64",
    "linux/arm64\nlinux/amd64\nlinux/arm/v7\nlinux/arm/v5",
    "linux/amd64\nlinux/386\nlinux/amd64/v3",
    "linux/arm/v5\nlinux/arm/v6",
    "windows/amd64\n"
    + json.dumps({"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1"}),
    "linux/arm64\n"
    + json.dumps({"os": "linux", "architecture": "aarch64", "variant": "v8"})
    + "\n"
    + json.dumps({"os": "unknown", "architecture": "unknown"}),
    "darwin-arm64",
    "linux-arm-v6",
    "linux/s390x\nlinux/ppc64le\nlinux/riscv64",
    "linux/",
    "",
    "a/b/c/d",
    "linux",
    "LINUX/AMD64",
    " linux/amd64 ",
    "linux/arm/7",
    "linux/arm/v99",
    "macos/arm64",
    "freebsd-amd64",
    "linux/amd64\n{}\n[]\nnull",
]

# ----------------------------------------------------------------- manifest

SELECTORS = {
    "none": 0,
    "oci-manifest": 1,
    "oci-index": 2,
    "docker-manifest": 3,
    "docker-list": 4,
    "json": 5,
}


def desc(media_type, d, size, **extra):
    out = {"mediaType": media_type, "digest": d, "size": size}
    out.update(extra)
    return out


BUNDLE = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "artifactType": "application/vnd.ocistep.source-bundle.v1",
    "config": desc(OCI_CONFIG, D1, 200),
    "layers": [
        desc(LAYER_GZIP, D2, 1234, annotations={"org.opencontainers.image.title": "source.tar.gz"})
    ],
    "annotations": {"org.opencontainers.image.created": "2023-11-14T22:13:20Z"},
}

INDEX = {
    "schemaVersion": 2,
    "mediaType": OCI_INDEX,
    "manifests": [
        desc(OCI_MANIFEST, D1, 500, platform={"os": "linux", "architecture": "amd64"}),
        desc(OCI_MANIFEST, D2, 500, platform={"os": "linux", "architecture": "arm", "variant": "v7"}),
        desc(OCI_MANIFEST, D3, 300, platform={"os": "unknown", "architecture": "unknown"},
             annotations={"vnd.docker.reference.type": "attestation-manifest"}),
    ],
}

MANIFESTS = {
    "bundle": ("oci-manifest", BUNDLE),
    "bundle-no-type": ("none", {k: v for k, v in BUNDLE.items() if k != "mediaType"}),
    "bundle-tar-layer": ("json", dict(BUNDLE, layers=[desc(LAYER_TAR, D2, 10)])),
    "bundle-two-layers": ("oci-manifest", dict(BUNDLE, layers=BUNDLE["layers"] * 2)),
    "bundle-no-layers": ("oci-manifest", {k: v for k, v in BUNDLE.items() if k != "layers"}),
    "bundle-no-config": ("oci-manifest", {k: v for k, v in BUNDLE.items() if k != "config"}),
    "bundle-layers-object": ("oci-manifest", dict(BUNDLE, layers={"a": 1})),
    "bundle-bad-digest": ("oci-manifest", dict(BUNDLE, layers=[desc(LAYER_GZIP, "sha256:xyz", 1)])),
    "bundle-wrong-layer-type": ("oci-manifest", dict(BUNDLE, layers=[desc("text/plain", D2, 1)])),
    "bundle-bad-created": ("oci-manifest", dict(BUNDLE, annotations={"org.opencontainers.image.created": "yesterday"})),
    "bundle-negative-size": ("oci-manifest", dict(BUNDLE, config=desc(OCI_CONFIG, D1, -1))),
    "bundle-huge-size": ("oci-manifest", dict(BUNDLE, config=desc(OCI_CONFIG, D1, 2**64))),
    "docker-manifest": ("docker-manifest", dict(BUNDLE, mediaType=DOCKER_MANIFEST)),
    "index": ("oci-index", INDEX),
    "index-as-manifest": ("oci-manifest", INDEX),
    "index-no-type": ("none", {k: v for k, v in INDEX.items() if k != "mediaType"}),
    "docker-list": ("docker-list", dict(INDEX, mediaType=DOCKER_LIST)),
    "index-manifests-null": ("oci-index", {"schemaVersion": 2, "manifests": None}),
    "index-manifests-string": ("oci-index", {"schemaVersion": 2, "manifests": "x"}),
    "index-bad-platform": ("oci-index", {"schemaVersion": 2, "manifests": [
        desc(OCI_MANIFEST, D1, 1, platform="linux/amd64"),
        desc(OCI_MANIFEST, D2, 1, platform={"os": 1, "architecture": []}),
        desc(OCI_MANIFEST, "md5:abc", 1, platform={"os": "linux", "architecture": "arm", "variant": "v9999"}),
    ]}),
    "index-nested": ("oci-index", {"schemaVersion": 2, "manifests": [desc(OCI_INDEX, D1, 100)]}),
    "manifest-says-index": ("none", dict(BUNDLE, mediaType=OCI_INDEX)),
    "empty-object": ("none", {}),
    "array": ("json", [1, 2, 3]),
    "null": ("oci-manifest", None),
}

RAW_MANIFESTS = {
    "not-json": (1, b"not json at all"),
    "truncated": (1, json.dumps(BUNDLE).encode()[:150]),
    "empty": (0, b""),
    "bom": (0, b"\xef\xbb\xbf" + json.dumps(BUNDLE).encode()),
    "deep-nesting": (0, b"[" * 200 + b"]" * 200),
    "big-number": (1, b'{"schemaVersion":1e999}'),
    "dup-keys": (1, b'{"schemaVersion":2,"layers":[],"layers":{},"config":{}}'),
}

# ------------------------------------------------------------------ extract

MTIME = 1_700_000_000


def ustar_header(name, typeflag=b"0", size=0, linkname="", mode=0o644, mtime=MTIME, raw_name=None):
    h = bytearray(512)

    def put(off, length, value):
        h[off:off + len(value)] = value[:length]

    put(0, 100, raw_name if raw_name is not None else name.encode())
    put(100, 8, b"%07o\0" % mode)
    put(108, 8, b"%07o\0" % 0)
    put(116, 8, b"%07o\0" % 0)
    put(124, 12, b"%011o\0" % size)
    put(136, 12, b"%011o\0" % mtime)
    put(148, 8, b" " * 8)
    put(156, 1, typeflag)
    put(157, 100, linkname.encode())
    put(257, 6, b"ustar\0")
    put(263, 2, b"00")
    checksum = sum(h)
    put(148, 8, b"%06o\0 " % checksum)
    return bytes(h)


def entry(name, typeflag=b"0", data=b"", linkname="", size=None, mode=0o644, raw_name=None):
    out = ustar_header(name, typeflag, len(data) if size is None else size, linkname, mode,
                       raw_name=raw_name)
    out += data
    out += b"\0" * (-len(data) % 512)
    return out


def pax_record(key, value):
    body = len(key) + len(value) + 3
    n = body + 1
    while n != body + len(str(n)):
        n = body + len(str(n))
    return b"%d %s=%s\n" % (n, key.encode(), value)


def pax(records, typeflag=b"x"):
    data = b"".join(pax_record(k, v) for k, v in records)
    return entry("pax_header", typeflag, data)


def archive(*entries):
    return b"".join(entries) + b"\0" * 1024


def tarfile_archive(members, fmt):
    """An archive written by Python's tarfile (GNU or PAX), trimmed to its
    end-of-archive blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            info.mtime = MTIME
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == b"\0" * 512:
        end -= 512
    return raw[:end] + b"\0" * 1024


def info(name, kind=tarfile.REGTYPE, size=0, linkname="", mode=0o644):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.size = size
    i.linkname = linkname
    i.mode = mode
    return i


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


LONG = "d" * 120 + "/" + "f" * 120

EXTRACT = {
    "files-dirs-links": archive(
        entry("bin/", b"5", mode=0o755),
        entry("bin/run.sh", data=b"#!/bin/sh\necho hi\n", mode=0o755),
        entry("sub/file", data=b"hello"),
        entry("empty/", b"5", mode=0o755),
        entry("l", b"2", linkname="sub/file"),
        entry("sub/up", b"2", linkname="../bin/run.sh"),
        entry("h", b"1", linkname="sub/file"),
    ),
    "dot-entries": archive(entry("./", b"5"), entry(".", b"5"), entry("./a//b/./c", data=b"c")),
    "traversal": archive(entry("../evil", data=b"x")),
    "traversal-inner": archive(entry("ok/../../evil", data=b"x")),
    "absolute": archive(entry("/tmp/ocistep-fuzz-evil", data=b"x")),
    "symlink-abs-then-write": archive(entry("link", b"2", linkname="/tmp"), entry("link/x", data=b"x")),
    "symlink-parent-then-write": archive(entry("up", b"2", linkname=".."), entry("up/x", data=b"x")),
    "symlink-chain": archive(entry("a", b"2", linkname="b"), entry("b", b"2", linkname="../..")),
    "symlink-chain-inside": archive(entry("d/", b"5"), entry("d/a", b"2", linkname="../b"),
                                    entry("b", b"2", linkname="d"), entry("d/a/x", data=b"x")),
    "symlink-escape": archive(entry("a/b", b"2", linkname="../../x")),
    "symlink-dotdot-after-name": archive(entry("a/b", b"2", linkname="x/../../..")),
    "hardlink-out": archive(entry("h", b"1", linkname="../outside")),
    "hardlink-missing": archive(entry("h", b"1", linkname="missing")),
    "hardlink-self": archive(entry("f", data=b"f"), entry("f", b"1", linkname="f")),
    "devices": archive(entry("tty", b"3"), entry("disk", b"4"), entry("pipe", b"6")),
    "unknown-type": archive(entry("v", b"V")),
    "file-then-dir": archive(entry("x", data=b"file"), entry("x/", b"5")),
    "dir-then-file": archive(entry("x/", b"5"), entry("x", data=b"file")),
    "file-then-file": archive(entry("f", data=b"first"), entry("f", data=b"second")),
    "file-inside-file": archive(entry("x", data=b"file"), entry("x/y", data=b"inner")),
    "gnu-longname": tarfile_archive([(info(LONG, size=4), b"long")], tarfile.GNU_FORMAT),
    "gnu-longname-escape": archive(
        entry("././@LongLink", b"L", data=("d/" * 60 + "../" * 62 + "evil").encode() + b"\0"),
        entry("innocent", data=b"x"),
    ),
    "gnu-longlink": tarfile_archive([(info("f", size=1), b"f"),
                                     (info("l", tarfile.SYMTYPE, linkname="./" * 60 + "f"), None)],
                                    tarfile.GNU_FORMAT),
    "pax-path": archive(pax([("path", b"pax/named")]), entry("placeholder", data=b"pax")),
    "pax-path-escape": archive(pax([("path", b"../../evil")]), entry("benign", data=b"x")),
    "pax-size-huge": archive(pax([("size", b"10737418240")]), entry("small", data=b"tiny")),
    "pax-size-odd": archive(pax([("size", b"-1")]), entry("small", data=b"tiny")),
    "pax-size-junk": archive(pax([("size", b"12abc")]), entry("small", data=b"tiny")),
    "pax-linkpath-escape": archive(pax([("linkpath", b"/etc/passwd")]), entry("l", b"2", linkname="ok")),
    "pax-global": archive(pax([("comment", b"hello")], b"g"), entry("a", data=b"a")),
    "pax-bad-record": archive(entry("pax_header", b"x", b"99999 path=x\n"), entry("a", data=b"a")),
    "pax-tarfile": tarfile_archive([(info("pax/\u00fcnic\u00f8de-" + "n" * 110, size=3), b"abc")],
                                   tarfile.PAX_FORMAT),
    "gnu-sparse": archive(entry("sparse", b"S", data=b"\0" * 512)),
    "gnu-sparse-pax": archive(pax([("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0"),
                                   ("GNU.sparse.name", b"s"), ("GNU.sparse.realsize", b"4096")]),
                              entry("GNUSparseFile.0/s", data=b"1\n0\n4\n" + b"\0" * 506 + b"data")),
    "truncated-mid-entry": archive(entry("a", data=b"x" * 2000))[:1024],
    "truncated-header": archive(entry("a", data=b"x"))[:300],
    "no-end-marker": entry("a", data=b"a"),
    "size-lies": entry("a", data=b"abc", size=5000) + b"\0" * 1024,
    "bad-checksum": archive(entry("a", data=b"a")).replace(b"a\0", b"b\0", 1),
    "base256-size": archive(
        ustar_header("a")[:124] + b"\x80" + b"\0" * 3 + b"\xff" * 8 + ustar_header("a")[136:]
    ),
    "huge-mtime": archive(ustar_header("a", mtime=0o77777777777)),
    "nul-in-name": archive(entry("x", raw_name=b"ok\0../../evil", data=b"x")),
    "non-utf8-name": archive(entry("x", raw_name=b"caf\xe9", data=b"x")),
    "empty-name": archive(entry("", data=b"x")),
    "empty": b"",
}

EXTRACT_GZIP = {
    "files-dirs-links": EXTRACT["files-dirs-links"],
    "traversal": EXTRACT["traversal"],
    "pax-size-huge": EXTRACT["pax-size-huge"],
    "bomb": archive(entry("bomb", data=b"\0" * (2 << 20))),
    "two-members": None,
    "many-entries": archive(*[entry("f%03d" % i, data=b"x") for i in range(80)]),
}


# Inputs that found bugs, kept so every run tries them first.
REGRESSIONS = {
    # Accepted, but printed as docker.io/V/t:latest, which is refused.
    # A layout reference ending in a bare "@sha256" (no digest after it).
    "reference": {
        "uppercase-repository": "V/t",
        "layout-at-without-digest": "oci:/.:lyuro/loghcr.io/a/b/c:tag@sha256",
    },
    # compatible() listed every arm variant below v4000000000: out of memory.
    "platform": {"huge-arm-variant": "linux/arm/v4000000000\nlinux/arm/v7"},
    # A JSON array read as a struct: mediaType "" and an array manifest.
    "manifest": {
        "array-empty-media-type": bytes([SELECTORS["json"]]) + b'["", 5]',
        "array-manifest": bytes([SELECTORS["oci-manifest"]])
        + json.dumps([2, OCI_MANIFEST, None, BUNDLE["config"], BUNDLE["layers"], {}]).encode(),
    },
}


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    for target, seeds in REGRESSIONS.items():
        for name, data in seeds.items():
            write(target, "regression-" + name, data)
    for i, ref in enumerate(REFERENCES):
        write("reference", "%02d" % i, ref)
    for i, p in enumerate(PLATFORMS):
        write("platform", "%02d" % i, p)
    for name, (selector, doc) in MANIFESTS.items():
        write("manifest", name, bytes([SELECTORS[selector]]) + json.dumps(doc).encode())
    for name, (selector, raw) in RAW_MANIFESTS.items():
        write("manifest", name, bytes([selector]) + raw)
    for name, raw in EXTRACT.items():
        write("extract", "tar-" + name, b"\0" + raw)
    for name, raw in EXTRACT_GZIP.items():
        if raw is None:
            halves = EXTRACT["files-dirs-links"]
            data = gz(halves[:1536]) + gz(halves[1536:])
        else:
            data = gz(raw)
        write("extract", "gz-" + name, b"\x01" + data)
    good = gz(EXTRACT["files-dirs-links"])
    write("extract", "gz-truncated", b"\x01" + good[: len(good) // 2])
    write("extract", "gz-junk", b"\x01this is not gzip data")
    for name, data in gunzip_seeds().items():
        write("gunzip", name, data)
    for name, raw in EXTRACT.items():
        write("retime", "tar-" + name, raw)


# ------------------------------------------------------------------- gunzip


def ours_member(data):
    """One gzip member as ocistep writes it: its size in the extra field."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = c.compress(data) + c.flush()
    size = 20 + len(deflated) + 8
    header = bytes([0x1F, 0x8B, 8, 4, 0, 0, 0, 0, 0, 255]) + struct.pack("<H", 8) + b"OS" + struct.pack("<HI", 4, size)
    return header + deflated + struct.pack("<II", zlib.crc32(data), len(data))


GUNZIP_TEXT = b"".join(b"line %d of the log\n" % i for i in range(400))


def gunzip_seeds():
    """Mode 0: the bytes are the gzip; mode 1: ocistep's writer compresses
    what follows four edit bytes (position, flip, cut)."""
    return {
        "plain": b"\0" + gz(GUNZIP_TEXT),
        "two-members": b"\0" + gz(GUNZIP_TEXT[:999]) + gz(GUNZIP_TEXT[999:]),
        "ours": b"\0" + ours_member(GUNZIP_TEXT[:2000]) + ours_member(GUNZIP_TEXT[2000:]),
        "ours-then-plain": b"\0" + ours_member(GUNZIP_TEXT[:2000]) + gz(GUNZIP_TEXT[2000:]),
        "ours-trailing-junk": b"\0" + ours_member(GUNZIP_TEXT) + b"junk",
        "writer": b"\x01" + b"\0\0\0\0" + GUNZIP_TEXT,
        "writer-flip": b"\x03" + struct.pack("<H", 30) + b"\x40\0" + GUNZIP_TEXT,
        "writer-cut": b"\x05" + b"\0\0\0\x15" + GUNZIP_TEXT,
    }


if __name__ == "__main__":
    main()
