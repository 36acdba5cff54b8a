#!/usr/bin/env bash
# Installs the pinned validators that `make validate` runs into .tools/
# (git-ignored): a Python venv from scripts/validators/requirements.txt and
# npm packages from scripts/validators/package-lock.json. Needs only python3
# (with venv), npm and the PyPI and npm registries. Does nothing when the
# installed set already matches the pins.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$root/scripts/validators"
tools="$root/.tools"
stamp="$tools/installed.sha256"

want="$(cat "$pins/requirements.txt" "$pins/package.json" "$pins/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

for tool in python3 npm node; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-validators: $tool is needed" >&2; exit 1; }
done
echo "==> installing pinned validators into .tools/"
rm -rf "$tools/venv" "$tools/npm" "$stamp"
mkdir -p "$tools/npm"

python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-cache-dir --only-binary=:all: -r "$pins/requirements.txt"

cp "$pins/package.json" "$pins/package-lock.json" "$tools/npm/"
(cd "$tools/npm" && npm ci --no-audit --no-fund --loglevel=error)

printf '%s' "$want" > "$stamp"
