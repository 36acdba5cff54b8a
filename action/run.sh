#!/usr/bin/env bash
# The action's second step: runs one ocistep mode with the action's
# inputs (INPUT_* variables; see action.yml). Flags are passed only for
# inputs that are set. ocistep writes its outputs to $GITHUB_OUTPUT itself
# and reads credentials from --secret-path, else DOCKER_CONFIG or
# ~/.docker/config.json (where docker/login-action writes them).
set -euo pipefail

fail() {
  echo "::error title=ocistep::$*" >&2
  exit 2
}

ocistep="${OCISTEP_BIN:?the install step sets OCISTEP_BIN}"
args=()

case "${INPUT_MODE:-}" in
  push-source-bundle | pull-source-bundle | push-image | pull-artifact)
    args+=("--$INPUT_MODE=${INPUT_PATH:-.}") ;;
  assemble-index | push-artifact)
    args+=("--$INPUT_MODE") ;;
  copy)
    [ -n "${INPUT_SOURCE:-}" ] || fail "mode copy needs the source input"
    args+=(--copy "$INPUT_SOURCE") ;;
  *)
    fail "unknown mode '${INPUT_MODE:-}': push-source-bundle, pull-source-bundle, push-image, assemble-index, copy, push-artifact or pull-artifact" ;;
esac
[ -n "${INPUT_IMAGE:-}" ] || fail "the image input is required"
if [ "$INPUT_MODE" = copy ]; then
  args+=("$INPUT_IMAGE")
else
  args+=("--image=$INPUT_IMAGE")
fi

# --flag=VALUE when the input is set.
value() {
  if [ -n "$2" ]; then args+=("--$1=$2"); fi
}
# --flag when the input is true.
switch() {
  case "$2" in
    true) args+=("--$1") ;;
    false | "") ;;
    *) fail "input $1 is '$2': true or false" ;;
  esac
}
# --flag=LINE for every non-empty line of the input.
lines() {
  local line
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    if [ -n "$line" ]; then args+=("--$1=$line"); fi
  done <<<"$2"
}

value platform-image "${INPUT_PLATFORM_IMAGES:-}"
value require-platforms "${INPUT_REQUIRE_PLATFORMS:-}"
value index-format "${INPUT_INDEX_FORMAT:-}"
value source-timestamp "${INPUT_SOURCE_TIMESTAMP:-}"
value secret-path "${INPUT_SECRET_PATH:-}"
value ca-file "${INPUT_CA_FILE:-}"
value platform "${INPUT_PLATFORM:-}"
value cache-dir "${INPUT_CACHE_DIR:-}"
value artifact-type "${INPUT_ARTIFACT_TYPE:-}"
value retries "${INPUT_RETRIES:-}"
value log-format "${INPUT_LOG_FORMAT:-}"
switch insecure "${INPUT_INSECURE:-}"
switch prune "${INPUT_PRUNE:-}"
lines annotation "${INPUT_ANNOTATIONS:-}"
lines label "${INPUT_LABELS:-}"
lines file "${INPUT_FILES:-}"
# Any other flags, one a line.
while IFS= read -r extra; do
  if [ -n "$extra" ]; then args+=("$extra"); fi
done <<<"${INPUT_ARGS:-}"

echo "ocistep ${args[*]}"
exec "$ocistep" "${args[@]}"
