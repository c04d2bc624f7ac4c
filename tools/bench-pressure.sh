#!/usr/bin/env bash
# Write latency under memory pressure (docs/OPERATIONS.md "Memory pressure:
# why the daemon is protected"): 4 KiB O_DIRECT random writes (fio, psync,
# QD1) through chainswap and through libfuse's passthrough_ll, each daemon
# started inside its own memory cgroup, without and with memory pressure:
# without, the cgroup has no limit; with, a limit of LIMIT_MIB and a hog
# process in the same cgroup that touches
# anonymous memory (fast up to 64 MiB below the limit, then 1 MiB every
# 20 ms), is taken by the OOM killer, and is started again at once, for as
# long as fio runs. Prints per run and as medians: write IOPS, completion
# latency p50 / p99 / p99.9 / max, the daemon's major page faults during the
# fio run, how many hogs the OOM killer took, and whether the daemon
# survived. Targets and pressure alternate, the order rotating every
# repetition.
#
#   sudo tools/bench-pressure.sh [BUILD_DIR]
#   env: REPS=3 RUNTIME=30 FILE_MIB=256 LIMIT_MIB=1024 CS_OPTS=journal_limit=64M
#        WORK=/var/tmp/chainswap-pressure.$$ (on the disk under test)
#
# Setup shared by both targets:
#   - cgroup v1 with the memory controller (memory.limit_in_bytes) or cgroup
#     v2 with memory in cgroup.controllers (memory.max), whichever has it; one
#     child cgroup per run under this shell's own memory cgroup (or the
#     hierarchy's root), removed afterwards; no swap inside it
#     (memory.memsw.limit_in_bytes / memory.swap.max where present).
#   - The daemon's binary is dropped from the page cache before it starts
#     (dd iflag=nocache count=0), so that its code is read in, and charged,
#     inside the cgroup: a cgroup's limit reclaims only pages charged to it.
#     Shared libraries stay charged wherever other processes read them first.
#   - chainswapfs runs with its defaults (oom_score_adj -1000 if it may, mlock)
#     plus CS_OPTS (journal_limit=64M bounds its locked heap, as the mounted
#     pressure test does); passthrough_ll with the example's defaults.
#   - passthrough_ll is compiled from /usr/share/doc/libfuse3-dev/examples/
#     passthrough_ll.c into WORK with one change: it opens its backing files
#     without the caller's O_DIRECT. Unchanged, it passes O_DIRECT to ext4 and
#     pwrite()s from libfuse's request buffer, which is not block-aligned, so
#     every O_DIRECT write fails with EINVAL (tools/bench-compare.sh records
#     that as n/a). With the change both daemons serve an O_DIRECT write the
#     same way: the kernel sends it to the daemon uncached, the daemon writes
#     it to its backing file through the page cache (chainswap: its journal).
#   - The swap file (FILE_MIB, random data) is laid out with 1 MiB O_DIRECT
#     writes before each timed run, without pressure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/bench-lib.sh
. tools/bench-lib.sh
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-30}
FILE_MIB=${FILE_MIB:-256}
LIMIT_MIB=${LIMIT_MIB:-1024}
CS_OPTS=${CS_OPTS-journal_limit=64M}
WORK=${WORK:-/var/tmp/chainswap-pressure.$$}
BUILD=${1:-build}
CMDLINE="$0 $*"

die() { echo "bench-pressure: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (FUSE mounts, cgroups)"
for c in fio gcc pkg-config fusermount3 mountpoint dd awk; do
  command -v "$c" >/dev/null || die "$c missing (./scripts/install-deps.sh --bench)"
done
CHAINSWAP=$BUILD/tools/chainswap
CHAINSWAPFS=$BUILD/fs/chainswapfs
{ [ -x "$CHAINSWAPFS" ] && [ -x "$CHAINSWAP" ]; } || die "build first: BUILD_DIR=$BUILD ./scripts/build.sh"
CHAINSWAP=$(readlink -f "$CHAINSWAP") CHAINSWAPFS=$(readlink -f "$CHAINSWAPFS")
[ -e "$WORK" ] && die "$WORK exists"
mkdir -p "$WORK/logs"
RESULTS=$WORK/results.txt
MNT=$WORK/mnt
LIMIT=$((LIMIT_MIB << 20))

# ---------------------------------------------------------------- cgroups
# Sets CG_V (1 or 2), CG_PARENTS (where a child may get the memory
# controller), CG_ORIGIN (this shell's memory cgroup) and the file names.
v1_mnt=$(awk '{ split($0, h, " - "); split(h[1], l, " "); split(h[2], r, " ")
                if (r[1] == "cgroup" && ("," r[3] ",") ~ /,memory,/) { print l[5]; exit } }' /proc/self/mountinfo)
v1_path=$(awk -F: '("," $2 ",") ~ /,memory,/ { print $3; exit }' /proc/self/cgroup)
v2_mnt=$(awk '{ split($0, h, " - "); split(h[1], l, " "); split(h[2], r, " ")
                if (r[1] == "cgroup2") { print l[5]; exit } }' /proc/self/mountinfo)
v2_path=$(awk -F: '$1 == "0" && $2 == "" { print $3; exit }' /proc/self/cgroup)
if [ -n "$v1_mnt" ] && [ -n "$v1_path" ]; then
  CG_V=1 CG_ORIGIN=${v1_mnt}${v1_path%/} CG_PARENTS="${v1_mnt}${v1_path%/} $v1_mnt"
  CG_LIMIT=memory.limit_in_bytes CG_USAGE=memory.usage_in_bytes CG_PEAK=memory.max_usage_in_bytes
  CG_OOM=memory.oom_control CG_NOSWAP=memory.memsw.limit_in_bytes
elif [ -n "$v2_mnt" ] && grep -qw memory "$v2_mnt/cgroup.controllers" 2>/dev/null; then
  CG_V=2 CG_ORIGIN=${v2_mnt}${v2_path%/} CG_PARENTS="${v2_mnt}${v2_path%/} $v2_mnt"
  CG_LIMIT=memory.max CG_USAGE=memory.current CG_PEAK=memory.peak CG_OOM=memory.events CG_NOSWAP=memory.swap.max
else
  die "no memory cgroup: needs cgroup v1 with the memory controller or cgroup v2 with memory in cgroup.controllers"
fi
cg_make() {  # name -> prints the new cgroup's directory
  local p
  for p in $CG_PARENTS; do
    if mkdir "$p/$1" 2>/dev/null; then
      [ -e "$p/$1/$CG_LIMIT" ] && { echo "$p/$1"; return 0; }
      rmdir "$p/$1"
    fi
  done
  return 1
}
cg_limit() {  # dir bytes
  echo "$2" >"$1/$CG_LIMIT"
  if [ -e "$1/$CG_NOSWAP" ]; then
    if [ "$CG_V" = 1 ]; then echo "$2" >"$1/$CG_NOSWAP"; else echo 0 >"$1/$CG_NOSWAP"; fi
  fi
}
cg_oom_kills() { awk '$1 == "oom_kill" { print $2 }' "$1/$CG_OOM"; }
cg_remove() {  # dir: moves what is left back to our cgroup, removes it
  local p i
  [ -d "$1" ] || return 0
  for i in $(seq 100); do
    while read -r p; do echo "$p" >"$CG_ORIGIN/cgroup.procs" 2>/dev/null || true; done <"$1/cgroup.procs"
    rmdir "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-pressure: could not remove cgroup $1" >&2
}
in_cgroup() {  # dir cmd args... : runs cmd (exec) inside the cgroup, in the background; pid in $!
  local cg=$1; shift
  ( echo "$BASHPID" >"$cg/cgroup.procs" && exec "$@" ) &
}

# ---------------------------------------------------------------- binaries
PT_BIN=$WORK/passthrough_ll
bl_build_passthrough_ll "$PT_BIN" "$WORK/logs/passthrough_ll.build" no-odirect ||
  die "passthrough_ll did not build: $BL_ERR (see $WORK/logs)"
HOG=$WORK/hog
cat >"$WORK/hog.c" <<'EOF'
/* hog LIMIT USAGE_FILE STOP_FILE: touches anonymous memory 1 MiB at a time,
   fast until the cgroup's usage is within 64 MiB of LIMIT, then 1 MiB every
   20 ms; stops when STOP_FILE exists, after LIMIT + 512 MiB or after 60 s. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static long long usage(const char *path) {
  char b[32]; int fd = open(path, O_RDONLY); if (fd < 0) return -1;
  ssize_t n = read(fd, b, sizeof b - 1); close(fd); if (n <= 0) return -1;
  b[n] = 0; return atoll(b);
}
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  const long long limit = atoll(argv[1]), mib = 1 << 20;
  struct timespec t0, t, pause = {0, 20 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int slow = 0;
  for (long long i = 0; i < limit / mib + 512; i++) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > 60 || access(argv[3], F_OK) == 0) return 0;
    if (!slow) { long long u = usage(argv[2]); slow = u >= 0 && u + 64 * mib >= limit; }
    if (slow) nanosleep(&pause, 0);
    volatile char *p = mmap(0, mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 3;
    for (long long o = 0; o < mib; o += 4096) p[o] = (char)(i | 1);
  }
  return 0;
}
EOF
gcc -O2 -o "$HOG" "$WORK/hog.c" || die "hog.c did not build"

# ---------------------------------------------------------------- runs
PID='' CG='' HOGLOOP=''
cleanup() {
  set +e
  touch "$WORK/stop"
  [ -n "$HOGLOOP" ] && wait "$HOGLOOP" 2>/dev/null
  mountpoint -q "$MNT" && fusermount3 -u "$MNT"
  [ -n "$PID" ] && wait "$PID" 2>/dev/null
  [ -n "$CG" ] && cg_remove "$CG"
  find "$WORK" -mindepth 1 -maxdepth 1 ! -name results.txt ! -name logs -exec rm -rf --one-file-system {} +
}
trap cleanup EXIT

mount_target() {  # target: starts the daemon inside $CG
  mkdir -p "$MNT"
  case $1 in
    chainswap)
      rm -rf "$WORK/backing"
      "$CHAINSWAP" format "$WORK/backing" >/dev/null
      dd if="$CHAINSWAPFS" iflag=nocache count=0 status=none
      in_cgroup "$CG" "$CHAINSWAPFS" "$WORK/backing" "$MNT" -f ${CS_OPTS:+-o "$CS_OPTS"} \
        >>"$WORK/logs/chainswapfs.log" 2>&1
      PID=$! ;;
    passthrough_ll)
      rm -rf "$WORK/source"; mkdir -p "$WORK/source"
      dd if="$PT_BIN" iflag=nocache count=0 status=none
      in_cgroup "$CG" "$PT_BIN" -f -o source="$WORK/source" "$MNT" >>"$WORK/logs/passthrough_ll.log" 2>&1
      PID=$! ;;
  esac
  for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  die "$1 did not mount"
}
unmount_target() {
  fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"
  wait "$PID" || true
  PID=''
  rm -rf "$WORK/backing" "$WORK/source"
}
majflt() { awk '{ sub(/.*\) /, ""); print $10 }' "/proc/$1/stat" 2>/dev/null || echo n/a; }
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ sub(/.*\) /, ""); exit !($1 == "Z" || $1 == "X") }' "/proc/$1/stat"; }

hog_loop() {  # re-spawns the hog in $CG until $WORK/stop exists; counts them
  local spawned=0 killed=0 st
  while [ ! -e "$WORK/stop" ]; do
    in_cgroup "$CG" "$HOG" "$LIMIT" "$CG/$CG_USAGE" "$WORK/stop"
    st=0; wait $! || st=$?
    spawned=$((spawned + 1))
    [ "$st" = 137 ] && killed=$((killed + 1))
  done
  echo "$spawned $killed" >"$WORK/hogs"
}

run() {  # target pressure(on|off) rep
  local t=$1 p=$2 rep=$3 out m0 m1 o0 o1 hogs=0/0 ok=yes
  echo "== run $rep/$REPS: $t, pressure $p" >&2
  CG=$(cg_make "chainswap-bench-$$-$rep-$t-$p") || die "cannot make a memory cgroup under $CG_PARENTS"
  [ "$p" = on ] && cg_limit "$CG" "$LIMIT"
  mount_target "$t"
  mkdir "$MNT/guest"
  fio --name=layout --filename="$MNT/guest/vm.swap" --size="${FILE_MIB}M" --rw=write --bs=1M --direct=1 \
    --ioengine=psync --refill_buffers --end_fsync=1 --output-format=terse >/dev/null 2>>"$WORK/logs/fio.err"
  rm -f "$WORK/stop" "$WORK/hogs"
  if [ "$p" = on ]; then
    hog_loop 2>>"$WORK/logs/hog.log" & HOGLOOP=$!  # bash reports each killed hog there
    sleep 2  # the first hog reaches the limit
  fi
  m0=$(majflt "$PID"); o0=$(cg_oom_kills "$CG")
  # terse v3 write block: 49 IOPS, 56 clat max (usec), 59-78 clat percentiles
  out=$(fio --name=w --filename="$MNT/guest/vm.swap" --size="${FILE_MIB}M" --rw=randwrite --bs=4k --direct=1 \
          --ioengine=psync --iodepth=1 --numjobs=1 --time_based --runtime="$RUNTIME" --randrepeat=1 \
          --refill_buffers --fallocate=none --output-format=terse --terse-version=3 2>>"$WORK/logs/fio.err" |
        grep -m1 '^3;') || out=''
  m1=$(majflt "$PID"); o1=$(cg_oom_kills "$CG")
  touch "$WORK/stop"
  if [ -n "$HOGLOOP" ]; then wait "$HOGLOOP" || true; HOGLOOP=''; read -r s k <"$WORK/hogs"; hogs=$k/$s; fi
  alive "$PID" && mountpoint -q "$MNT" && stat "$MNT/guest" >/dev/null 2>&1 || ok=no
  local peak; peak=$(( $(cat "$CG/$CG_PEAK" 2>/dev/null || echo 0) >> 20 ))
  echo "${out:-ERR}" | awk -F';' -v t="$t" -v p="$p" -v r="$rep" -v mf=$((m1 - m0)) -v ok="$ok" \
      -v oom=$((o1 - o0)) -v hogs="$hogs" -v peak="$peak" '{
    p50 = p99 = p999 = "n/a"
    for (i = 59; i <= 78; i++) {
      if (index($i, "50.000000%=") == 1) p50 = substr($i, 12)
      if (index($i, "99.000000%=") == 1) p99 = substr($i, 12)
      if (index($i, "99.900000%=") == 1) p999 = substr($i, 12)
    }
    if ($1 != "3") { iops = mx = "n/a" } else { iops = $49; mx = $56 }
    printf "run=%s target=%s pressure=%s write_iops=%s p50_us=%s p99_us=%s p999_us=%s max_us=%s majflt=%s hogs_oom_killed=%s cgroup_oom_kills=%s peak_mib=%s daemon_alive=%s\n",
           r, t, p, iops, p50, p99, p999, mx, mf, hogs, oom, peak, ok }' | tee -a "$RESULTS"
  if [ "$ok" = yes ]; then unmount_target; else
    fusermount3 -uz "$MNT" || true; wait "$PID" || true; PID=''; rm -rf "$WORK/backing" "$WORK/source"
  fi
  cg_remove "$CG"; CG=''
}

{
  echo "# chainswap bench-pressure, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo ?)"
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores," \
       "$(free -g | awk '/Mem:/{print $2}') GiB RAM, swap $(free -m | awk '/Swap:/{print $2}') MiB, kernel $(uname -r)"
  echo "# backing: $WORK on $(df -T "$WORK" | awk 'NR==2{print $2}') ($(df --output=source "$WORK" | tail -1)); $(fio --version)"
  echo "# command: $CMDLINE (REPS=$REPS RUNTIME=$RUNTIME FILE_MIB=$FILE_MIB LIMIT_MIB=$LIMIT_MIB CS_OPTS=${CS_OPTS:-(defaults)} WORK=$WORK)"
  echo "# memory cgroup v$CG_V under $CG_PARENTS (first that works), one per run; pressure on: limit $LIMIT_MIB MiB, no swap, the hog re-spawned; off: no limit, no hog; fio outside it"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RESULTS"
CONFIGS=("chainswap off" "passthrough_ll off" "chainswap on" "passthrough_ll on")
for rep in $(seq "$REPS"); do
  for i in 0 1 2 3; do
    # shellcheck disable=SC2086
    run ${CONFIGS[$(( (i + rep - 1) % 4 ))]} "$rep"
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

awk '
  $1 ~ /^run=/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    c = v["target"] " " v["pressure"]; k = c SUBSEP (++n[c])
    iops[k] = v["write_iops"]; p99[k] = v["p99_us"]; p999[k] = v["p999_us"]; mx[k] = v["max_us"]
    mf[k] = v["majflt"]; split(v["hogs_oom_killed"], h, "/"); hk[k] = h[1]
    alive[c] += v["daemon_alive"] == "yes"
  }
  function med(a, c,   i, m, cnt, x, y) {
    cnt = 0; for (i = 1; i <= n[c]; i++) if (a[c SUBSEP i] ~ /^[0-9.]+$/) x[++cnt] = a[c SUBSEP i] + 0
    if (cnt == 0) return "n/a"
    for (i = 1; i <= cnt; i++) for (m = i + 1; m <= cnt; m++) if (x[m] < x[i]) { y = x[i]; x[i] = x[m]; x[m] = y }
    return cnt % 2 ? x[(cnt + 1) / 2] : (x[cnt / 2] + x[cnt / 2 + 1]) / 2
  }
  function r(a, b) { return (a == "n/a" || b == "n/a" || b == 0) ? "-" : sprintf("%.2fx", a / b) }
  END {
    printf "\n%-26s %10s %9s %9s %10s %8s %11s %8s\n", "median of runs", "IOPS", "p99 us", "p99.9 us", "max us",
           "majflt", "hogs killed", "alive"
    split("chainswap off|passthrough_ll off|chainswap on|passthrough_ll on", cs, "|")
    for (j = 1; j <= 4; j++) { c = cs[j]
      printf "%-26s %10s %9s %9s %10s %8s %11s %8s\n", c, med(iops, c), med(p99, c), med(p999, c), med(mx, c),
             med(mf, c), med(hk, c), alive[c] "/" n[c] }
    printf "%-26s %10s %9s %9s %10s\n", "chainswap/ptll, no pressure", r(med(iops, cs[1]), med(iops, cs[2])),
           r(med(p99, cs[1]), med(p99, cs[2])), r(med(p999, cs[1]), med(p999, cs[2])), r(med(mx, cs[1]), med(mx, cs[2]))
    printf "%-26s %10s %9s %9s %10s\n", "chainswap/ptll, pressure", r(med(iops, cs[3]), med(iops, cs[4])),
           r(med(p99, cs[3]), med(p99, cs[4])), r(med(p999, cs[3]), med(p999, cs[4])), r(med(mx, cs[3]), med(mx, cs[4]))
    printf "%-26s %10s %9s %9s %10s\n", "chainswap on/off", r(med(iops, cs[3]), med(iops, cs[1])),
           r(med(p99, cs[3]), med(p99, cs[1])), r(med(p999, cs[3]), med(p999, cs[1])), r(med(mx, cs[3]), med(mx, cs[1]))
    printf "%-26s %10s %9s %9s %10s\n", "passthrough_ll on/off", r(med(iops, cs[4]), med(iops, cs[2])),
           r(med(p99, cs[4]), med(p99, cs[2])), r(med(p999, cs[4]), med(p999, cs[2])), r(med(mx, cs[4]), med(mx, cs[2]))
  }' "$RESULTS" | tee -a "$RESULTS"
