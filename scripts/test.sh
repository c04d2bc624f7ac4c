#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test (unit tests and tests that mount through /dev/fuse), in the normal
# build and under AddressSanitizer+UBSan and ThreadSanitizer, then a short
# libFuzzer run of the journal reader.
# SANITIZERS="" skips the sanitizer builds (quick local runs only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
if [ ! -e /dev/fuse ]; then
  echo "test: /dev/fuse is missing; the mounted tests need FUSE (modprobe fuse)" >&2
  exit 1
fi

run_suite() {
  local dir=$1; shift
  echo "== build $dir $*"
  BUILD_DIR=$dir ./scripts/build.sh "$@"
  echo "== test $dir"
  ctest --test-dir "$dir" --output-on-failure -j1
}

run_suite build
for san in ${SANITIZERS-address thread}; do
  run_suite "build-$san" -DCHAINSWAP_SANITIZE="$san"
done

# A short libFuzzer run of every on-disk parser (FUZZ_SECONDS=0 skips it).
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} ./scripts/fuzz.sh
fi
