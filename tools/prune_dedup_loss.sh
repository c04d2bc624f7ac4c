#!/usr/bin/env bash
# docs/BENCHMARKS.md §7, "Bounded hash table": the dedup lost on `chainswap bench`
# data after `chainswap prune --percent P` (P=0: the control, no prune). Needs
# root (/dev/fuse), a build in BUILD (default build/), /dev/shm.
#   tools/prune_dedup_loss.sh 50
set -euo pipefail
P=${1:-50}
BIN=$(cd "$(dirname "$0")/.." && pwd)/${BUILD:-build}
B=/dev/shm/cs-prune-bench-$P; M=${TMPDIR:-/tmp}/mnt-$P
rm -rf "$B"; mkdir -p "$M"
$BIN/tools/chainswap format "$B" >/dev/null
mount_it() { $BIN/fs/chainswapfs "$B" "$M" -f -o log_level=warn 2>>${TMPDIR:-/tmp}/daemon-$P.log & PID=$!
  for i in $(seq 100); do mountpoint -q "$M" && return 0; sleep 0.1; done; echo "no mount"; exit 1; }
umount_it() { fusermount3 -u "$M"; wait $PID; }
stat_json() { $BIN/tools/chainswap stats --json "$B"; }
lat_blocks() { stat_json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(sum(c["nonzero_bytes"] for c in j["chains"])//4096)'; }
stored() { stat_json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["store"]["used_slots"], j["hash_table"]["entries"], j["hash_table"]["unindexed_blocks"])'; }
mount_it
$BIN/tools/chainswap bench "$M" --backing "$B" --image-mib 64 --random-ops 0 --discard 0 --keep > ${TMPDIR:-/tmp}/bench-$P.txt
umount_it
echo "after ingest (used_slots entries unindexed): $(stored)"
if [ "$P" != 0 ]; then $BIN/tools/chainswap prune "$B" --percent "$P"; fi
mount_it
before=$(stored); lat0=$(lat_blocks)
for f in "$M"/bench/*; do dd if="$f" of="$M/bench/copy-$(basename "$f")" bs=1M status=none; done
sync
lat_target=$((lat0 * 2))
for i in $(seq 600); do [ "$(lat_blocks)" -ge "$lat_target" ] && break; sleep 0.2; done
after=$(stored)
echo "P=$P before copy: $before  after copy: $after  (LAT blocks $lat0 -> $(lat_blocks))"
umount_it
