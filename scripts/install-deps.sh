#!/usr/bin/env bash
# Installs every Debian package chainswap's build, tests and demo use
# (python3-prometheus-client: tests/mount/metrics_test.cc parses the metrics
# with its parser under /usr/bin/python3; ceph-mon, ceph-osd and ceph-common:
# the throw-away Ceph cluster of the RADOS tests, scripts/ceph-test-cluster.sh;
# librados-dev: librados's C API, for the RADOS content store,
# catalog/rados_store.h; libradospp-dev: its C++ API, for the RADOS tests).
# With --bench, also what the side-by-side benchmarks use (zfs-fuse, fio,
# gcc for passthrough_ll, git for the version in the results' header,
# python3 for fio's JSON output in tools/bench-lib.sh and bench-scale.sh,
# time (/usr/bin/time) for tools/bench-estimate.sh).
# Does nothing when they are all present. Needs root (apt-get).
#
#   --list   prints the package list, one a line, and installs nothing
#            (scripts/check-install.sh reads it; --list --bench adds the
#            benchmark packages)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libfuse3-dev fuse3
  libsqlite3-dev sqlite3
  libxxhash-dev libspdlog-dev
  libgtest-dev googletest
  libcli11-dev nlohmann-json3-dev liblz4-dev
  attr util-linux coreutils procps fio
  clang-14 libclang-rt-14-dev
  python3-prometheus-client
  ceph-mon ceph-osd ceph-common librados-dev libradospp-dev
)
BENCH_PACKAGES=(zfs-fuse fio gcc linux-perf git python3 strace time)

bench=0 list=0
for arg in "$@"; do
  case $arg in
    --bench) bench=1 ;;
    --list) list=1 ;;
    *) echo "usage: $0 [--bench] [--list]" >&2; exit 2 ;;
  esac
done
if [ $bench = 1 ]; then
  PACKAGES+=("${BENCH_PACKAGES[@]}")
fi
if [ $list = 1 ]; then
  printf '%s\n' "${PACKAGES[@]}" | awk '!seen[$0]++'
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
