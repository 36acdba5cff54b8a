#!/usr/bin/env bash
# The main job end to end, with no registry of your own: pack a sample source
# tree into a bundle, push it, pull it into another directory as a build node
# would, verify, and show the digests. Uses an OCI layout on disk, and also a
# throwaway local registry when docker-registry is installed.
set -euo pipefail

bin=${OCISTEP:-target/release/ocistep}
work=$(mktemp -d)
# shellcheck source=scripts/loopback-registry.sh
. "$(dirname "${BASH_SOURCE[0]}")/loopback-registry.sh"
cleanup() {
  stop_registry
  rm -rf "$work"
}
trap cleanup EXIT

echo "== sample source tree in $work/src"
mkdir -p "$work/src/cmd/app" "$work/src/docs" "$work/src/build" "$work/src/empty"
printf 'package main\n\nfunc main() { println("hello") }\n' > "$work/src/cmd/app/main.go"
printf '#!/bin/sh\nexec go build ./cmd/app\n' > "$work/src/build.sh"
chmod +x "$work/src/build.sh"
printf '# Demo\n' > "$work/src/docs/README.md"
ln -s docs/README.md "$work/src/README.md"
printf 'artifact\n' > "$work/src/build/output.bin"
printf 'build/\n' > "$work/src/.shpignore"

echo "== push the bundle into an OCI layout (oci:$work/layout:v1-src)"
"$bin" --push-source-bundle "$work/src" --image "oci:$work/layout:v1-src" \
  --source-timestamp 1700000000 \
  --result-file-image-digest "$work/digest" --result-file-image-ref "$work/ref"
echo "   digest: $(cat "$work/digest")"
echo "   pinned: $(cat "$work/ref")"

echo "== pull it into $work/node-arm64 (as a build node would), by digest"
"$bin" --pull-source-bundle "$work/node-arm64" --image "oci:$work/layout@$(cat "$work/digest")" \
  --result-file-source-timestamp "$work/ts" --show-listing
echo "   source timestamp: $(cat "$work/ts")"
echo "== compare (build/ is excluded by .shpignore)"
diff -r --no-dereference --exclude=build "$work/src" "$work/node-arm64" && echo "   identical"

echo "== push again with other mtimes: same digest (deterministic)"
touch -d '2001-02-03' "$work/src/cmd/app/main.go"
"$bin" -q --push-source-bundle "$work/src" --image "oci:$work/layout:again" \
  --source-timestamp 1700000000 --result-file-image-digest "$work/digest2"
echo "   first:  $(cat "$work/digest")"
echo "   second: $(cat "$work/digest2")"
[ "$(cat "$work/digest")" = "$(cat "$work/digest2")" ]

if ! command -v docker-registry >/dev/null 2>&1; then
  echo "== docker-registry is not installed: skipping the registry half (apt-get install docker-registry)"
  exit 0
fi
start_registry "$work/registry"
port=$registry_port

echo "== push to a throwaway registry at 127.0.0.1:$port"
"$bin" --push-source-bundle "$work/src" --image "127.0.0.1:$port/demo/app:v1-src" \
  --source-timestamp 1700000000 --result-file-image-digest "$work/rdigest" --result-file-image-ref "$work/rref"
echo "   pinned: $(cat "$work/rref")"
echo "== pull by digest on a 'node', then prune the bundle"
"$bin" --pull-source-bundle "$work/node-amd64" --image "$(cat "$work/rref")" --prune
diff -r --no-dereference --exclude=build "$work/src" "$work/node-amd64" && echo "   identical"
echo "== same tree, same digest in the layout and in the registry: $(cat "$work/rdigest")"
