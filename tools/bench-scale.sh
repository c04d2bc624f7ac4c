#!/usr/bin/env bash
# Host scale (issue 13, "Targets"): chainswap side by side with libfuse's
# passthrough_ll over the same disk and over a tmpfs (the FUSE ceiling), in
# one run, the targets interleaved within each repetition (the order rotating
# every repetition), REPS repetitions, medians and ratios printed as markdown
# tables ready for docs/BENCHMARKS.md.
#
#   a. Guests at once, for each J in JOBS: fio --numjobs=J, one file per job
#      in a chain directory, 4 KiB, --iodepth=1 --ioengine=psync --direct=1,
#      random data (--refill_buffers). Each file is laid out first by a
#      separate fio job (1 MiB sequential writes, end_fsync), then the target
#      settles (chainswap: journal empty; others: sync) and the page cache is
#      dropped, so no layout byte is in flight during the timed jobs. Timed:
#      randwrite, settle (chainswap's drain time is reported), drop caches,
#      randread; RUNTIME seconds each, --time_based, --group_reporting.
#      Reported: IOPS, completion latency p99 and max (fio's JSON).
#   b. Clone-chain ingest: `chainswap bench` generates a parent image and
#      CLONES clones (CHAIN_MIB logical in all; its data: real library and
#      binary pages, records, repeats, zeros) into a plain directory on a
#      tmpfs, once per run; each target then gets them with `dd bs=1M
#      conv=fsync`, one file after the other, into a chain directory, and
#      settles (chainswap: the journal empty and nothing pending, by the live
#      xattrs and then `chainswap stats --json`; then sync; others: sync).
#      Reported: bytes written to the disk (/sys/block/DEV/stat field 7 x 512,
#      DEV the disk under WORK) from the first dd to the end of the settle, the
#      same including the unmount (chainswap checkpoints its catalog there),
#      their ratio to the logical bytes and to the chain's distinct non-zero
#      bytes (the bench's exact figure, checked here with python), ingest MB/s
#      (10^6 bytes/s, ingest plus settle), and the disk's background rate
#      measured for BG_SECONDS just before each ingest (other work on the
#      machine writes to the same disk). Targets: chainswap, passthrough_ll
#      over the disk, a plain directory, passthrough_ll over tmpfs (MB/s only).
#   c. Every daemon's peak RssAnon and VmHWM (/proc/PID/status sampled every
#      100 ms for the whole mount), shown in a and b and summed up for
#      chainswap.
#
# passthrough_ll is libfuse's example built by tools/bench-lib.sh with one
# change: it opens its backing files without the caller's O_DIRECT (unchanged,
# every O_DIRECT write through it fails with EINVAL; see BENCHMARKS section 5).
# The chainswap backing directory, passthrough_ll's disk source and the plain
# directory are all under WORK, on one disk.
#
#   sudo tools/bench-scale.sh [BUILD_DIR]          (default build)
#   env: REPS=3 JOBS="1 4 16" RUNTIME=20 SIZE_MIB=128 SIZE16_MIB=64 (per job, for J >= 16)
#        CHAIN_MIB=1280 CLONES=4 BG_SECONDS=5 PARTS="a b" CS_OPTS= (chainswapfs -o)
#        WORK=/var/tmp/chainswap-scale.$$ (on the disk under test) SETTLE_TIMEOUT=600
# Markdown on stdout (also WORK/report.md); progress on stderr; per-run raw
# lines in WORK/results.txt, logs in WORK/logs; everything else is removed.
set -euo pipefail
CMDLINE="$0${*:+ $*}"
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=tools/bench-lib.sh
. tools/bench-lib.sh

REPS=${REPS:-3}
JOBS=${JOBS:-1 4 16}
RUNTIME=${RUNTIME:-20}
SIZE_MIB=${SIZE_MIB:-128}
SIZE16_MIB=${SIZE16_MIB:-$((SIZE_MIB < 64 ? SIZE_MIB : 64))}
CHAIN_MIB=${CHAIN_MIB:-1280}
CLONES=${CLONES:-4}
BG_SECONDS=${BG_SECONDS:-5}
PARTS=${PARTS:-a b}
CS_OPTS=${CS_OPTS:-}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-600}
WORK=${WORK:-/var/tmp/chainswap-scale.$$}
BUILD=${1:-build}

die() { echo "bench-scale: $*" >&2; exit 1; }
say() { echo "bench-scale: $*" >&2; }
note() { echo "# note: $*" >>"$RESULTS"; say "$*"; }
isint() { [[ $1 =~ ^[0-9]+$ ]]; }

[ "$(id -u)" -eq 0 ] || die "needs root (FUSE mounts, tmpfs, drop_caches): sudo $0"
for v in REPS RUNTIME SIZE_MIB SIZE16_MIB CHAIN_MIB CLONES BG_SECONDS SETTLE_TIMEOUT; do
  isint "${!v}" || die "$v must be a whole number"
done
[ "$REPS" -ge 1 ] || die "REPS must be at least 1"
for j in $JOBS; do { isint "$j" && [ "$j" -ge 1 ]; } || die "JOBS: $j is not a positive number"; done
for p in $PARTS; do case $p in a | b) ;; *) die "PARTS: $p (a and/or b)" ;; esac; done
for c in fio gcc pkg-config fusermount3 mountpoint getfattr mount umount lsblk dd stat awk /usr/bin/python3; do
  command -v "$c" >/dev/null || die "$c missing (./scripts/install-deps.sh --bench)"
done
[ -c /dev/fuse ] || die "/dev/fuse missing"
CHAINSWAP=$BUILD/tools/chainswap
CHAINSWAPFS=$BUILD/fs/chainswapfs
{ [ -x "$CHAINSWAPFS" ] && [ -x "$CHAINSWAP" ]; } || die "build first (cmake --build $BUILD), or give BUILD_DIR"
CHAINSWAP=$(readlink -f "$CHAINSWAP") CHAINSWAPFS=$(readlink -f "$CHAINSWAPFS")
IMAGE_MIB=$((CHAIN_MIB / (CLONES + 1)))
[ "$IMAGE_MIB" -ge 1 ] || die "CHAIN_MIB=$CHAIN_MIB is too small for $CLONES clones"
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
size_for() { if [ "$1" -ge 16 ]; then echo "$SIZE16_MIB"; else echo "$SIZE_MIB"; fi; }

[ -e "$WORK" ] && die "$WORK exists"
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.txt LOGS=$WORK/logs REPORT=$WORK/report.md
: >"$RESULTS"
MNT=$WORK/mnt TMPFS=$WORK/tmpfs PLAIN=$WORK/plain
CS_BK=$WORK/cs-backing PT_SRC=$WORK/pt-source PT_TMPFS_SRC=$TMPFS/pt-source IMAGES=$TMPFS/images
CUR_PID='' TMPFS_UP=0

cleanup() {
  set +e
  trap - EXIT INT TERM
  bl_rss_sampler_stop 2>/dev/null
  bl_unmount "$MNT" "$CUR_PID" 300
  [ "$TMPFS_UP" = 1 ] && bl_umount_tmpfs "$TMPFS"
  if mountpoint -q "$MNT" 2>/dev/null || mountpoint -q "$TMPFS" 2>/dev/null; then
    echo "bench-scale: a mount under $WORK is still up; left in place" >&2
  else
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name results.txt ! -name logs ! -name report.md \
      -exec rm -rf --one-file-system {} + 2>/dev/null
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the disk and the tmpfs
DEV=$(bl_block_dev "$WORK") || die "WORK=$WORK must be on a block device (its bytes written are measured)"
maxj=0
for j in $JOBS; do [ $((j * $(size_for "$j"))) -gt "$maxj" ] && maxj=$((j * $(size_for "$j"))); done
has_part a || maxj=0
need=$((maxj + 256))
has_part b && need=$((need + 2 * CHAIN_MIB))
avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
[ $((need + 2048)) -le "$avail" ] || die "needs a ${need} MiB tmpfs plus 2 GiB, only $avail MiB of memory available"
bl_mount_tmpfs "$TMPFS" "${need}m" || die "cannot mount a tmpfs on $TMPFS"
TMPFS_UP=1
mkdir -p "$PLAIN" "$CS_BK" "$PT_SRC"
for d in "$PLAIN" "$CS_BK" "$PT_SRC"; do
  [ "$(bl_block_dev "$d")" = "$DEV" ] || die "$d is not on /dev/$DEV"
done
rmdir "$CS_BK" "$PT_SRC" "$PLAIN"

PT_BIN=$WORK/passthrough_ll
bl_build_passthrough_ll "$PT_BIN" "$LOGS/passthrough_ll.build" no-odirect ||
  die "passthrough_ll did not build: $BL_ERR (see $LOGS)"

# ---------------------------------------------------------------- targets
# setup TARGET: mounts it (or makes the plain directory), sets DIR and
# CUR_PID, starts the memory sampler on the daemon.
setup() {
  DIR='' CUR_PID=''
  case $1 in
    chainswap)
      rm -rf "$CS_BK"
      bl_mount_chainswap "$CS_BK" "$MNT" "$LOGS/chainswapfs.log" "$CS_OPTS" || die "$BL_ERR"
      DIR=$MNT CUR_PID=$BL_PID ;;
    ptll-disk)
      rm -rf "$PT_SRC"
      bl_mount_passthrough_ll "$PT_BIN" "$PT_SRC" "$MNT" "$LOGS/passthrough_ll.log" || die "$BL_ERR"
      DIR=$MNT CUR_PID=$BL_PID ;;
    ptll-tmpfs)
      rm -rf "$PT_TMPFS_SRC"
      bl_mount_passthrough_ll "$PT_BIN" "$PT_TMPFS_SRC" "$MNT" "$LOGS/passthrough_ll.log" || die "$BL_ERR"
      DIR=$MNT CUR_PID=$BL_PID ;;
    plain)
      rm -rf "$PLAIN"; mkdir -p "$PLAIN"
      DIR=$PLAIN ;;
  esac
  if [ -n "$CUR_PID" ]; then bl_rss_sampler_start "$CUR_PID" "$WORK/rss"; fi
}
# stop: the sampler, then the unmount (chainswap destages what is left);
# sets RSS to "peak_rssanon_kib peak_vmhwm_kib samples".
stop() {
  RSS='n/a n/a 0'
  if [ -n "$CUR_PID" ]; then
    bl_rss_sampler_stop
    RSS=$BL_RSS
    bl_unmount "$MNT" "$CUR_PID" "$SETTLE_TIMEOUT"
    CUR_PID=''
  fi
}
clean() { rm -rf "$CS_BK" "$PT_SRC" "$PT_TMPFS_SRC" "$PLAIN"; }
# settle TARGET: chainswap: until the journal is empty and nothing is pending,
# then sync; others: sync. Prints the seconds chainswap waited (n/a for others).
settle() {
  local s=n/a
  if [ "$1" = chainswap ]; then
    s=$(bl_cs_settle "$MNT" "$CS_BK" "$SETTLE_TIMEOUT") || { note "chainswap did not settle in ${SETTLE_TIMEOUT} s"; s=n/a; }
  fi
  sync
  echo "$s"
}

# ---------------------------------------------------------------- a. guests at once
fio_guests() {  # dir jobs size_mib out.json args... ; returns fio's status
  local dir=$1 jobs=$2 size=$3 out=$4; shift 4
  # shellcheck disable=SC2016  # $jobnum is fio's, not the shell's
  fio --name=guest --directory="$dir" --filename_format='vm.$jobnum.swap' --numjobs="$jobs" --size="${size}M" \
    --ioengine=psync --iodepth=1 --direct=1 --fallocate=none --refill_buffers --randrepeat=1 \
    --group_reporting --output-format=json --output="$out" "$@" >>"$LOGS/fio.out" 2>>"$LOGS/fio.err"
}

run_a() {  # target jobs rep
  local t=$1 j=$2 rep=$3 size w r drain lsettle sz f ok=1 base d0 d1
  size=$(size_for "$j")
  base=$LOGS/a-r$rep-j$j-$t
  say "run $rep/$REPS a: $t, $j job(s) of $size MiB"
  setup "$t"
  mkdir "$DIR/guests"
  fio_guests "$DIR/guests" "$j" "$size" "$base-layout.json" --rw=write --bs=1M --end_fsync=1 ||
    { note "run $rep a $t J=$j: fio layout failed (see $LOGS/fio.err)"; ok=0; }
  for f in $(seq 0 $((j - 1))); do
    sz=$(stat -c %s "$DIR/guests/vm.$f.swap" 2>/dev/null || echo 0)
    [ "$sz" = $((size << 20)) ] || { note "run $rep a $t J=$j: vm.$f.swap is $sz bytes after the layout"; ok=0; }
  done
  lsettle=$(settle "$t")
  bl_drop_caches
  d0=$(bl_bytes_written "$DEV")
  if [ "$ok" = 1 ]; then
    fio_guests "$DIR/guests" "$j" "$size" "$base-randwrite.json" --rw=randwrite --bs=4k --time_based \
      --runtime="$RUNTIME" || note "run $rep a $t J=$j: fio randwrite failed (see $LOGS/fio.err)"
  fi
  drain=$(settle "$t")
  d1=$(bl_bytes_written "$DEV")
  bl_drop_caches
  if [ "$ok" = 1 ]; then
    fio_guests "$DIR/guests" "$j" "$size" "$base-randread.json" --rw=randread --bs=4k --time_based \
      --runtime="$RUNTIME" || note "run $rep a $t J=$j: fio randread failed (see $LOGS/fio.err)"
  fi
  stop
  clean
  w=$(if [ -s "$base-randwrite.json" ]; then bl_fio_json "$base-randwrite.json" write; else echo n/a n/a n/a; fi)
  r=$(if [ -s "$base-randread.json" ]; then bl_fio_json "$base-randread.json" read; else echo n/a n/a n/a; fi)
  read -r wi wp wm <<<"$w"
  read -r ri rp rm_ <<<"$r"
  read -r ra rh rn <<<"$RSS"
  echo "part=a rep=$rep jobs=$j target=$t size_mib=$size w_iops=$wi w_p99_us=$wp w_max_us=$wm r_iops=$ri" \
       "r_p99_us=$rp r_max_us=$rm_ layout_settle_s=$lsettle drain_s=$drain w_dev_bytes=$((d1 - d0))" \
       "rss_anon_kib=$ra hwm_kib=$rh" \
       "rss_samples=$rn" | tee -a "$RESULTS" >&2
}

# ---------------------------------------------------------------- b. clone-chain ingest
make_images() {
  say "generating the clone chain: parent $IMAGE_MIB MiB + $CLONES clones in $IMAGES (tmpfs)"
  mkdir -p "$IMAGES"
  "$CHAINSWAP" bench "$IMAGES" --chain chain --clones "$CLONES" --image-mib "$IMAGE_MIB" --random-ops 0 \
    --discard 0 --keep --json >"$LOGS/images.json" 2>"$LOGS/images.err" ||
    die "chainswap bench could not generate the images: $(tail -1 "$LOGS/images.err")"
  # the bench's figures, and the distinct non-zero 4 KiB blocks counted again here
  /usr/bin/python3 - "$LOGS/images.json" "$IMAGES/chain" <<'EOF' >>"$RESULTS"
import hashlib, json, os, sys
d = json.load(open(sys.argv[1]))["data"]
zero = bytes(4096)
seen, nonzero, logical = set(), 0, 0
for name in sorted(os.listdir(sys.argv[2])):
    with open(os.path.join(sys.argv[2], name), "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            logical += len(b)
            for o in range(0, len(b), 4096):
                blk = b[o:o + 4096]
                if blk != zero:
                    nonzero += 1
                    seen.add(hashlib.blake2b(blk, digest_size=16).digest())
print("chain logical_bytes=%d bench_logical_bytes=%d bench_nonzero_blocks=%d bench_distinct_blocks=%d "
      "nonzero_blocks=%d distinct_blocks=%d files=%d" % (logical, d["logical_bytes"], d["ingested_nonzero_blocks"],
      d["ingested_distinct_blocks"], nonzero, len(seen), d["files"]))
EOF
  tail -1 "$RESULTS" >&2
  grep -q '^chain ' "$RESULTS" || die "could not count the chain's blocks"
}

run_b() {  # target rep
  local t=$1 rep=$2 b0 b1 d0 d1 d2 t0 ingest total s img bg
  say "run $rep/$REPS b: $t"
  setup "$t"
  mkdir "$DIR/chain"
  bl_drop_caches
  b0=$(bl_bytes_written "$DEV"); sleep "$BG_SECONDS"; b1=$(bl_bytes_written "$DEV")
  bg=$(awk -v a="$b0" -v b="$b1" -v s="$BG_SECONDS" 'BEGIN { if (s > 0) printf "%.0f", (b - a) / s; else print "n/a" }')
  t0=$(bl_now); d0=$(bl_bytes_written "$DEV")
  for img in "$IMAGES"/chain/*; do
    dd if="$img" of="$DIR/chain/${img##*/}" bs=1M conv=fsync status=none ||
      note "run $rep b $t: dd ${img##*/} failed"
  done
  ingest=$(bl_elapsed "$t0")
  s=$(settle "$t")
  total=$(bl_elapsed "$t0"); d1=$(bl_bytes_written "$DEV")
  stop
  sync; d2=$(bl_bytes_written "$DEV")
  clean
  read -r ra rh rn <<<"$RSS"
  echo "part=b rep=$rep target=$t dev_bytes=$((d1 - d0)) dev_bytes_unmount=$((d2 - d0)) ingest_s=$ingest" \
       "settle_s=$s total_s=$total bg_bytes_per_s=$bg rss_anon_kib=$ra hwm_kib=$rh rss_samples=$rn" |
    tee -a "$RESULTS" >&2
}

# ---------------------------------------------------------------- the run
git_rev=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')
{
  echo "# chainswap bench-scale, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $git_rev"
  echo "# command: sudo REPS=$REPS JOBS=\"$JOBS\" RUNTIME=$RUNTIME SIZE_MIB=$SIZE_MIB SIZE16_MIB=$SIZE16_MIB CHAIN_MIB=$CHAIN_MIB CLONES=$CLONES BG_SECONDS=$BG_SECONDS PARTS=\"$PARTS\"${CS_OPTS:+ CS_OPTS=$CS_OPTS} $CMDLINE"
  echo "# machine: $(bl_machine)"
  echo "# disk: WORK=$WORK on $(findmnt -n -o FSTYPE -T "$WORK") ($(findmnt -n -o SOURCE -T "$WORK")), device $(bl_dev_describe "$DEV"); tmpfs ${need} MiB"
  echo "# versions: $(fio --version), libfuse $(pkg-config --modversion fuse3), chainswapfs${CS_OPTS:+ -o $CS_OPTS} (defaults otherwise), passthrough_ll example defaults without O_DIRECT on its backing files"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RESULTS" >&2
T0=$(bl_now)
if has_part b; then make_images; fi
TA=(chainswap ptll-disk ptll-tmpfs)
TB=(chainswap ptll-disk plain ptll-tmpfs)
for rep in $(seq "$REPS"); do
  if has_part a; then
    for j in $JOBS; do
      for i in 0 1 2; do run_a "${TA[$(((i + rep - 1) % 3))]}" "$j" "$rep"; done
    done
  fi
  if has_part b; then
    for i in 0 1 2 3; do run_b "${TB[$(((i + rep - 1) % 4))]}" "$rep"; done
  fi
done
echo "# total time $(bl_elapsed "$T0") s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS" >&2

# ---------------------------------------------------------------- the tables
/usr/bin/python3 - "$RESULTS" "$RUNTIME" <<'EOF' | tee "$REPORT"
import statistics, sys

lines = open(sys.argv[1]).read().splitlines()
RUNTIME = float(sys.argv[2])
head = {}
runs, chain, notes = [], None, []
for l in lines:
    if l.startswith("# note: "):
        notes.append(l[8:])
    elif l.startswith("# "):
        k, _, v = l[2:].partition(": ")
        head.setdefault(k, v)
        if l.startswith("# total time"):
            head["total"] = l[2:]
    elif l.startswith("part="):
        runs.append(dict(kv.split("=", 1) for kv in l.split()))
    elif l.startswith("chain "):
        chain = {k: int(v) for k, v in (kv.split("=", 1) for kv in l.split()[1:])}

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def medv(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def med(rs, key):
    return medv([num(r.get(key)) for r in rs])

def mx(rs, key):
    vals = [num(r.get(key)) for r in rs]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None

def f(v, fmt="{:,.0f}", scale=1.0):
    return "n/a" if v is None else fmt.format(v / scale)

def ratio(a, b):
    return "n/a" if a is None or b in (None, 0) else "{:.2f}×".format(a / b)

def runs_of(part, **kw):
    return [r for r in runs if r["part"] == part and all(r.get(k) == str(v) for k, v in kw.items())]

reps = max([int(r["rep"]) for r in runs] or [0])
print("Command: `%s`  " % head.get("command", "?"))
print("Machine: %s  " % head.get("machine", "?"))
print("Disk: %s  " % head.get("disk", "?"))
print("Versions: %s  " % head.get("versions", "?"))
title = next((l[2:] for l in lines if l.startswith("# chainswap bench-scale")), "?")
print("Run: %s; load average at start %s; %s  " % (title, head.get("load average at start", "?"), head.get("total", "?")))
print("Medians of %d repetition(s); the targets interleaved within each repetition." % reps)
print()

labels = {"chainswap": "chainswap", "ptll-disk": "passthrough_ll, disk", "ptll-tmpfs": "passthrough_ll, tmpfs",
          "plain": "plain directory"}
mib = 1024.0
A = [r for r in runs if r["part"] == "a"]
if A:
    jobs = sorted({int(r["jobs"]) for r in A})
    print("**a. Guests at once** (fio 4 KiB, psync, QD1, O_DIRECT, one file per job in a chain directory, "
          "randwrite then randread, %s s each)" % sys.argv[2])
    print()
    print("| J | target | MiB per job | randwrite IOPS | write p99 µs | write max µs | randread IOPS | read p99 µs "
          "| read max µs | drain after randwrite s | device MiB, randwrite to settled | / MiB written by fio "
          "| daemon peak RssAnon MiB | VmHWM MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for j in jobs:
        for t in ("chainswap", "ptll-disk", "ptll-tmpfs"):
            rs = runs_of("a", jobs=j, target=t)
            if not rs:
                continue
            wdev = [num(r.get("w_dev_bytes", "n/a")) for r in rs]
            wlog = [num(r["w_iops"]) * 4096 * RUNTIME if num(r["w_iops"]) is not None else None for r in rs]
            wrel = [d / l if d is not None and l else None for d, l in zip(wdev, wlog)]
            print("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                j, labels[t], rs[0]["size_mib"], f(med(rs, "w_iops")), f(med(rs, "w_p99_us")),
                f(med(rs, "w_max_us")), f(med(rs, "r_iops")), f(med(rs, "r_p99_us")), f(med(rs, "r_max_us")),
                f(med(rs, "drain_s"), "{:.2f}") if t == "chainswap" else "",
                f(medv(wdev), "{:.0f}", 2**20) if t != "ptll-tmpfs" else "n/a",
                f(medv(wrel), "{:.2f}×") if t != "ptll-tmpfs" else "n/a",
                f(med(rs, "rss_anon_kib"), "{:.1f}", mib), f(med(rs, "hwm_kib"), "{:.1f}", mib)))
    print()
    print("| J | chainswap / | randwrite IOPS (≥ 0.9×) | write p99 (≤ 1.5×) | write max (≤ 2×) "
          "| randread IOPS (≥ 0.9×) | read p99 (≤ 1.5×) | read max (≤ 2×) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for j in jobs:
        cs = runs_of("a", jobs=j, target="chainswap")
        for t in ("ptll-disk", "ptll-tmpfs"):
            o = runs_of("a", jobs=j, target=t)
            if not cs or not o:
                continue
            print("| %d | %s | %s |" % (j, labels[t], " | ".join(
                ratio(med(cs, k), med(o, k)) for k in ("w_iops", "w_p99_us", "w_max_us", "r_iops", "r_p99_us", "r_max_us"))))
    print()
    print("Per run (chainswap / passthrough_ll disk / tmpfs), randwrite IOPS: " + "; ".join(
        "J=%d: %s" % (j, " / ".join(",".join(f(num(r["w_iops"])) for r in runs_of("a", jobs=j, target=t))
                                    for t in ("chainswap", "ptll-disk", "ptll-tmpfs"))) for j in jobs) + ".")
    print()

B = [r for r in runs if r["part"] == "b"]
if B and chain:
    logical = chain["bench_logical_bytes"]
    distinct = chain["bench_distinct_blocks"] * 4096
    print("**b. Clone-chain ingest** (parent + %d clones = %.0f MiB logical, %.1f MiB distinct non-zero; "
          "dd bs=1M conv=fsync per file, then settle)" % (chain["files"] - 1, logical / 2**20, distinct / 2**20))
    print()
    print("| target | device MiB written, settled | / logical | / distinct non-zero | incl. unmount MiB "
          "| / distinct non-zero | disk background MiB/s | settled − background, / distinct non-zero "
          "| ingest + settle s | of which settle s | MB/s | daemon peak RssAnon MiB | VmHWM MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    mbs = {}
    for t in ("chainswap", "ptll-disk", "plain", "ptll-tmpfs"):
        rs = runs_of("b", target=t)
        if not rs:
            continue
        for r in rs:
            r["mb_s"] = logical / 1e6 / float(r["total_s"])
            bg = num(r.get("bg_bytes_per_s"))
            r["net_bytes"] = None if bg is None else float(r["dev_bytes"]) - bg * float(r["total_s"])
        mbs[t] = med(rs, "mb_s")
        d, du = med(rs, "dev_bytes"), med(rs, "dev_bytes_unmount")
        if t == "ptll-tmpfs":
            dev = ["n/a (tmpfs)"] * 5
            net = "n/a"
        else:
            dev = [f(d, "{:,.1f}", 2**20), ratio(d, logical), ratio(d, distinct), f(du, "{:,.1f}", 2**20),
                   ratio(du, distinct)]
            net = ratio(med(rs, "net_bytes"), distinct)
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            labels[t], " | ".join(dev), f(med(rs, "bg_bytes_per_s"), "{:.2f}", 2**20), net,
            f(med(rs, "total_s"), "{:.2f}"), f(med(rs, "settle_s"), "{:.2f}") if t == "chainswap" else "",
            f(mbs[t], "{:,.1f}"),
            " | ".join(["", ""] if t == "plain" else
                       [f(med(rs, "rss_anon_kib"), "{:.1f}", mib), f(med(rs, "hwm_kib"), "{:.1f}", mib)])))
    print()
    cs = mbs.get("chainswap")
    print("Ingest MB/s, chainswap / passthrough_ll over tmpfs: %s (target ≥ 0.9×); / passthrough_ll over the disk: "
          "%s (target ≥ 1.5×). Device bytes, chainswap / distinct non-zero: %s settled (target ≤ 1.15×)." % (
              ratio(cs, mbs.get("ptll-tmpfs")), ratio(cs, mbs.get("ptll-disk")),
              ratio(med(runs_of("b", target="chainswap"), "dev_bytes"), distinct)))
    if chain["distinct_blocks"] != chain["bench_distinct_blocks"] or chain["logical_bytes"] != logical:
        print("WARNING: counted here %d distinct non-zero blocks, %d logical bytes; the bench said %d and %d." % (
            chain["distinct_blocks"], chain["logical_bytes"], chain["bench_distinct_blocks"], logical))
    else:
        print("Distinct non-zero blocks: %d, the bench's figure and a count over the images agree." %
              chain["distinct_blocks"])
    print("Per run (chainswap / passthrough_ll disk / plain / passthrough_ll tmpfs), MB/s: " + " / ".join(
        ",".join(f(r["mb_s"], "{:.0f}") for r in runs_of("b", target=t))
        for t in ("chainswap", "ptll-disk", "plain", "ptll-tmpfs")) + "; device MiB settled: " + " / ".join(
        ",".join(f(num(r["dev_bytes"]), "{:.0f}", 2**20) for r in runs_of("b", target=t))
        for t in ("chainswap", "ptll-disk", "plain")) + ".")
    print()

CS = [r for r in runs if r["target"] == "chainswap"]
if CS:
    print("**c. chainswap daemon memory** (sampled every 100 ms over each mount; target: RssAnon ≤ 64 MiB at its peak)")
    print()
    print("| run | runs | samples per run | peak RssAnon MiB, median | max | VmHWM MiB, median | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    groups = [("a, J=%d" % j, runs_of("a", jobs=j, target="chainswap")) for j in
              sorted({int(r["jobs"]) for r in CS if r["part"] == "a"})] + [("b, ingest", runs_of("b", target="chainswap"))]
    for name, rs in groups:
        if rs:
            print("| %s | %d | %s | %s | %s | %s | %s |" % (
                name, len(rs), f(med(rs, "rss_samples")), f(med(rs, "rss_anon_kib"), "{:.1f}", mib),
                f(mx(rs, "rss_anon_kib"), "{:.1f}", mib), f(med(rs, "hwm_kib"), "{:.1f}", mib),
                f(mx(rs, "hwm_kib"), "{:.1f}", mib)))
    print()
if notes:
    print("Notes from the run: " + "; ".join(sorted(set(notes))) + ".")
EOF
echo "raw per-run lines: $RESULTS; this report: $REPORT" >&2
