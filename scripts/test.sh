#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, checks that
# the install script covers every package the build, tests and scripts use
# (scripts/check-install.sh), compiles the library and binaries with clang's
# thread-safety analysis (build-tsa, no tests), and runs every test (unit
# tests and tests that mount through /dev/fuse), in the normal build and
# under AddressSanitizer+UBSan and ThreadSanitizer, then a short libFuzzer
# run of the journal reader.
# SANITIZERS="" skips the sanitizer builds (quick local runs only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
if [ ! -e /dev/fuse ]; then
  echo "test: /dev/fuse is missing; the mounted tests need FUSE (modprobe fuse)" >&2
  exit 1
fi

build() {
  local dir=$1; shift
  echo "== build $dir $* ($(date -u +%T))"
  BUILD_DIR=$dir ./scripts/build.sh "$@"
}
# Two tests at a time: each has its own temporary directory, daemon and
# (RADOS tests) cluster; the mounted tests that measure or starve the whole
# machine are RUN_SERIAL (tests/CMakeLists.txt).
run_tests() {
  echo "== test $1 ($(date -u +%T))"
  ctest --test-dir "$1" --output-on-failure -j2
}

build build
echo "== check-install build ($(date -u +%T))"
./scripts/check-install.sh build
# Compile only: clang-14's -Wthread-safety as errors over the library and
# binary targets (Debug: no optimizer, assertions compiled in).
CC=clang-14 CXX=clang++-14 BUILD_TYPE=Debug \
  build build-tsa -DCHAINSWAP_THREAD_SAFETY=ON -DCHAINSWAP_BUILD_TESTS=OFF

run_tests build
for san in ${SANITIZERS-address thread}; do
  build "build-$san" -DCHAINSWAP_SANITIZE="$san"
  run_tests "build-$san"
done

# A short libFuzzer run of every on-disk parser (FUZZ_SECONDS=0 skips it).
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  echo "== fuzz build-fuzz ($(date -u +%T))"
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} ./scripts/fuzz.sh
fi
echo "== done ($(date -u +%T))"
