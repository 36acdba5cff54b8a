#!/usr/bin/env bash
# The release's images, pushed and assembled by ocistep itself.
#
#   release-images.sh push BINARY LAYOUTS REPO VERSION ARCH REFS
#       pushes LAYOUTS/VARIANT (nonroot, root, shell) to REPO:TAG-linux-ARCH
#       and writes its pinned reference to REFS/VARIANT-linux-ARCH.ref
#   release-images.sh assemble BINARY REPO VERSION REFS [LAYOUT]
#       assembles REPO:TAG from every REFS/VARIANT-linux-*.ref, and the same
#       index into the OCI layout LAYOUT when given; writes the index digest
#       to REFS/VARIANT.digest
#
# TAG is VERSION for nonroot, VERSION-root and VERSION-shell for the others.
# Registry credentials: DOCKER_CONFIG or ~/.docker/config.json.
set -euo pipefail

variants=(nonroot root shell)

tag() {
  case "$1" in
    nonroot) echo "$2" ;;
    *) echo "$2-$1" ;;
  esac
}

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

case "${1:-}" in
  push)
    [ $# -eq 7 ] || usage
    binary=$2 layouts=$3 repo=$4 version=$5 arch=$6 refs=$7
    mkdir -p "$refs"
    for variant in "${variants[@]}"; do
      image="$repo:$(tag "$variant" "$version")-linux-$arch"
      echo "==> $variant: $image"
      "$binary" --push-image "$layouts/$variant" --image "$image" \
        --result-file-image-ref "$refs/$variant-linux-$arch.ref"
    done
    ;;
  assemble)
    [ $# -eq 5 ] || [ $# -eq 6 ] || usage
    binary=$2 repo=$3 version=$4 refs=$5 layout=${6:-}
    for variant in "${variants[@]}"; do
      platform_images=()
      for ref in "$refs/$variant"-linux-*.ref; do
        [ -f "$ref" ] || { echo "error: no $refs/$variant-linux-*.ref" >&2; exit 1; }
        platform_images+=(--platform-image "$(cat "$ref")")
      done
      image="$repo:$(tag "$variant" "$version")"
      echo "==> $variant: $image from $((${#platform_images[@]} / 2)) platform image(s)"
      "$binary" --assemble-index --image "$image" "${platform_images[@]}" \
        --result-file-image-digest "$refs/$variant.digest"
      if [ -n "$layout" ]; then
        "$binary" --assemble-index --image "oci:$layout:$(tag "$variant" "$version")" \
          "${platform_images[@]}" --result-file-image-digest "$refs/$variant.layout-digest"
        cmp -s "$refs/$variant.digest" "$refs/$variant.layout-digest" ||
          { echo "error: $variant: the registry's index and the layout's differ" >&2; exit 1; }
      fi
    done
    ;;
  *) usage ;;
esac
