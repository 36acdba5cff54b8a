"""`--copy` of a multi-platform index between two registries, against
`skopeo copy --all`: cold (neither tool knows where any blob lives; skopeo's
blob-info cache empty) and warm (each tool copied the image into the
destination registry once before, remembering where its blobs are, and now
copies it into another new repository there).

skopeo keeps its blob-info cache in /var/lib/containers/cache for root and
under $XDG_DATA_HOME otherwise; each skopeo run here sees a directory of the
bench's own there (a private mount namespace for root), so the machine's own
cache is neither read nor changed.
"""
import gzip
import hashlib
import json
import os
import random
import subprocess

from benchlib import Registry, measure_interleaved

SKOPEO_CACHE = "/var/lib/containers/cache"


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layer(layout, rng, size, level):
    """A gzip layer of `size` random bytes, written 1 MiB at a time so the
    bench's own memory stays small (a command it starts inherits it in its
    peak RSS); returns its descriptor and diff_id."""
    tmp = os.path.join(layout, "layer.tmp")
    diff_id = hashlib.sha256()
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0, filename="") as gz:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            diff_id.update(chunk)
            gz.write(chunk)
            left -= len(chunk)
    digest, length = hashlib.sha256(), 0
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            length += len(block)
    os.rename(tmp, os.path.join(layout, "blobs", "sha256", digest.hexdigest()))
    desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": f"sha256:{digest.hexdigest()}", "size": length}
    return desc, "sha256:" + diff_id.hexdigest()


def index_layout(path, platforms, layers, layer_bytes, level=1):
    """An OCI layout holding an index of `platforms` images, each with
    `layers` gzip layers (at `level`) of about `layer_bytes`
    (incompressible)."""
    if os.path.exists(os.path.join(path, "index.json")):
        return path
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    rng = random.Random(22)
    children = []
    for p in range(platforms):
        arch = f"arch{p}"
        diff_ids, descs = [], []
        for _ in range(layers):
            desc, diff_id = write_layer(path, rng, layer_bytes, level)
            descs.append(desc)
            diff_ids.append(diff_id)
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **write_blob(path, config)},
            "layers": descs,
        }).encode()
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **write_blob(path, manifest),
                         "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}).encode()
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", **write_blob(path, index),
           "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [top]}, f)
    return path


def skopeo_with_cache(cache_dir, args):
    """A skopeo command line whose blob-info cache is `cache_dir`."""
    os.makedirs(cache_dir, exist_ok=True)
    if os.geteuid() == 0:
        return (f"unshare --mount --propagation private sh -c "
                f"'mkdir -p {SKOPEO_CACHE} && mount --bind {cache_dir} {SKOPEO_CACHE} && skopeo {args}'")
    return f"XDG_DATA_HOME={cache_dir} skopeo {args}"


def copy_rows(ocistep, work, runs, smoke):
    """Cold and warm copies of an 8-platform index (5 layers of 2 MB each;
    smaller with --smoke) from one registry to another, and the memory a
    copy of one large layer takes."""
    platforms, layers, size = (2, 2, 64 << 10) if smoke else (8, 5, 2 << 20)
    layout = index_layout(os.path.join(work, "copy-index"), platforms, layers, size)
    large = index_layout(os.path.join(work, "copy-large"), 1, 1, (4 if smoke else 512) << 20, level=0)
    src_dir, dst_dir = os.path.join(work, "copy-src"), os.path.join(work, "copy-dst")
    os.makedirs(src_dir)
    os.makedirs(dst_dir)
    src, dst = Registry(src_dir), Registry(dst_dir)
    try:
        image = f"{src.host}/bench/multi:v1"
        subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{image}"], check=True)
        tls = "--src-tls-verify=false --dest-tls-verify=false"
        cold_cache = lambda i: os.path.join(work, f"skopeo-cold-{i}")
        cold = measure_interleaved([
            ("skopeo copy --all, cold", lambda i: skopeo_with_cache(cold_cache(i), f"copy -q --all {tls} docker://{image} docker://{dst.host}/cold/skopeo{i}:v1")),
            ("ocistep --copy, cold", lambda i: f"{ocistep} -q --copy {image} {dst.host}/cold/ocistep{i}:v1"),
        ], runs)
        # Each tool copies the image into the destination registry once,
        # learning where its blobs are, then into new repositories there.
        warm_skopeo, cache = os.path.join(work, "skopeo-warm"), os.path.join(work, "ocistep-cache")
        subprocess.run(skopeo_with_cache(warm_skopeo, f"copy -q --all {tls} docker://{image} docker://{dst.host}/seed/skopeo:v1"), shell=True, check=True)
        subprocess.run(f"{ocistep} -q --cache-dir {cache} --copy {image} {dst.host}/seed/ocistep:v1", shell=True, check=True)
        warm = measure_interleaved([
            ("skopeo copy --all, warm", lambda i: skopeo_with_cache(warm_skopeo, f"copy -q --all {tls} docker://{image} docker://{dst.host}/warm/skopeo{i}:v1")),
            ("ocistep --copy --cache-dir, warm", lambda i: f"{ocistep} -q --cache-dir {cache} --copy {image} {dst.host}/warm/ocistep{i}:v1"),
        ], runs)
        big = f"{src.host}/bench/large:v1"
        subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{large}:v1", f"docker://{big}"], check=True)
        memory = measure_interleaved([
            (f"ocistep --copy, one {(4 if smoke else 512)} MiB layer", lambda i: f"{ocistep} -q --copy {big} {dst.host}/large/ocistep{i}:v1"),
        ], max(1, runs // 2))
    finally:
        src.stop()
        dst.stop()
    return [("copy", cold[0], None), ("copy", cold[1], cold[0]), ("copy", warm[0], None), ("copy", warm[1], warm[0]),
            ("memory", memory[0], None)]
