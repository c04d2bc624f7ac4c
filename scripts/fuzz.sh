#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS
# (default 30) on its corpus in tests/fuzz/corpus/<target>/ (new inputs go
# to a scratch directory; add interesting ones to the corpus by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-30}
DIR=${BUILD_DIR:-build-fuzz}
CC=clang-14 CXX=clang++-14 cmake -S . -B "$DIR" -DCHAINSWAP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$DIR" -j"$(nproc)" --target journal_segment_fuzz
for t in journal_segment_fuzz; do
  scratch=$(mktemp -d)
  echo "== fuzz $t for ${SECS}s"
  "$DIR/tests/fuzz/$t" -max_total_time="$SECS" -max_len=65536 -print_final_stats=1 "$scratch" "tests/fuzz/corpus/$t" 2>&1 | tail -5
  rm -rf "$scratch"
done
echo "fuzz: no crash"
