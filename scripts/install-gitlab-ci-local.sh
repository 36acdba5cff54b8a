#!/usr/bin/env bash
# Installs the pinned gitlab-ci-local (scripts/gitlab-ci-local/package-lock.json)
# into .tools/gitlab-ci-local (git-ignored), with which tests/pipeline_gitlab.rs
# runs the example pipeline. It also needs git and rsync. Does nothing when
# the installed version already matches the pin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$root/scripts/gitlab-ci-local"
dest="$root/.tools/gitlab-ci-local"
stamp="$dest/installed.sha256"

want="$(cat "$pins/package.json" "$pins/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-gitlab-ci-local: npm is needed" >&2; exit 1; }
echo "==> installing gitlab-ci-local into .tools/gitlab-ci-local"
rm -rf "$dest"
mkdir -p "$dest"
cp "$pins/package.json" "$pins/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
"$dest/node_modules/.bin/gitlab-ci-local" --version
printf '%s' "$want" >"$stamp"
