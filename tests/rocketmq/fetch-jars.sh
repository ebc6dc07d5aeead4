#!/bin/sh
# Fetch the RocketMQ 5.3.3 name server and broker jars (and their dependencies) that
# tests/servers.py runs, into a cache dir (default ~/.cache/edgeim/rocketmq-5.3.3/lib).
# Needs java and mvn (Debian: default-jre-headless maven; `make system-packages`).
# The first run downloads ~90 MB through Maven's configured repositories; later runs
# find the `.complete` marker and return at once.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=5.3.3
dest=${EDGEIM_ROCKETMQ_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeim/rocketmq-$version}
if [ -f "$dest/lib/.complete" ]; then
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "mvn is not installed: apt-get install -y maven" >&2; exit 1; }
mkdir -p "$dest"
rm -rf "$dest/lib.tmp"
echo "fetching RocketMQ $version jars into $dest/lib"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$dest/lib.tmp" -DincludeScope=runtime -Dmaven.repo.local="$dest/m2"
rm -rf "$dest/lib"
mv "$dest/lib.tmp" "$dest/lib"
# the local repository only served the copy: the jars now live in lib/
rm -rf "$dest/m2"
touch "$dest/lib/.complete"
