#!/usr/bin/env bash
# Neighbour isolation (issue: "neighbours stall each other"): a guest doing
# 4 KiB O_DIRECT random reads (fio, psync, QD1) on one chain while a
# neighbour chain churns: it ingests NEIGHBOUR_MIB twice (dd bs=1M
# conv=fsync), unlinks both files, removes its chain directory and creates it
# again, over and over, for the whole read run. Measured on chainswap and on
# libfuse's passthrough_ll (built from the libfuse3-dev example into a
# temporary directory) over the same disk, targets alternating, REPS times;
# prints the guest's read IOPS, p99 and max completion latency per run and
# the medians with chainswap/passthrough_ll ratios.
#
#   sudo tools/bench-neighbour.sh [BUILD_DIR]
#   env: REPS=3 RUNTIME=40 NEIGHBOUR_MIB=1400 GUEST_MIB=256
#        WORK=/var/tmp/chainswap-neighbour.$$ (on the disk under test)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/bench-lib.sh
. tools/bench-lib.sh
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-40}
NEIGHBOUR_MIB=${NEIGHBOUR_MIB:-1400}
GUEST_MIB=${GUEST_MIB:-256}
WORK=${WORK:-/var/tmp/chainswap-neighbour.$$}
BUILD=${1:-build}

die() { echo "bench-neighbour: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (FUSE mounts, drop_caches)"
for c in fio gcc pkg-config fusermount3 mountpoint; do command -v "$c" >/dev/null || die "$c missing (./scripts/install-deps.sh --bench)"; done
CHAINSWAP=$BUILD/tools/chainswap
CHAINSWAPFS=$BUILD/fs/chainswapfs
{ [ -x "$CHAINSWAPFS" ] && [ -x "$CHAINSWAP" ]; } || die "build first: BUILD_DIR=$BUILD ./scripts/build.sh"
CHAINSWAP=$(readlink -f "$CHAINSWAP") CHAINSWAPFS=$(readlink -f "$CHAINSWAPFS")
[ -e "$WORK" ] && die "$WORK exists"
mkdir -p "$WORK/logs"
RESULTS=$WORK/results.txt
PID='' MNT=$WORK/mnt
cleanup() {
  set +e
  mountpoint -q "$MNT" && fusermount3 -u "$MNT"
  [ -n "$PID" ] && wait "$PID" 2>/dev/null
  find "$WORK" -mindepth 1 -maxdepth 1 ! -name results.txt ! -name logs -exec rm -rf --one-file-system {} +
}
trap cleanup EXIT

PT_BIN=$WORK/passthrough_ll
bl_build_passthrough_ll "$PT_BIN" "$WORK/logs/passthrough_ll.build" ||
  die "passthrough_ll did not build: $BL_ERR (see $WORK/logs)"
SRC=$WORK/neighbour.src
head -c "$((NEIGHBOUR_MIB << 20))" /dev/urandom >"$SRC"

mount_target() {  # target
  mkdir -p "$MNT"
  case $1 in
    chainswap)
      rm -rf "$WORK/backing"
      "$CHAINSWAP" format "$WORK/backing" >/dev/null
      "$CHAINSWAPFS" "$WORK/backing" "$MNT" -f >>"$WORK/logs/chainswapfs.log" 2>&1 & PID=$! ;;
    passthrough_ll)
      rm -rf "$WORK/source"; mkdir -p "$WORK/source"
      "$PT_BIN" -f -o source="$WORK/source" "$MNT" >>"$WORK/logs/passthrough_ll.log" 2>&1 & PID=$! ;;
  esac
  for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  die "$1 did not mount"
}
unmount_target() {
  fusermount3 -u "$MNT"
  wait "$PID" || true
  PID=''
  rm -rf "$WORK/backing" "$WORK/source"
}

neighbour() {  # churns until $WORK/stop exists
  while [ ! -e "$WORK/stop" ]; do
    mkdir "$MNT/neighbour"
    for f in a b; do dd if="$SRC" of="$MNT/neighbour/$f" bs=1M conv=fsync status=none; done
    rm -f "$MNT/neighbour/a" "$MNT/neighbour/b"
    rmdir "$MNT/neighbour"
  done
}

run() {  # target rep
  local t=$1 rep=$2 out
  mount_target "$t"
  mkdir "$MNT/guest"
  dd if=/dev/urandom of="$MNT/guest/vm.swap" bs=1M count="$GUEST_MIB" conv=fsync status=none
  sync; echo 3 >/proc/sys/vm/drop_caches
  rm -f "$WORK/stop"
  neighbour & local npid=$!
  # terse v3: field 8 read IOPS, 15 read clat max (usec), 18-37 read clat percentiles
  out=$(fio --name=guest --filename="$MNT/guest/vm.swap" --rw=randread --bs=4k --direct=1 --ioengine=psync \
          --iodepth=1 --numjobs=1 --time_based --runtime="$RUNTIME" --size="${GUEST_MIB}M" \
          --output-format=terse --terse-version=3 2>>"$WORK/logs/fio.err" | grep -m1 '^3;')
  touch "$WORK/stop"
  wait "$npid" || true
  echo "$out" | awk -F';' -v t="$t" -v r="$rep" '{
    p99 = "n/a"; for (i = 18; i <= 37; i++) if (index($i, "99.000000%=") == 1) p99 = substr($i, 12)
    printf "run=%s target=%s read_iops=%s p99_us=%s max_us=%s\n", r, t, $8, p99, $15 }' | tee -a "$RESULTS"
  unmount_target
}

{
  echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores, $(git describe --always --dirty 2>/dev/null)"
  echo "# RUNTIME=$RUNTIME NEIGHBOUR_MIB=$NEIGHBOUR_MIB GUEST_MIB=$GUEST_MIB WORK=$WORK ($(df --output=source "$WORK" | tail -1))"
} | tee -a "$RESULTS"
for rep in $(seq "$REPS"); do
  for t in chainswap passthrough_ll; do run "$t" "$rep"; done
done
awk '
  { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if ($1 !~ /^run=/) next
    n[v["target"]]++; k = v["target"] SUBSEP n[v["target"]]
    iops[k] = v["read_iops"]; p99[k] = v["p99_us"]; mx[k] = v["max_us"] }
  function med(a, t,   i, m, c, x) { c = 0; for (i = 1; i <= n[t]; i++) x[++c] = a[t SUBSEP i] + 0
    for (i = 1; i <= c; i++) for (m = i + 1; m <= c; m++) if (x[m] < x[i]) { y = x[i]; x[i] = x[m]; x[m] = y }
    return c % 2 ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2 }
  END {
    printf "%-16s %12s %10s %10s\n", "median of " n["chainswap"], "read IOPS", "p99 us", "max us"
    for (t in n) printf "%-16s %12.0f %10.0f %10.0f\n", t, med(iops, t), med(p99, t), med(mx, t)
    printf "%-16s %12.2fx %9.2fx %9.2fx\n", "chainswap/pt_ll", med(iops, "chainswap") / med(iops, "passthrough_ll"),
           med(p99, "chainswap") / med(p99, "passthrough_ll"), med(mx, "chainswap") / med(mx, "passthrough_ll")
  }' "$RESULTS"
