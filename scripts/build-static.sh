#!/usr/bin/env bash
# A statically linked release binary of ocistep, for this machine's
# architecture: the musl target when it is installed (the release
# workflow installs it), else the host's glibc target with crt-static.
# Refuses a binary that still names a dynamic loader.
#
#   scripts/build-static.sh            builds, then prints the binary's path
#   OCISTEP_TARGET=TRIPLE scripts/...  builds for that installed target
#
# Honours CARGO_TARGET_DIR like cargo does.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

host="$(rustc -vV | sed -n 's/^host: //p')"
musl="$(uname -m)-unknown-linux-musl"
# Outputs are captured before grep reads them: `cmd | grep -q` under pipefail
# fails when grep exits first and cmd dies of SIGPIPE.
installed_targets="$(rustup target list --installed 2>/dev/null || true)"
if [ -n "${OCISTEP_TARGET:-}" ]; then
  target="$OCISTEP_TARGET"
elif grep -qx "$musl" <<<"$installed_targets"; then
  target="$musl"
else
  target="$host"
fi

case "$target" in
  *-musl) flags="" ;; # static by default
  *) flags="-C target-feature=+crt-static" ;;
esac
echo "==> static build for $target${flags:+ ($flags)}" >&2
# stdout is the binary's path alone: cargo's own output goes to stderr.
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --locked --target "$target" >&2

binary="${CARGO_TARGET_DIR:-target}/$target/release/ocistep"
program_headers="$(readelf --program-headers "$binary")"
if grep -q INTERP <<<"$program_headers"; then
  echo "error: $binary is dynamically linked: $(file -b "$binary")" >&2
  exit 1
fi
echo "==> $(file -b "$binary")" >&2
echo "$binary"
