#!/usr/bin/env bash
# Installs every Debian package chainswap's build, tests and demo use.
# With --bench, also what the side-by-side benchmarks use (zfs-fuse, fio).
# Does nothing when they are all present. Needs root (apt-get).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libfuse3-dev fuse3
  libsqlite3-dev sqlite3
  libxxhash-dev libspdlog-dev
  libgtest-dev googletest
  libcli11-dev nlohmann-json3-dev
  attr util-linux coreutils procps fio
  clang-14 libclang-rt-14-dev
)
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(zfs-fuse fio gcc linux-perf)
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
