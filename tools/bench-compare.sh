#!/usr/bin/env bash
# Side-by-side benchmark (SPEC §7): chainswap against the libfuse passthrough_ll
# example (the FUSE floor), zfs-fuse with dedup=on and a plain directory, all
# on the same backing filesystem in one run, targets alternating, REPS times
# each. Every repetition starts each target empty (fresh format / source
# directory / pool). Per run:
#   ingest   `chainswap bench` clone chain (parent + CLONES clones of IMAGE_MIB):
#            MB/s, stored bytes against the exact ideal the bench computes,
#            dedup achieved, catalog bytes per block and destage lag (chainswap)
#   space    everything in the backing directory once destaged (du)
#   fio      4 KiB random write and read IOPS, psync, buffered and O_DIRECT,
#            one FIO_SIZE file of random data, write latency p50/p99
#   drain    time until the journal is empty after each fio write (chainswap)
#   memory   the daemon's peak RSS (VmHWM, reset at the start of each run)
# Prints the per-target medians with chainswap/passthrough_ll and
# chainswap/zfs-fuse ratios; every run's raw figures stay in WORK/results.txt.
#
#   sudo tools/bench-compare.sh [BUILD_DIR]
#   env: REPS=3 IMAGE_MIB=128 CLONES=4 FIO_SIZE=256M FIO_RUNTIME=10
#        WORK=/var/tmp/chainswap-compare.$$ ZFS_POOL_SIZE=8G CS_OPTS= (chainswapfs -o)
#        BUILD_DIR=... (an existing build: no install-deps, no build)
#        KEEP_LOGS=1 (keep WORK/logs: daemon logs, bench JSON, fio errors)
set -euo pipefail
CMDLINE="$0${*:+ $*}"
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=tools/bench-lib.sh
. tools/bench-lib.sh

REPS=${REPS:-3}
IMAGE_MIB=${IMAGE_MIB:-128}
CLONES=${CLONES:-4}
FIO_SIZE=${FIO_SIZE:-256M}
FIO_RUNTIME=${FIO_RUNTIME:-10}
ZFS_POOL_SIZE=${ZFS_POOL_SIZE:-8G}
CS_OPTS=${CS_OPTS:-}
WORK=${WORK:-/var/tmp/chainswap-compare.$$}
BUILD=${1:-${BUILD_DIR:-}}
POOL=csbench$$
TARGETS=(chainswap passthrough_ll zfs-fuse plain)

die() { echo "bench-compare: $*" >&2; exit 1; }
note() { echo "# $*" | tee -a "$RESULTS" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b - a}'; }

[ "$(id -u)" -eq 0 ] || die "needs root (FUSE mounts, zfs-fuse, drop_caches): sudo $0"
[ "$REPS" -ge 1 ] 2>/dev/null || die "REPS must be a positive integer"

# ---------------------------------------------------------------------------
# 1. Dependencies and the build.
if [ -z "$BUILD" ]; then
  ./scripts/install-deps.sh --bench
  buildlog=$(mktemp /tmp/chainswap-compare-build.XXXXXX)
  BUILD_DIR=build BUILD_TARGETS="chainswap chainswapfs" ./scripts/build.sh >"$buildlog" 2>&1 ||
    { cat "$buildlog" >&2; rm -f "$buildlog"; die "build failed"; }
  rm -f "$buildlog"
  BUILD=build
fi
BUILD=$(cd "$BUILD" && pwd)
CHAINSWAP=$BUILD/tools/chainswap
CHAINSWAPFS=$BUILD/fs/chainswapfs
for b in "$CHAINSWAP" "$CHAINSWAPFS"; do [ -x "$b" ] || die "$b missing (build first, or give BUILD_DIR)"; done
for c in fio fusermount3 getfattr gcc pkg-config du awk; do command -v "$c" >/dev/null || die "$c missing (./scripts/install-deps.sh --bench)"; done
[ -c /dev/fuse ] || die "/dev/fuse missing: no FUSE on this kernel"

[ -e "$WORK" ] && die "$WORK already exists"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.txt
LOGS=$WORK/logs
mkdir -p "$LOGS"
: >"$RESULTS"

CS_BK=$WORK/cs-backing CS_MNT=$WORK/cs-mnt
PT_SRC=$WORK/pt-source PT_MNT=$WORK/pt-mnt
ZFS_IMG=$WORK/zfs-pool.img ZFS_MNT=$WORK/zfs-mnt
PLAIN=$WORK/plain
CS_PID='' PT_PID='' ZFS_PID='' ZFS_STARTED=0 ZFS_NA='' POOL_UP=0 PT_TMP='' TABLE_DONE=''

# ---------------------------------------------------------------------------
# 7. Cleanup: every mount, the pool, zfs-fuse if this script started it, and
# everything in WORK but results.txt.
stop_daemon() {  # pid mountpoint: unmount, then wait for the daemon to exit
  local pid=$1 mnt=$2 i
  if mountpoint -q "$mnt" 2>/dev/null; then
    fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } || fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  [ -n "$pid" ] || return 0
  for i in $(seq 3000); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done  # up to 300 s (destage)
  echo "bench-compare: daemon $pid did not exit; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
pool_down() {
  [ "$POOL_UP" = 1 ] || return 0
  local i
  for i in 1 2 3 4 5 6; do  # zfs-fuse answers "pool is busy" for a moment after a sync task
    zpool destroy -f "$POOL" >>"$LOGS/zpool.log" 2>&1 && { POOL_UP=0; return 0; }
    sleep 2
  done
  echo "bench-compare: zpool destroy $POOL failed: $(tail -1 "$LOGS/zpool.log")" >&2
}
cleanup() {
  set +e
  trap - EXIT INT TERM
  stop_daemon "$CS_PID" "$CS_MNT"; CS_PID=
  stop_daemon "$PT_PID" "$PT_MNT"; PT_PID=
  pool_down
  if [ "$ZFS_STARTED" = 1 ] && [ -n "$ZFS_PID" ]; then
    kill -TERM "$ZFS_PID" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$ZFS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$ZFS_PID" 2>/dev/null && kill -KILL "$ZFS_PID" 2>/dev/null
  fi
  [ -n "$PT_TMP" ] && rm -rf "$PT_TMP"
  if [ -d "$WORK" ]; then
    local m
    for m in "$CS_MNT" "$PT_MNT" "$ZFS_MNT"; do
      mountpoint -q "$m" 2>/dev/null && echo "bench-compare: $m is still mounted; left in place" >&2
    done
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name results.txt ${KEEP_LOGS:+! -name logs} \
      -exec rm -rf --one-file-system {} + 2>/dev/null
  fi
  [ -z "$TABLE_DONE" ] && [ -s "${RESULTS:-/nonexistent}" ] && echo "raw results so far: $RESULTS" >&2
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Small helpers.

# JSON on stdin -> "path.to.key=value" lines (arrays as .0 .1 ...); enough
# for the bench's and fio's output, in plain (m)awk.
json_flat() {
  awk '
  { buf = buf $0 "\n" }
  function path(   p, k) { p = ""; for (k = 1; k <= d; k++) p = p (k > 1 ? "." : "") key[k]; return p }
  function emit(v) { print path() "=" v; if (type[d] == "o") want_key = 1 }
  END {
    n = length(buf); d = 0; want_key = 0
    for (i = 1; i <= n; i++) {
      c = substr(buf, i, 1)
      if (c ~ /[ \t\r\n:]/) continue
      if (c == "{" || c == "[") { d++; type[d] = (c == "{") ? "o" : "a"; key[d] = (c == "[") ? 0 : ""; want_key = (c == "{"); continue }
      if (c == "}" || c == "]") { d--; if (d > 0 && type[d] == "o") want_key = 1; continue }
      if (c == ",") { if (type[d] == "a") key[d]++; else want_key = 1; continue }
      if (c == "\"") {
        s = ""
        for (i++; i <= n; i++) { c = substr(buf, i, 1); if (c == "\\") { s = s substr(buf, i + 1, 1); i++; continue } if (c == "\"") break; s = s c }
        if (type[d] == "o" && want_key) { key[d] = s; want_key = 0 } else emit(s)
        continue
      }
      s = c
      while (i < n && substr(buf, i + 1, 1) !~ /[,}\] \t\r\n]/) { i++; s = s substr(buf, i, 1) }
      emit(s)
    }
  }'
}
jget() { local v; v=$(grep -m1 "^$2=" "$1" | cut -d= -f2-); case $v in ""|null) echo n/a ;; *) echo "$v" ;; esac; }
isnum() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
div() { if isnum "$1" && isnum "$2" && awk -v b="$2" 'BEGIN{exit !(b != 0)}'; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.6g", a / b}'; else echo n/a; fi; }
allocated() { du -s -B1 "$1" 2>/dev/null | awk '{print $1}'; }
apparent() { du -sb "$1" 2>/dev/null | awk '{print $1}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
hwm_reset() { if [ -n "$1" ]; then echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; fi; }
hwm_kib() { if [ -n "$1" ] && [ -r "/proc/$1/status" ]; then awk '/^VmHWM:/{print $2}' "/proc/$1/status"; else echo n/a; fi; }
zfs_bytes() {  # "148M" -> bytes (zpool list in zfs-fuse has no -p)
  awk -v s="$1" 'BEGIN{ u = substr(s, length(s)); n = s + 0; m = 1
    if (u == "K") m = 2^10; else if (u == "M") m = 2^20; else if (u == "G") m = 2^30; else if (u == "T") m = 2^40; else if (u == "P") m = 2^50
    printf "%.0f", n * m }'
}
zfs_alloc() { zfs_bytes "$(zpool list -H -o alloc "$POOL")"; }
zfs_settle() {  # commit: force txg syncs (zfs-fuse's txg timeout is 30 s; until then fsync'd
  # data sits in the ZIL, undeduplicated), then the allocation unchanged for 5 s, at most 60 s
  local last='' same=0 a i
  for i in 1 2; do  # a snapshot is a sync task: it waits for the txg to commit
    zfs snapshot "$POOL@settle$i" >>"$LOGS/zpool.log" 2>&1 && zfs destroy "$POOL@settle$i" >>"$LOGS/zpool.log" 2>&1
  done
  for i in $(seq 60); do
    a=$(zpool list -H -o alloc "$POOL" 2>/dev/null) || return 1
    if [ "$a" = "$last" ]; then same=$((same + 1)); [ $same -ge 5 ] && return 0; else same=0; last=$a; fi
    sleep 1
  done
}
cs_idle() {
  local j p
  j=$(getfattr --only-values -n user.chainswap.destage.journal_bytes "$CS_MNT" 2>/dev/null) || return 1
  p=$(getfattr --only-values -n user.chainswap.destage.pending_records "$CS_MNT" 2>/dev/null) || return 1
  [ "$j" = 0 ] && [ "$p" = 0 ]
}
cs_drain() {  # start-time -> seconds until journal_bytes == 0 and pending_records == 0
  local t0=$1 i
  for i in $(seq 60000); do
    cs_idle && { elapsed "$t0"; return 0; }
    sleep 0.01
  done
  echo n/a
}

# ---------------------------------------------------------------------------
# 2. passthrough_ll, built in a temporary directory (never in the repository).
PT_TMP=$(mktemp -d /tmp/chainswap-compare-ptll.XXXXXX)
PT_BIN=$PT_TMP/passthrough_ll
PT_NA=
bl_build_passthrough_ll "$PT_BIN" "$LOGS/passthrough_ll.build" || PT_NA=$BL_ERR

# 3. zfs-fuse: running already, or started here.
zfs_start() {
  command -v zfs-fuse >/dev/null || { ZFS_NA="zfs-fuse not installed"; return 1; }
  command -v zpool >/dev/null || { ZFS_NA="zpool not installed"; return 1; }
  local pid i
  if pid=$(pidof zfs-fuse); then
    ZFS_PID=${pid%% *}
  else
    if ! zfs-fuse -p "$WORK/zfs-fuse.pid" >"$LOGS/zfs-fuse.log" 2>&1; then
      ZFS_NA="zfs-fuse failed to start: $(tail -1 "$LOGS/zfs-fuse.log")"
      return 1
    fi
    ZFS_STARTED=1
    for i in $(seq 100); do [ -s "$WORK/zfs-fuse.pid" ] && break; sleep 0.1; done
    ZFS_PID=$(cat "$WORK/zfs-fuse.pid" 2>/dev/null || pidof zfs-fuse || true)
    ZFS_PID=${ZFS_PID%% *}
  fi
  for i in $(seq 100); do
    zpool list >"$LOGS/zpool-list.log" 2>&1 && return 0
    [ -n "$ZFS_PID" ] && ! kill -0 "$ZFS_PID" 2>/dev/null && break
    sleep 0.2
  done
  ZFS_NA="zfs-fuse did not answer: $(tail -1 "$LOGS/zpool-list.log" 2>/dev/null; tail -1 "$LOGS/zfs-fuse.log" 2>/dev/null)"
  return 1
}
zfs_start || true

# ---------------------------------------------------------------------------
# Per-target setup and teardown. Each sets DIR (where the workloads run),
# PID (the daemon, "" for plain), SPACE_DIR (the backing-side directory),
# or fails with NA_REASON.

setup() {
  NA_REASON='' DIR='' PID=''
  case $1 in
    chainswap)
      rm -rf "$CS_BK"; mkdir -p "$CS_MNT"
      "$CHAINSWAP" format "$CS_BK" >/dev/null || { NA_REASON="chainswap format failed"; return 1; }
      "$CHAINSWAPFS" "$CS_BK" "$CS_MNT" -f ${CS_OPTS:+-o "$CS_OPTS"} >>"$LOGS/chainswapfs.log" 2>&1 &
      CS_PID=$!
      bl_wait_mount "$CS_MNT" "$CS_PID" || { NA_REASON="chainswapfs did not mount (see $LOGS/chainswapfs.log)"; CS_PID=; return 1; }
      DIR=$CS_MNT PID=$CS_PID ;;
    passthrough_ll)
      [ -z "$PT_NA" ] || { NA_REASON=$PT_NA; return 1; }
      rm -rf "$PT_SRC"; mkdir -p "$PT_SRC" "$PT_MNT"
      "$PT_BIN" -f -o source="$PT_SRC" "$PT_MNT" >>"$LOGS/passthrough_ll.log" 2>&1 &
      PT_PID=$!
      bl_wait_mount "$PT_MNT" "$PT_PID" || { NA_REASON="passthrough_ll did not mount: $(tail -1 "$LOGS/passthrough_ll.log")"; PT_PID=; return 1; }
      DIR=$PT_MNT PID=$PT_PID ;;
    zfs-fuse)
      [ -z "$ZFS_NA" ] || { NA_REASON=$ZFS_NA; return 1; }
      rm -f "$ZFS_IMG"; truncate -s "$ZFS_POOL_SIZE" "$ZFS_IMG"
      if ! zpool create -f -o cachefile=none -O dedup=on -O recordsize=4k -O compression=off -O atime=off \
           -m "$ZFS_MNT" "$POOL" "$ZFS_IMG" >>"$LOGS/zpool.log" 2>&1; then
        NA_REASON="zpool create failed: $(tail -1 "$LOGS/zpool.log")"; return 1
      fi
      POOL_UP=1
      mountpoint -q "$ZFS_MNT" || { NA_REASON="pool $POOL created but $ZFS_MNT not mounted"; return 1; }
      zfs_settle || true
      DIR=$ZFS_MNT PID=$ZFS_PID ;;
    plain)
      rm -rf "$PLAIN"; mkdir -p "$PLAIN"
      DIR=$PLAIN ;;
  esac
}

teardown() {
  case $1 in
    chainswap) stop_daemon "$CS_PID" "$CS_MNT"; CS_PID=; rm -rf "$CS_BK" ;;
    passthrough_ll) stop_daemon "$PT_PID" "$PT_MNT"; PT_PID=; rm -rf "$PT_SRC" ;;
    zfs-fuse) pool_down; rm -f "$ZFS_IMG" ;;
    plain) rm -rf "$PLAIN" ;;
  esac
}

# fio: 4 KiB psync, numjobs=1, iodepth=1, terse v3 (read block: fields 6-46,
# write block: 47-87; clat percentiles as "P%=usec").
FIO_COMMON=(--ioengine=psync --numjobs=1 --iodepth=1 --fallocate=none --refill_buffers --randrepeat=1
            --output-format=terse --terse-version=3)
fio_job() {  # name file rw bs direct extra... -> terse line, or "ERR reason"
  local name=$1 file=$2 rw=$3 bs=$4 direct=$5 out; shift 5
  if out=$(fio --name="$name" --filename="$file" --size="$FIO_SIZE" --rw="$rw" --bs="$bs" --direct="$direct" \
             "${FIO_COMMON[@]}" "$@" 2>"$LOGS/fio.err") &&
     [ "$(echo "$out" | awk -F';' '/^3;/{print $5; exit}')" = 0 ]; then
    echo "$out" | grep -m1 '^3;'
  else
    echo "ERR $( (grep -m1 -iE 'error|err=|invalid|not supported' "$LOGS/fio.err" || tail -1 "$LOGS/fio.err" || echo "fio exit status") | tr -s ' \t' ' ' | cut -c1-240)"
  fi
}
terse() {  # line field -> value; field: r_iops w_iops w_kbs w_p50 w_p99 r_p99
  case $1 in ERR*) echo n/a; return ;; esac
  echo "$1" | awk -F';' -v f="$2" '
    function pct(from, p,   i) { for (i = from; i < from + 20; i++) if (index($i, p "%=") == 1) return substr($i, length(p) + 3); return "n/a" }
    { if (f == "r_iops") print $8; else if (f == "w_iops") print $49; else if (f == "w_kbs") print $48
      else if (f == "w_p50") print pct(59, "50.000000"); else if (f == "w_p99") print pct(59, "99.000000")
      else if (f == "r_p99") print pct(18, "99.000000") }'
}

# ---------------------------------------------------------------------------
# One run of every workload on one target; appends one line to RESULTS.
run_target() {  # target rep
  local t=$1 rep=$2 line j ideal nonzero stored zratio base alloc bdir bytes app hwm s
  line="run=$rep target=$t"
  add() { line="$line $1=$2"; }
  echo "== run $rep/$REPS: $t" >&2
  if ! setup "$t"; then
    note "run $rep $t: n/a ($NA_REASON)"
    teardown "$t"
    echo "$line status=n/a" >>"$RESULTS"
    return 0
  fi
  hwm_reset "$PID"
  [ "$t" = zfs-fuse ] && base=$(zfs_alloc)

  # a. clone-chain ingest.
  drop_caches
  j=$LOGS/ingest-$t-$rep.json
  local bargs=(--clones "$CLONES" --image-mib "$IMAGE_MIB" --random-ops 0 --discard 0 --keep --json)
  [ "$t" = chainswap ] && bargs+=(--backing "$CS_BK")
  if ! "$CHAINSWAP" bench "$DIR" "${bargs[@]}" >"$j" 2>"$LOGS/ingest-$t-$rep.err"; then
    note "run $rep $t: chainswap bench failed: $(tail -1 "$LOGS/ingest-$t-$rep.err")"
  fi
  json_flat <"$j" >"$j.flat" 2>/dev/null || true
  ideal=$(jget "$j.flat" data.ideal_bytes)
  nonzero=$(jget "$j.flat" space.after_ingest.logical_nonzero_bytes)
  add ingest_mb_s "$(jget "$j.flat" ingest.mb_per_s)"
  add ideal_bytes "$ideal"
  add ideal_dedup "$(jget "$j.flat" data.ideal_dedup_ratio)"
  add bench_ok "$(jget "$j.flat" ok)"
  add catalog_bytes_per_block "$(jget "$j.flat" catalog.bytes_per_block)"
  add destage_lag_ingest_s "$(jget "$j.flat" destage_lag.after_ingest.seconds)"
  # d. (and e.) everything destaged / committed before space is measured.
  case $t in
    chainswap) add destage_poll_ingest_s "$(cs_drain "$(now)")"; stored=$(jget "$j.flat" space.after_ingest.stored_bytes); bdir=$CS_BK ;;
    passthrough_ll) sync; stored=$(allocated "$PT_SRC/bench"); bdir=$PT_SRC ;;
    zfs-fuse)
      zfs_settle || true
      alloc=$(zfs_alloc); stored=$((alloc - base)); bdir=$ZFS_IMG
      zratio=$(zpool list -H -o dedupratio "$POOL" | tr -d x)
      add zfs_dedupratio "$zratio" ;;
    plain) sync; stored=$(allocated "$PLAIN/bench"); bdir=$PLAIN ;;
  esac
  add stored_bytes "$stored"
  add stored_over_ideal "$(div "$stored" "$ideal")"
  add dedup_achieved "$(div "$nonzero" "$stored")"
  # e. the whole backing directory (for zfs-fuse: the pool's file).
  bytes=$(allocated "$bdir"); add backing_bytes "$bytes"; add backing_over_ideal "$(div "$bytes" "$ideal")"
  if [ "$t" = zfs-fuse ]; then app=n/a; else app=$(apparent "$bdir"); fi
  add backing_apparent_bytes "$app"; add backing_apparent_over_ideal "$(div "$app" "$ideal")"

  # b. fio, one file of random data, laid out first (1 MiB sequential writes).
  mkdir -p "$DIR/fio"
  local f=$DIR/fio/f r d tag
  r=$(fio_job layout "$f" write 1M 0 --end_fsync=1)
  s=$(now)
  case $r in ERR*) note "run $rep $t: fio layout: n/a (${r#ERR })" ;; esac
  add fio_layout_mb_s "$(div "$(terse "$r" w_kbs)" 976.5625)"
  # each random-write job starts with the daemon idle
  [ "$t" = chainswap ] && add destage_drain_layout_s "$(cs_drain "$s")"
  for d in 0 1; do
    [ $d = 0 ] && tag=buf || tag=direct
    drop_caches
    r=$(fio_job "randwrite-$tag" "$f" randwrite 4k $d --runtime="$FIO_RUNTIME" --time_based)
    s=$(now)
    case $r in
      ERR*Invalid\ argument*)
        if [ "$t" = passthrough_ll ] && [ $d = 1 ]; then
          note "run $rep $t: fio randwrite $tag: n/a (${r#ERR }) -- passthrough_ll opens the ext4 file with the caller's O_DIRECT and pwrite()s straight from libfuse's request buffer, which is not block-aligned, so ext4 refuses it (EINVAL)"
        else
          note "run $rep $t: fio randwrite $tag: n/a (${r#ERR })"
        fi ;;
      ERR*) note "run $rep $t: fio randwrite $tag: n/a (${r#ERR })" ;;
    esac
    add "randwrite_${tag}_iops" "$(terse "$r" w_iops)"
    add "randwrite_${tag}_p50_us" "$(terse "$r" w_p50)"
    add "randwrite_${tag}_p99_us" "$(terse "$r" w_p99)"
    [ "$t" = chainswap ] && add "destage_drain_${tag}_s" "$(cs_drain "$s")"
    drop_caches
    r=$(fio_job "randread-$tag" "$f" randread 4k $d --runtime="$FIO_RUNTIME" --time_based)
    case $r in ERR*) note "run $rep $t: fio randread $tag: n/a (${r#ERR })" ;; esac
    add "randread_${tag}_iops" "$(terse "$r" r_iops)"
    add "randread_${tag}_p99_us" "$(terse "$r" r_p99)"
  done

  # c. the daemon's peak RSS over this run.
  hwm=$(hwm_kib "$PID"); [ -n "$PID" ] || hwm=n/a
  add peak_rss_kib "$hwm"
  teardown "$t"
  echo "$line" >>"$RESULTS"
  echo "$line" >&2
}

# ---------------------------------------------------------------------------
# Header.
fstype=$(df -T "$WORK" | awk 'NR==2{print $2}')
dev=$(df --output=source "$WORK" | tail -1)
disk=$(lsblk -no PKNAME "$dev" 2>/dev/null | head -1); [ -n "$disk" ] || disk=$(basename "$dev")
diskinfo="$(lsblk -dno SIZE "/dev/$disk" 2>/dev/null | tr -d ' ')"
model=$(lsblk -dno MODEL "/dev/$disk" 2>/dev/null | sed 's/ *$//'); tran=$(lsblk -dno TRAN "/dev/$disk" 2>/dev/null | tr -d ' ')
case $disk in vd*) tran=${tran:-virtio-blk} ;; nvme*) tran=${tran:-nvme} ;; esac
diskinfo="$diskinfo${tran:+ $tran}${model:+, model $model}, rotational=$(cat "/sys/block/$disk/queue/rotational" 2>/dev/null || echo "?")"
HEADER=(
  "chainswap bench-compare, $(date -u '+%Y-%m-%d %H:%M UTC')"
  "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  "backing: $WORK on $fstype ($dev; disk $disk: $diskinfo), the same for all targets"
  "versions: chainswap $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo ?), libfuse $(pkg-config --modversion fuse3), zfs-fuse $(dpkg-query -W -f='${Version}' zfs-fuse 2>/dev/null || echo none), $(fio --version)"
  "command: $CMDLINE  (REPS=$REPS IMAGE_MIB=$IMAGE_MIB CLONES=$CLONES FIO_SIZE=$FIO_SIZE FIO_RUNTIME=$FIO_RUNTIME ZFS_POOL_SIZE=$ZFS_POOL_SIZE CS_OPTS=${CS_OPTS:-(defaults)} WORK=$WORK BUILD=$BUILD)"
  "ingest: chainswap bench TARGET --clones $CLONES --image-mib $IMAGE_MIB --random-ops 0 --discard 0 --keep --json (chainswap: --backing); $(( (CLONES + 1) * IMAGE_MIB )) MiB logical"
  "fio: one $FIO_SIZE file laid out with random data, then 4 KiB randwrite/randread, psync, numjobs=1 iodepth=1, ${FIO_RUNTIME}s time_based, --direct=0 and 1; page cache dropped before each job"
  "chainswapfs -f ${CS_OPTS:+-o $CS_OPTS}; passthrough_ll -f -o source=DIR (multi-threaded, example defaults); zfs-fuse pool: dedup=on recordsize=4k compression=off atime=off on a ${ZFS_POOL_SIZE} file ($( [ -r /etc/zfs/zfsrc ] && grep -vE '^\s*(#|$)' /etc/zfs/zfsrc | sed 's/ *= */=/' | paste -sd' ' || echo 'no /etc/zfs/zfsrc'))"
)
HEADER+=("load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews absolute figures; compare ratios)")
[ -n "$PT_NA" ] && HEADER+=("passthrough_ll: n/a ($PT_NA)")
[ -n "$ZFS_NA" ] && HEADER+=("zfs-fuse: n/a ($ZFS_NA)")
[ "$ZFS_STARTED" = 1 ] && HEADER+=("zfs-fuse daemon started by this script (pid $ZFS_PID), stopped at the end")
for h in "${HEADER[@]}"; do echo "# $h"; done | tee -a "$RESULTS"

# ---------------------------------------------------------------------------
# 5. The runs: targets alternate, the order rotating every repetition.
# From here on failures are recorded as n/a, never fatal.
set +e
T0=$(now)
for rep in $(seq "$REPS"); do
  for i in 0 1 2 3; do
    run_target "${TARGETS[$(( (i + rep - 1) % 4 ))]}" "$rep"
  done
done
echo "# total time $(elapsed "$T0") s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

# ---------------------------------------------------------------------------
# 6. The table of medians.
med() {  # target key -> median of the numeric values, or n/a
  grep -E "^run=[0-9]+ target=$1 " "$RESULTS" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2- |
    grep -E '^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$' | sort -g |
    awk '{v[NR] = $1} END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { if isnum "$2"; then awk -v f="$1" -v v="$2" -v s="${3:-1}" 'BEGIN{printf f, v / s}'; else echo "$2"; fi; }
ratio() { local r; r=$(div "$1" "$2"); if isnum "$r"; then fmt "%.2fx" "$r"; else echo "-"; fi; }

ROWS=(  # key | label | printf format | divisor
  "ingest_mb_s|ingest MB/s (1 MiB writes, fsync per file)|%.1f|1"
  "stored_bytes|stored after ingest, MiB|%.1f|1048576"
  "stored_over_ideal|stored / exact ideal|%.3f|1"
  "dedup_achieved|dedup achieved (non-zero / stored)|%.2f|1"
  "ideal_dedup|dedup ideal (bench)|%.2f|1|-"
  "zfs_dedupratio|zpool dedupratio (zfs's own view)|%.2f|1|-"
  "catalog_bytes_per_block|catalog bytes / non-zero block|%.1f|1"
  "destage_lag_ingest_s|destage lag after ingest, s (bench)|%.3f|1"
  "backing_bytes|backing dir on disk (du -s -B1), MiB|%.1f|1048576"
  "backing_over_ideal|backing on disk / exact ideal|%.3f|1"
  "backing_apparent_over_ideal|backing apparent (du -sb) / ideal|%.3f|1"
  "fio_layout_mb_s|fio layout, 1 MiB seq write MB/s|%.1f|1"
  "destage_drain_layout_s|destage drain after layout, s|%.3f|1"
  "randwrite_buf_iops|4K randwrite IOPS, buffered|%.0f|1"
  "randwrite_buf_p50_us|  write clat p50 us, buffered|%.0f|1"
  "randwrite_buf_p99_us|  write clat p99 us, buffered|%.0f|1"
  "randread_buf_iops|4K randread IOPS, buffered|%.0f|1"
  "randwrite_direct_iops|4K randwrite IOPS, O_DIRECT|%.0f|1"
  "randwrite_direct_p50_us|  write clat p50 us, O_DIRECT|%.0f|1"
  "randwrite_direct_p99_us|  write clat p99 us, O_DIRECT|%.0f|1"
  "randread_direct_iops|4K randread IOPS, O_DIRECT|%.0f|1"
  "destage_drain_buf_s|destage drain after randwrite buf, s|%.3f|1"
  "destage_drain_direct_s|destage drain after randwrite direct, s|%.3f|1"
  "peak_rss_kib|daemon peak RSS (VmHWM), MiB|%.1f|1024"
)
{
  echo
  echo "medians of $REPS run(s); ratio = chainswap / other (above 1 is better for MB/s and IOPS, worse for space, latency, RSS)"
  printf '%-40s %12s %15s %12s %12s %10s %10s\n' figure chainswap passthrough_ll zfs-fuse plain "cs/ptll" "cs/zfs"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r key label f div_ noratio <<<"$row"
    cs=$(med chainswap "$key"); pt=$(med passthrough_ll "$key"); zf=$(med zfs-fuse "$key"); pl=$(med plain "$key")
    [ -n "$ZFS_NA" ] && zf="n/a"
    if [ -n "$noratio" ]; then r1=- r2=-; else r1=$(ratio "$cs" "$pt") r2=$(ratio "$cs" "$zf"); fi
    printf '%-40s %12s %15s %12s %12s %10s %10s\n' "$label" "$(fmt "$f" "$cs" "$div_")" "$(fmt "$f" "$pt" "$div_")" \
      "$(fmt "$f" "$zf" "$div_")" "$(fmt "$f" "$pl" "$div_")" "$r1" "$r2"
  done
  echo "stored: chainswap store.dat allocation (bench); zfs-fuse zpool alloc delta (3 significant digits, with DDT and metadata);"
  echo "  passthrough_ll and plain du -s -B1 of the files. backing on disk: chainswap the whole backing directory (store,"
  echo "  catalog, journal); passthrough_ll its source directory; zfs-fuse its pool file (a high-water mark: a file vdev never"
  echo "  gives freed blocks back); plain the directory. Buffered writes on plain only reach the page cache."
  [ -n "$ZFS_NA" ] && echo "zfs-fuse column: n/a ($ZFS_NA)"
  [ -n "$PT_NA" ] && echo "passthrough_ll column: n/a ($PT_NA)"
  # the runs' notes, once each, with how many runs they concern
  grep '^# run ' "$RESULTS" | sed -E 's/^# run [0-9]+ /# /; s/offset=[0-9]+/offset=.../' | sort | uniq -c |
    awk '{n = $1; sub(/^ *[0-9]+ /, ""); print $0 " [" n " of '"$REPS"' run(s)]"}' || true
  bad=$(grep -E '^run=' "$RESULTS" | grep -v 'bench_ok=true' | grep -v 'status=n/a' | awk '{print $1, $2}' | tr '\n' ' ')
  [ -n "$bad" ] && echo "WARNING: chainswap bench did not report ok for: $bad"
  echo "raw per-run lines: $RESULTS"
} | tee -a "$RESULTS"
TABLE_DONE=1
