#!/usr/bin/env bash
# Destage policy benchmark (SPEC §5, issue "destage engine"): a mixed swap-out
# and discard workload under capacity pressure, run with the adaptive
# delete-slot policy and with fixed splits D = 1 and D = N/2, alternating,
# REPS times each, on the same machine in the same run. Prints every run and
# the per-policy medians.
#
#   sudo tools/bench-destage.sh [BUILD_DIR]      (env: REPS=3 SECONDS_PER_RUN=20 WORK=/var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
REPS=${REPS:-3}
SECS=${SECONDS_PER_RUN:-20}
WORK=${WORK:-/var/tmp}/chainswap-destage-bench.$$
N=64
OPTS="capacity=${CAPACITY:-96M},journal_limit=64M,bucket_size=8M,queue_slots=$N"
mkdir -p "$WORK"
cleanup() { mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt"; rm -rf "$WORK"; }
trap cleanup EXIT

run() {  # label extra-options
  local label=$1 extra=$2
  rm -rf "$WORK/bk"; mkdir -p "$WORK/mnt"
  "$BUILD/tools/chainswap" format "$WORK/bk" >/dev/null
  "$BUILD/fs/chainswapfs" "$WORK/bk" "$WORK/mnt" -o "$OPTS$extra"
  mkdir "$WORK/mnt/bench"
  "$BUILD/tools/chainswap-destage-bench" --dir "$WORK/mnt/bench" --store "$WORK/bk/store.dat" \
      --files 4 --file-mib 128 --seconds "$SECS" --label "$label" --json
  fusermount3 -u "$WORK/mnt"
}

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); backing fs: $(df -T "$WORK" | awk 'NR==2{print $2}')"
echo "# mount options: $OPTS; workload: 4 files x 128 MiB (512 MiB logical > ${CAPACITY:-96M} capacity), 64 KiB random swap-out + 1 MiB discards every 2 ms, ${SECS}s per run"
results=$WORK/results.jsonl
for r in $(seq "$REPS"); do
  run adaptive "" | tee -a "$results"
  run "fixed-D=1" ",delete_slots_fixed=1" | tee -a "$results"
  run "fixed-D=N/2" ",delete_slots_fixed=$((N / 2))" | tee -a "$results"
done

echo
printf '%-12s %10s %10s %10s %11s %8s %14s\n' policy "MB/s" "p50 us" "p99 us" "p99.9 us" ENOSPC "peak store MiB"
for label in adaptive "fixed-D=1" "fixed-D=N/2"; do
  med() { grep "\"label\":\"$label\"" "$results" | sed -E "s/.*\"$1\":([0-9.e+-]+).*/\1/" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  printf '%-12s %10.1f %10.0f %10.0f %11.0f %8.0f %14.1f\n' "$label" "$(med write_mb_s)" "$(med write_p50_us)" \
      "$(med write_p99_us)" "$(med write_p999_us)" "$(med enospc)" "$(med peak_store_mib)"
done
