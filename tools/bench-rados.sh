#!/usr/bin/env bash
# The RADOS content store's primitives against `rados bench` (issue 15,
# docs/BENCHMARKS.md §10), side by side on one throw-away single-node cluster
# (scripts/ceph-test-cluster.sh, memstore) in one run, REPS times, the order
# of the two alternating per rep:
#   - chainswap-rados-bench --blocks BLOCKS --window WINDOW --hosts 2: unique
#     4 KiB blocks created with cas chunk_create_or_get_ref (verify on), the
#     same blocks referenced by a second connection ("host"), read back in a
#     random order, every reference dropped (tools/rados_bench.cc);
#   - rados bench SECONDS write -b 4096 -O 4096 -t WINDOW --no-cleanup, then
#     rados bench SECONDS rand -t WINDOW on those objects, then cleanup:
#     plain 4 KiB objects at the same concurrency.
# This measures the primitives a RADOS destage will use, not chainswap's
# destage through the mount (not built yet, docs/RADOS.md).
#
# Output: a markdown table (medians of REPS, and the median of the per-rep
# ratios) on stdout; raw output per run in WORK/runs/.
#
#   sudo [WORK=/var/tmp/bench-rados] [REPS=5] [BLOCKS=20000] [WINDOW=64] \
#        [SECONDS_RADOS=10] tools/bench-rados.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
build=$(cd "${1:-$here/../build}" && pwd)
BENCH=$build/tools/chainswap-rados-bench
CLUSTER=$here/../scripts/ceph-test-cluster.sh
WORK=${WORK:-/var/tmp/bench-rados}
REPS=${REPS:-5}
BLOCKS=${BLOCKS:-20000}
WINDOW=${WINDOW:-64}
SECONDS_RADOS=${SECONDS_RADOS:-10}
[ -x "$BENCH" ] || { echo "bench-rados: no $BENCH: build first" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/runs"
CEPH=$WORK/ceph
trap 'bash "$CLUSTER" stop "$CEPH" >/dev/null 2>&1 || true' EXIT
bash "$CLUSTER" start "$CEPH" bench >/dev/null
CONF=$CEPH/ceph.conf

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
jget() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

run_chainswap() {
  local rep=$1 out=$WORK/runs/chainswap-$rep.json
  "$BENCH" --conf "$CONF" --pool bench --blocks "$BLOCKS" --window "$WINDOW" --hosts 2 --seed "$rep" \
    2>"$WORK/runs/chainswap-$rep.log" | tail -1 >"$out"
  echo "$(jget "$out" create_ops_per_s) $(jget "$out" share_ops_per_s) $(jget "$out" read_ops_per_s) $(jget "$out" unref_ops_per_s)" \
    >>"$WORK/chainswap.txt"
}
run_rados() {
  local rep=$1 w=$WORK/runs/rados-write-$rep.txt r=$WORK/runs/rados-rand-$rep.txt
  rados -c "$CONF" -p bench bench "$SECONDS_RADOS" write -b 4096 -O 4096 -t "$WINDOW" --no-cleanup \
    --run-name "r$rep" >"$w" 2>&1
  rados -c "$CONF" -p bench bench "$SECONDS_RADOS" rand -t "$WINDOW" --run-name "r$rep" >"$r" 2>&1
  rados -c "$CONF" -p bench cleanup --run-name "r$rep" >/dev/null 2>&1
  echo "$(awk '/^Average IOPS/ {print $3}' "$w") $(awk '/^Average IOPS/ {print $3}' "$r")" >>"$WORK/rados.txt"
}

for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then run_chainswap "$rep"; run_rados "$rep"; else run_rados "$rep"; run_chainswap "$rep"; fi
done

paste -d' ' "$WORK/chainswap.txt" "$WORK/rados.txt" >"$WORK/pairs.txt"
col() { awk -v c="$1" '{print $c}' "$WORK/pairs.txt" | median | awk '{printf "%.0f", $1}'; }
ratio() { awk -v a="$1" -v b="$2" '{printf "%.3f\n", $a / $b}' "$WORK/pairs.txt" | median; }
echo "# bench-rados: $(date -u +%FT%TZ), $(bl_machine)"
echo "# commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo n/a), BLOCKS=$BLOCKS WINDOW=$WINDOW REPS=$REPS SECONDS_RADOS=$SECONDS_RADOS, memstore, one OSD"
echo
echo "| 4 KiB objects, $WINDOW in flight | chainswap primitive (ops/s) | rados bench (ops/s) | ratio (median of pairs) |"
echo "|---|---:|---:|---:|"
echo "| unique blocks written: cas create (verify) vs write | $(col 1) | $(col 5) | $(ratio 1 5)× |"
echo "| the same blocks, second host: cas reference (verify) | $(col 2) | | $(ratio 2 5)× of write |"
echo "| random reads | $(col 3) | $(col 6) | $(ratio 3 6)× |"
echo "| references dropped (last one deletes) | $(col 4) | | |"
