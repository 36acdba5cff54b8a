#!/usr/bin/env bash
# `make image-layout`: OCI image layouts of ocistep's three variants
# (nonroot, root, shell; see scripts/image_layout.py), a static binary on
# an empty base, built without a container engine, then pushed with
# ocistep's own --push-image to one more layout to show that it accepts
# them.
#
#   $TARGET/image-layout/VARIANT/   the layouts this script writes
#   $TARGET/image-out/              all three after --push-image (tags: the variants)
#
# $TARGET is CARGO_TARGET_DIR, else target/. The shell variant needs a
# static busybox (Debian's busybox-static).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-target}"

binary="$(scripts/build-static.sh)"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "error: no release architecture for $(uname -m)" >&2; exit 1 ;;
esac
version="$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

layouts="$target_dir/image-layout"
out="$target_dir/image-out"
rm -rf "$layouts" "$out" "$out.ref"
for variant in nonroot root shell; do
  python3 scripts/image_layout.py --binary "$binary" --variant "$variant" \
    --arch "$arch" --version "$version" --revision "$revision" "$layouts/$variant"
  echo "==> ocistep --push-image $layouts/$variant --image oci:$out:$variant"
  "$binary" -q --push-image "$layouts/$variant" --image "oci:$out:$variant" \
    --result-file-image-ref "$out.ref"
  echo "    pushed: $(cat "$out.ref")"
done

if command -v skopeo >/dev/null 2>&1; then
  echo "==> skopeo inspect --config oci:$out:shell"
  skopeo inspect --config "oci:$out:shell"
fi
if command -v umoci >/dev/null 2>&1; then
  echo "==> umoci ls --layout $out"
  umoci ls --layout "$out"
fi
