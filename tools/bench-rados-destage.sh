#!/usr/bin/env bash
# chainswap's RADOS mode through the mount against `rados bench` (issue 15's
# targets), side by side on one throw-away single-node cluster
# (scripts/ceph-test-cluster.sh, memstore, pool "bench") in one run, REPS
# times, the order of the three subjects alternating per rep (odd reps:
# RADOS mount, rados bench, local mount; even reps: the reverse):
#
#   RADOS mount: `chainswap format BACKING --store rados:bench --ceph-conf
#     CONF`, `chainswapfs BACKING MNT -f -o MOUNT_OPTS` (destage_delay=0),
#     `mkdir MNT/c`, then
#     1. ingest + destage: `dd if=WORK/data of=MNT/c/f bs=1M oflag=direct`
#        of MIB MiB of unique random data (pre-generated once, the same file
#        every rep); ingest = the dd alone (MB/s, 10^6 bytes); destage = from
#        the start of the dd until the catalog's `pat` has MIB*256 rows
#        (sqlite3 polled every 0.1 s) -> blocks/s. Every block is distinct,
#        so each is one cas create in the pool;
#     2. reads from the pool: unmount (the daemon exits), remount, drop the
#        page cache, then `fio --name=r --filename=MNT/c/f --rw=randread
#        --bs=4k --direct=1 --ioengine=psync --numjobs=4 --iodepth=1
#        --runtime=RUNTIME --time_based --group_reporting
#        --output-format=json` -> IOPS, completion latency p99 and mean;
#     3. cleanup (not timed): rm MNT/c/f, wait until `pat`, rados_intent and
#        rados_unref are empty, unmount, and check that no blk.* object is
#        left in the pool (leftovers would turn the next rep's creates into
#        references: they are removed, and reported).
#   rados bench: `rados bench SECONDS_RADOS write -b 4096 -O 4096 -t 64
#     --no-cleanup` (ops/s: the reference of 1.), then `rados bench RUNTIME
#     rand -t 4` on those objects (IOPS, mean latency: the reference of 2.,
#     4 in flight like fio's 4 jobs), then cleanup.
#   local mount: the same as the RADOS mount on `chainswap format BACKING2`
#     (local store.dat): the dd (ingest reference: both land in the local
#     journal), its destage (for reference), the same fio after a remount.
#
# Targets (issue 15): destage >= 0.8x rados bench write; ingest ~1.0x of the
# local mode. One OSD sharing the machine's cores with the client, the
# daemon and fio: figures are this machine's, not a cluster's.
# The journal's default journal_limit is 256M: with MIB=256 the RADOS-mode
# dd fills it (records plus headers) and its last writes wait for the
# destage into the pool, so the ingest row then measures part of the
# destage (one run: 2.1 s against 0.66 s with MOUNT_OPTS=
# destage_delay=0,journal_limit=1G). Keep MIB well below journal_limit, or
# raise it in MOUNT_OPTS, to time the ingest alone.
# A TERM waits for the running dd/fio/rados bench to end, then the exit trap
# unmounts (waiting for the daemon) and stops the cluster; --owner also
# stops the cluster if the script is killed outright.
#
# Output: a markdown table (medians of REPS, and the medians of the per-rep
# ratios) on stdout; raw output per run in WORK/runs/ (dd, fio JSON, rados
# bench, daemon logs), the per-rep figures in WORK/pairs.txt.
#
#   sudo [WORK=/var/tmp/bench-rados-destage] [REPS=5] [MIB=256] [RUNTIME=30] \
#        [SECONDS_RADOS=10] [MOUNT_OPTS=destage_delay=0] \
#        tools/bench-rados-destage.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
build=$(cd "${1:-$here/../build}" && pwd)
CHAINSWAP=$build/tools/chainswap
CHAINSWAPFS=$build/fs/chainswapfs
CLUSTER=$here/../scripts/ceph-test-cluster.sh
WORK=${WORK:-/var/tmp/bench-rados-destage}
REPS=${REPS:-5}
MIB=${MIB:-256}
RUNTIME=${RUNTIME:-30}
SECONDS_RADOS=${SECONDS_RADOS:-10}
MOUNT_OPTS=${MOUNT_OPTS:-destage_delay=0}
DESTAGE_TIMEOUT=${DESTAGE_TIMEOUT:-900}
POOL=bench
BLOCKS=$((MIB * 256))
for b in "$CHAINSWAP" "$CHAINSWAPFS"; do
  [ -x "$b" ] || { echo "bench-rados-destage: no $b: build first" >&2; exit 1; }
done
for t in fio rados sqlite3 fusermount3 mountpoint /usr/bin/python3; do
  command -v "$t" >/dev/null || { echo "bench-rados-destage: $t missing" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-rados-destage: run as root (drop_caches, FUSE mounts)" >&2; exit 1; }

die() { echo "bench-rados-destage: $*" >&2; exit 1; }
log() { echo "bench-rados-destage: $*" >&2; }

# never rm -rf through a mount left by an earlier run
if mountpoint -q "$WORK/mnt" 2>/dev/null; then die "$WORK/mnt is mounted: unmount it first"; fi
if [ -f "$WORK/ceph/ceph.conf" ]; then bash "$CLUSTER" stop "$WORK/ceph" >/dev/null 2>&1 || true; fi
rm -rf "$WORK"
mkdir -p "$WORK/runs"
CEPH=$WORK/ceph
MNT=$WORK/mnt
CUR_PID=''  # the chainswapfs daemon mounted on $MNT, if any

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CUR_PID" ] || mountpoint -q "$MNT" 2>/dev/null; then
    # before the cluster goes: a RADOS daemon destages what is left at exit
    bl_unmount "$MNT" "$CUR_PID" 120
    CUR_PID=''
  fi
  bash "$CLUSTER" stop "$CEPH" >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$CLUSTER" start "$CEPH" "$POOL" --owner $$ >"$WORK/runs/cluster-start.log" 2>&1 ||
  die "the cluster did not start: $(tail -3 "$WORK/runs/cluster-start.log")"
CONF=$CEPH/ceph.conf

# unique random data, once (every rep writes the same bytes; the cleanup of
# each rep removes its objects, so they are created anew each time)
dd if=/dev/urandom of="$WORK/data" bs=1M count="$MIB" status=none
sync

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# `select count(*) from TABLE` of BACKING's catalog, read-only; "" on an error
cat_count() {  # backing table
  sqlite3 -readonly -cmd '.timeout 2000' "$1/catalog.db" "select count(*) from $2" 2>/dev/null || true
}

cs_mount() {  # backing log -> CUR_PID
  mkdir -p "$MNT"
  "$CHAINSWAPFS" "$1" "$MNT" -f ${MOUNT_OPTS:+-o "$MOUNT_OPTS"} >>"$2" 2>&1 &
  CUR_PID=$!
  if ! bl_wait_mount "$MNT" "$CUR_PID"; then
    kill "$CUR_PID" 2>/dev/null || true
    wait "$CUR_PID" 2>/dev/null || true
    CUR_PID=''
    die "chainswapfs $1 did not mount: $(tail -2 "$2")"
  fi
}
cs_unmount() {
  bl_unmount "$MNT" "$CUR_PID" 300
  CUR_PID=''
  ! mountpoint -q "$MNT" || die "$MNT still mounted"
}

# fio's JSON -> "iops p99_us mean_us" (completion latency)
fio_read() {
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
try:
    r = json.loads(text[text.index("{"):])["jobs"][0]["read"]
    c = r["clat_ns"]
    p99 = (c.get("percentile") or {}).get("99.000000")
    print("%.1f %s %.1f" % (r["iops"], "n/a" if p99 is None else "%.1f" % (p99 / 1000), c["mean"] / 1000))
except (ValueError, KeyError, IndexError):
    print("n/a n/a n/a")
EOF
}

# One chainswap subject: format, mount, ingest + destage, remount, fio.
# Sets R_INGEST (MB/s), R_DESTAGE (blocks/s), R_IOPS, R_P99, R_MEAN (us).
run_cs() {  # kind(rados|local) rep
  local kind=$1 rep=$2 bk=$WORK/bk-$1 lg=$WORK/runs/$1-$2.log t0 ti td n=0
  rm -rf "$bk"
  if [ "$kind" = rados ]; then
    "$CHAINSWAP" format "$bk" --store "rados:$POOL" --ceph-conf "$CONF" >>"$lg" 2>&1 ||
      die "chainswap format --store rados:$POOL failed: $(tail -2 "$lg")"
  else
    "$CHAINSWAP" format "$bk" >>"$lg" 2>&1 || die "chainswap format failed: $(tail -2 "$lg")"
  fi
  cs_mount "$bk" "$lg"
  mkdir "$MNT/c"
  bl_drop_caches
  cat "$WORK/data" >/dev/null  # the source in the page cache: the dd measures the mount only

  t0=$(bl_now)
  dd if="$WORK/data" of="$MNT/c/f" bs=1M oflag=direct status=none 2>>"$lg" || die "$kind: dd into the mount failed"
  ti=$(bl_elapsed "$t0")
  while :; do
    n=$(cat_count "$bk" pat)
    [ -n "$n" ] && [ "$n" -ge "$BLOCKS" ] && break
    if awk -v e="$(bl_elapsed "$t0")" -v m="$DESTAGE_TIMEOUT" 'BEGIN { exit !(e > m) }'; then
      die "$kind: pat has ${n:-?} of $BLOCKS rows after ${DESTAGE_TIMEOUT} s (intents $(cat_count "$bk" rados_intent)); log: $(tail -2 "$lg")"
    fi
    sleep 0.1
  done
  td=$(bl_elapsed "$t0")
  echo "$kind rep $rep: dd ${ti} s, pat=$n after ${td} s" >>"$lg"
  R_INGEST=$(awk -v m="$MIB" -v t="$ti" 'BEGIN { printf "%.1f", m * 1048576 / 1e6 / t }')
  R_DESTAGE=$(awk -v b="$BLOCKS" -v t="$td" 'BEGIN { printf "%.1f", b / t }')

  cs_unmount
  cs_mount "$bk" "$lg"
  bl_drop_caches
  fio --name=r --filename="$MNT/c/f" --rw=randread --bs=4k --direct=1 --ioengine=psync --numjobs=4 \
    --iodepth=1 --runtime="$RUNTIME" --time_based --group_reporting --output-format=json \
    >"$WORK/runs/$kind-fio-$rep.json" 2>>"$lg" || die "$kind: fio failed (see $WORK/runs/$kind-fio-$rep.json)"
  read -r R_IOPS R_P99 R_MEAN < <(fio_read "$WORK/runs/$kind-fio-$rep.json")

  # cleanup, not timed: drop the file's blocks (in RADOS mode: its objects)
  rm "$MNT/c/f"
  if [ "$kind" = rados ]; then
    for _ in $(seq $((DESTAGE_TIMEOUT * 10))); do
      [ "$(cat_count "$bk" pat)" = 0 ] && [ "$(cat_count "$bk" rados_intent)" = 0 ] &&
        [ "$(cat_count "$bk" rados_unref)" = 0 ] && break
      sleep 0.1
    done
    [ "$(cat_count "$bk" pat)" = 0 ] || log "$kind rep $rep: pat still has $(cat_count "$bk" pat) rows after the unlink"
  fi
  cs_unmount
  if [ "$kind" = rados ]; then
    rados -c "$CONF" -p "$POOL" ls 2>/dev/null | grep '^blk\.' >"$WORK/runs/leftover-$rep.txt" || true
    if [ -s "$WORK/runs/leftover-$rep.txt" ]; then
      log "rados rep $rep: $(wc -l <"$WORK/runs/leftover-$rep.txt") blk.* objects left after the unlink; removing them"
      while read -r o; do rados -c "$CONF" -p "$POOL" rm "$o" 2>/dev/null || true; done <"$WORK/runs/leftover-$rep.txt"
    fi
  fi
  rm -rf "$bk"
}

run_cs_rados() {
  run_cs rados "$1"
  echo "$R_DESTAGE $R_INGEST $R_IOPS $R_P99 $R_MEAN" >"$WORK/runs/cs-rados-$1.txt"
}
run_cs_local() {
  run_cs local "$1"
  echo "$R_DESTAGE $R_INGEST $R_IOPS $R_P99 $R_MEAN" >"$WORK/runs/cs-local-$1.txt"
}
run_rados_bench() {
  local rep=$1 w=$WORK/runs/rados-write-$1.txt r=$WORK/runs/rados-rand-$1.txt
  rados -c "$CONF" -p "$POOL" bench "$SECONDS_RADOS" write -b 4096 -O 4096 -t 64 --no-cleanup \
    --run-name "r$rep" >"$w" 2>&1 || die "rados bench write failed: $(tail -2 "$w")"
  rados -c "$CONF" -p "$POOL" bench "$RUNTIME" rand -t 4 --run-name "r$rep" >"$r" 2>&1 ||
    die "rados bench rand failed: $(tail -2 "$r")"
  rados -c "$CONF" -p "$POOL" cleanup --run-name "r$rep" >/dev/null 2>&1 || log "rados bench cleanup of r$rep failed"
  # write ops/s, rand IOPS, rand mean latency (us)
  echo "$(awk '/^Average IOPS/ {print $3}' "$w") $(awk '/^Average IOPS/ {print $3}' "$r")" \
    "$(awk '/^Average Latency\(s\)/ {printf "%.1f", $3 * 1e6}' "$r")" >"$WORK/runs/rados-$rep.txt"
}

for rep in $(seq "$REPS"); do
  log "rep $rep of $REPS"
  if [ $((rep % 2)) = 1 ]; then
    run_cs_rados "$rep"; run_rados_bench "$rep"; run_cs_local "$rep"
  else
    run_cs_local "$rep"; run_rados_bench "$rep"; run_cs_rados "$rep"
  fi
  # columns: 1 destage 2 ingest 3 iops 4 p99 5 mean (RADOS mount) | 6 write 7 rand 8 rand mean (rados
  # bench) | 9 destage 10 ingest 11 iops 12 p99 13 mean (local mount)
  paste -d' ' "$WORK/runs/cs-rados-$rep.txt" "$WORK/runs/rados-$rep.txt" "$WORK/runs/cs-local-$rep.txt" \
    >>"$WORK/pairs.txt"
done

col() { awk -v c="$1" '{print $c}' "$WORK/pairs.txt" | grep -v '^n/a$' | median | awk '{ if ($1 == "n/a") print; else printf "%.0f", $1 }'; }
ratio() { awk -v a="$1" -v b="$2" '$a != "n/a" && $b != "n/a" && $b > 0 {printf "%.3f\n", $a / $b}' "$WORK/pairs.txt" | median; }
leftover=$(cat "$WORK"/runs/leftover-*.txt 2>/dev/null | wc -l)

echo "# bench-rados-destage: $(date -u +%FT%TZ), $(bl_machine)"
echo "# commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo n/a), MIB=$MIB ($BLOCKS blocks) REPS=$REPS" \
  "RUNTIME=$RUNTIME SECONDS_RADOS=$SECONDS_RADOS MOUNT_OPTS=$MOUNT_OPTS, memstore, one OSD, pool $POOL;" \
  "backing on $(df -T "$WORK" | awk 'NR==2 {print $2}')"
echo
echo "| unique 4 KiB blocks | chainswap RADOS mode | reference | ratio (median of pairs) |"
echo "|---|---:|---:|---:|"
echo "| destage into the pool (blocks/s; from the dd's start to the last PAT row) vs rados bench write -t 64 (ops/s) | $(col 1) | $(col 6) | $(ratio 1 6)× |"
echo "| ingest: dd bs=1M oflag=direct into the mount (MB/s) vs the same into a local-mode mount | $(col 2) | $(col 10) | $(ratio 2 10)× |"
echo "| (for reference) local-mode destage (blocks/s) | | $(col 9) | |"
echo
echo "| 4 KiB random reads, 4 in flight, after a remount and drop_caches | chainswap RADOS mode (fio) | rados bench rand -t 4 | ratio (median of pairs) | chainswap local mode (fio) |"
echo "|---|---:|---:|---:|---:|"
echo "| IOPS | $(col 3) | $(col 7) | $(ratio 3 7)× | $(col 11) |"
echo "| completion latency p99 (µs) | $(col 4) | n/a | | $(col 12) |"
echo "| mean latency (µs) | $(col 5) | $(col 8) | $(ratio 5 8)× | $(col 13) |"
if [ "$leftover" != 0 ]; then
  echo
  echo "Warning: $leftover blk.* objects were left in the pool after the unlinks (removed; WORK/runs/leftover-*.txt)."
fi
