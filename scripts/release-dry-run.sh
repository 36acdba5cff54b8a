#!/usr/bin/env bash
# `make release-dry-run`: everything the release workflow does that needs
# no GitHub, on this machine's architecture, checked by independent tools:
#
#   1. the static binary, named as released, and SHA256SUMS;
#   2. the image variants (nonroot, root, shell) as OCI layouts;
#   3. pushed with ocistep --push-image to a loopback registry, assembled
#      with ocistep --assemble-index there and into an OCI layout; the
#      indexes checked with skopeo, the images unpacked with umoci and
#      their binary run;
#   4. the CI wiring pinned to that release (a copy of it) by
#      scripts/pin_release.py, every reference resolving in the registry;
#   5. the GitHub action's install script run against that release,
#      served on loopback, with the pinned SHA256SUMS.
#
# Writes under $CARGO_TARGET_DIR (else target/)/release-dry-run. Needs
# docker-registry, skopeo, umoci, busybox-static, python3, curl.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
for tool in docker-registry skopeo umoci python3 curl readelf sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "error: release-dry-run needs $tool (.ci/run installs it)" >&2
    exit 1
  }
done
# shellcheck source=scripts/loopback-registry.sh
. scripts/loopback-registry.sh
server_pid=""
cleanup() {
  stop_registry
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

fail() {
  echo "release-dry-run: FAILED: $*" >&2
  exit 1
}

work="$(realpath -m "${CARGO_TARGET_DIR:-target}/release-dry-run")"
rm -rf "$work"
mkdir -p "$work"
version="$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) fail "no release for $(uname -m)" ;;
esac

echo "==> 1. static binary and SHA256SUMS"
binary="$(scripts/build-static.sh)"
release="$work/release/v$version"
mkdir -p "$release"
asset="ocistep-$version-linux-$arch"
cp "$binary" "$release/$asset"
(cd "$release" && sha256sum ocistep-*-linux-* >SHA256SUMS)
"$release/$asset" --version | tee "$work/version"
grep -qF "ocistep $version (commit ${revision:0:12})" "$work/version" ||
  [ "$revision" = unknown ] || fail "--version does not name commit ${revision:0:12}"

echo "==> 2. image layouts"
for variant in nonroot root shell; do
  python3 scripts/image_layout.py --binary "$release/$asset" --variant "$variant" \
    --arch "$arch" --version "$version" --revision "$revision" "$work/layouts/$variant"
done

echo "==> 3. push per architecture, assemble the indexes"
start_registry "$work/registry"
repo="127.0.0.1:$registry_port/ocistep/ocistep"
scripts/release-images.sh push "$release/$asset" "$work/layouts" "$repo" "$version" "$arch" "$work/refs"
scripts/release-images.sh assemble "$release/$asset" "$repo" "$version" "$work/refs" "$work/oci-layout"

for variant in nonroot root shell; do
  case "$variant" in
    nonroot) tag="$version" ;;
    *) tag="$version-$variant" ;;
  esac
  digest="$(cat "$work/refs/$variant.digest")"
  child="$(cat "$work/refs/$variant-linux-$arch.ref")"
  echo "--> $variant: $repo:$tag = $digest"
  skopeo inspect --raw --tls-verify=false "docker://$repo:$tag" >"$work/$variant.index.json"
  skopeo inspect --config --tls-verify=false "docker://$repo:$tag" >"$work/$variant.config.json"
  python3 - "$work/$variant.index.json" "$work/$variant.config.json" "$digest" "${child#*@}" "$arch" "$variant" <<'PY' || fail "$variant: the index"
import hashlib, json, sys
index_path, config_path, digest, child, arch, variant = sys.argv[1:]
raw = open(index_path, "rb").read()
index, config = json.loads(raw), json.load(open(config_path))
assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, "digest of the index"
assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", index["mediaType"]
children = [(m["digest"], m["platform"]) for m in index["manifests"]]
assert children == [(child, {"os": "linux", "architecture": arch})], children
user = config["config"]["User"]
assert user == ("0:0" if variant == "root" else "65532:65532"), user
PY
  mkdir -p "$work/unpack"
  skopeo copy --quiet "oci:$work/oci-layout:$tag" "oci:$work/unpack/$variant:image"
  umoci unpack --rootless --image "$work/unpack/$variant:image" "$work/bundle/$variant" >/dev/null
  rootfs="$work/bundle/$variant/rootfs"
  "$rootfs/ocistep" --version | grep -qF "ocistep $version" || fail "$variant: /ocistep does not run"
  [ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "$variant: no CA certificates"
  if [ "$variant" = shell ]; then
    [ "$(readlink "$rootfs/bin/sh")" = busybox ] || fail "shell: /bin/sh is not busybox"
    [ "$(readlink "$rootfs/usr/local/bin/ocistep")" = /ocistep ] || fail "shell: no ocistep on PATH"
    "$rootfs/bin/busybox" sh -c 'echo shell works' >/dev/null || fail "shell: busybox does not run"
  fi
done
umoci ls --layout "$work/oci-layout" | sort | tee "$work/layout-tags"
[ "$(sort <<<"$version
$version-root
$version-shell")" = "$(cat "$work/layout-tags")" ] || fail "the OCI layout's tags"

echo "==> 4. pin the CI wiring (a copy) to this release"
pinned="$work/pinned"
mkdir -p "$pinned"
mkdir -p "$pinned/examples"
cp -r tasks pipelines templates action.yml "$pinned/"
cp -r examples/gitlab "$pinned/examples/"
sums="$(sha256sum "$release/SHA256SUMS" | cut -d' ' -f1)"
python3 scripts/pin_release.py --root "$pinned" --repository "$repo" "$version" \
  "$(cat "$work/refs/nonroot.digest")" "$(cat "$work/refs/shell.digest")" "$sums"
if grep -rn 'ghcr\.io/ocistep/ocistep:' "$pinned"; then fail "references left unpinned"; fi
grep -q "ocistep/ocistep/ocistep@$version\$" "$pinned/examples/gitlab/.gitlab-ci.yml" ||
  fail "the GitLab example does not include component release $version"
grep -rhoE "$repo:[0-9.]+(-shell)?@sha256:[0-9a-f]{64}" "$pinned" | sort -u >"$work/pins"
[ "$(wc -l <"$work/pins")" -eq 2 ] || fail "expected the nonroot and shell pins, found: $(cat "$work/pins")"
while read -r pin; do
  by_digest="$(skopeo inspect --raw --tls-verify=false "docker://${repo}@${pin#*@}" | sha256sum | cut -d' ' -f1)"
  [ "sha256:$by_digest" = "${pin#*@}" ] || fail "$pin does not resolve"
  echo "--> $pin resolves"
done <"$work/pins"

echo "==> 5. the action's install script against this release"
server_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/release" "$server_port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$server_port/" >/dev/null 2>&1 && break; sleep 0.1; done
pinned_sums="$(sed -n 's/^ *OCISTEP_PINNED_SUMS: "\(.*\)"$/\1/p' "$pinned/action.yml")"
[ "$pinned_sums" = "$sums" ] || fail "action.yml pins SHA256SUMS $pinned_sums, not $sums"
mkdir -p "$work/runner/tool-cache"
OCISTEP_VERSION="" OCISTEP_PINNED_VERSION="$version" OCISTEP_PINNED_SUMS="$pinned_sums" \
  OCISTEP_DOWNLOAD_URL="http://127.0.0.1:$server_port" RUNNER_TOOL_CACHE="$work/runner/tool-cache" \
  RUNNER_TEMP="$work/runner" GITHUB_OUTPUT="$work/runner/output" GITHUB_PATH="$work/runner/path" \
  action/install.sh
cmp "$work/runner/tool-cache/ocistep/$version/$arch/ocistep" "$release/$asset" ||
  fail "the action installed another binary"

echo "release-dry-run: ok (ocistep $version, $arch, indexes in $repo and $work/oci-layout)"
