#!/usr/bin/env bash
# The action's first step: puts the ocistep release binary for this
# runner's architecture on PATH, from the runner's tool cache when it is
# there, else downloaded from the release and verified first.
#
#   OCISTEP_VERSION       the release to use (e.g. 0.2.0); empty: OCISTEP_PINNED_VERSION
#   OCISTEP_PINNED_VERSION, OCISTEP_PINNED_SUMS
#                         the release this action names, and the sha256 of
#                         that release's SHA256SUMS (scripts/pin-release.sh
#                         writes both into action.yml); the file must match
#   OCISTEP_DOWNLOAD_URL  where releases are: URL/v<version>/<file>
#   RUNNER_TOOL_CACHE, RUNNER_TEMP, RUNNER_ARCH   set by the runner
#
# A binary whose sha256 is not the one SHA256SUMS lists is refused, and
# nothing is cached or put on PATH. Writes the binary's path to
# $GITHUB_OUTPUT as `path`, and its directory to $GITHUB_PATH.
set -euo pipefail

fail() {
  echo "::error title=ocistep::$*" >&2
  exit 1
}

version="${OCISTEP_VERSION:-${OCISTEP_PINNED_VERSION:-}}"
version="${version#v}"
[ -n "$version" ] || fail "no version: set the version input"

machine="${RUNNER_ARCH:-$(uname -m)}"
case "$machine" in
  X64 | x86_64 | amd64) arch=amd64 ;;
  ARM64 | aarch64 | arm64) arch=arm64 ;;
  *) fail "no ocistep release for this runner's architecture ($machine): amd64 and arm64 only" ;;
esac
[ "$(uname -s)" = Linux ] || fail "ocistep runs on Linux runners only, not $(uname -s)"

asset="ocistep-$version-linux-$arch"
cache="${RUNNER_TOOL_CACHE:?the runner sets RUNNER_TOOL_CACHE}/ocistep/$version/$arch"
scratch="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/ocistep-install.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# What SHA256SUMS says the binary's sha256 is.
base="${OCISTEP_DOWNLOAD_URL%/}/v$version"
curl --fail --silent --show-error --location --retry 3 \
  --output "$scratch/SHA256SUMS" "$base/SHA256SUMS" ||
  fail "cannot download $base/SHA256SUMS"
if [ "$version" = "${OCISTEP_PINNED_VERSION:-}" ] && [ -n "${OCISTEP_PINNED_SUMS:-}" ]; then
  sums="$(sha256sum "$scratch/SHA256SUMS" | cut -d' ' -f1)"
  [ "$sums" = "$OCISTEP_PINNED_SUMS" ] ||
    fail "SHA256SUMS of $version has sha256 $sums, not $OCISTEP_PINNED_SUMS as this action pins: refusing it"
fi
expected="$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$scratch/SHA256SUMS")"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] || fail "SHA256SUMS of $version lists no $asset"

verify() {
  [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$expected" ]
}

if [ -f "$cache.complete" ] && [ -x "$cache/ocistep" ] && verify "$cache/ocistep"; then
  echo "ocistep $version ($arch) from the tool cache: $cache"
else
  echo "Downloading $base/$asset"
  curl --fail --silent --show-error --location --retry 3 \
    --output "$scratch/ocistep" "$base/$asset" ||
    fail "cannot download $base/$asset"
  verify "$scratch/ocistep" ||
    fail "$asset has sha256 $(sha256sum "$scratch/ocistep" | cut -d' ' -f1), not $expected as SHA256SUMS lists: refusing it"
  rm -rf "$cache" "$cache.complete"
  mkdir -p "$cache"
  install -m 0755 "$scratch/ocistep" "$cache/ocistep"
  touch "$cache.complete" # what the tool cache takes as a finished entry
  echo "ocistep $version ($arch) verified and cached in $cache"
fi

"$cache/ocistep" --version
echo "path=$cache/ocistep" >>"${GITHUB_OUTPUT:-/dev/null}"
echo "$cache" >>"${GITHUB_PATH:-/dev/null}"
