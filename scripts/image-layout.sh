#!/usr/bin/env bash
# `make image-layout`: an OCI image layout of ocistep, a static binary on an
# empty base, built without a container engine, then pushed with ocistep's
# own --push-image to another layout to show that it accepts it.
#
#   target/image-layout/   the layout this script writes (tag: latest)
#   target/image-out/      the same image after `ocistep --push-image`
#
# The binary: a musl build when that Rust target is installed, else a
# static glibc build (crt-static), both linked statically so that the
# image needs no base. /ocistep (0755, root-owned) is the one file of the
# one layer; the config sets Entrypoint ["/ocistep"] and User 65532, and
# os/architecture from this machine. Everything is deterministic: the same
# binary gives the same digests.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

host="$(rustc -vV | sed -n 's/^host: //p')"
musl="$(uname -m)-unknown-linux-musl"
# Outputs are captured before grep reads them: `cmd | grep -q` under pipefail
# fails when grep exits first and cmd dies of SIGPIPE.
installed_targets="$(rustup target list --installed 2>/dev/null || true)"
if grep -qx "$musl" <<<"$installed_targets"; then
  target="$musl"
  echo "==> static build for $target"
  cargo build --release --locked --target "$target"
else
  target="$host"
  echo "==> static build for $target (crt-static; the musl target is not installed)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target"
fi
binary="target/$target/release/ocistep"
program_headers="$(readelf --program-headers "$binary")"
if grep -q INTERP <<<"$program_headers"; then
  echo "error: $binary is dynamically linked; it could not run on an empty base" >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  armv7l) arch=arm ;;
  ppc64le) arch=ppc64le ;;
  s390x) arch=s390x ;;
  riscv64) arch=riscv64 ;;
  *) echo "error: unknown machine $(uname -m)" >&2; exit 1 ;;
esac

version="$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)"
layout=target/image-layout
rm -rf "$layout" target/image-out

echo "==> writing $layout (linux/$arch)"
python3 - "$binary" "$layout" "$arch" "$version" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

binary, layout, arch, version = sys.argv[1:]

def put_blob(data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest

# The layer: /ocistep (0755) and the build machine's CA certificates, which
# a TLS registry's certificate is checked against (there is no other system
# here); owned by root, mtime 0.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
if not os.path.isfile(CA_BUNDLE):
    sys.exit(f"error: {CA_BUNDLE} is missing; install ca-certificates")

def entry(name, mode, content=None):
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if content is None:
        info.type = tarfile.DIRTYPE
        return info, None
    info.size = len(content)
    return info, io.BytesIO(content)

with open(binary, "rb") as f:
    content = f.read()
with open(CA_BUNDLE, "rb") as f:
    certificates = f.read()
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
    for name, mode, data in [
        ("etc", 0o755, None),
        ("etc/ssl", 0o755, None),
        ("etc/ssl/certs", 0o755, None),
        ("etc/ssl/certs/ca-certificates.crt", 0o644, certificates),
        ("ocistep", 0o755, content),
    ]:
        t.addfile(*entry(name, mode, data))
layer_tar = tar.getvalue()
layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
layer_digest = put_blob(layer)

labels = {
    "org.opencontainers.image.title": "ocistep",
    "org.opencontainers.image.description": "A CI step that moves source bundles and images through OCI registries for native multi-architecture builds",
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.source": "https://github.com/ocistep/ocistep",
}
config = {
    "created": "1970-01-01T00:00:00Z",
    "architecture": arch,
    "os": "linux",
    "config": {
        "User": "65532",
        "Entrypoint": ["/ocistep"],
        "Env": ["PATH=/"],
        "Labels": labels,
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/image-layout.sh"}],
}
config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
config_digest = put_blob(config_bytes)

manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer)}],
    "annotations": {"org.opencontainers.image.version": version},
}
manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
manifest_digest = put_blob(manifest_bytes)

index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": len(manifest_bytes),
        "platform": {"os": "linux", "architecture": arch},
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }],
}
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f, sort_keys=True, separators=(",", ":"))
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(f"    manifest {manifest_digest} ({len(layer)} bytes compressed layer)")
PY

echo "==> ocistep --push-image $layout --image oci:target/image-out:latest"
"$binary" --push-image "$layout" --image oci:target/image-out:latest \
  --result-file-image-ref target/image-out.ref
echo
echo "    pushed: $(cat target/image-out.ref)"

if command -v skopeo >/dev/null 2>&1; then
  echo "==> skopeo inspect --config oci:target/image-out:latest"
  skopeo inspect --config oci:target/image-out:latest
fi
if command -v umoci >/dev/null 2>&1; then
  echo "==> umoci ls --layout target/image-out"
  umoci ls --layout target/image-out
fi
