#!/usr/bin/env bash
# compress=lz4 against compress=off (issue 14, "Targets"), side by side in one
# run: the same `chainswap bench` clone chain into a fresh chainswap mount
# of each setting, REPS times, the order of the two alternating per rep.
#
# Each run:
#   1. `chainswap bench MNT --chain c --image-mib IMAGE_MIB --clones CLONES
#      --random-ops RANDOM_OPS --threads THREADS --direct --discard 0 --keep
#      --json`: ingest of the parent and its clones (1 MiB write + fsync),
#      then 4 KiB O_DIRECT random writes and reads.
#   2. Settled (journal empty); then the exact ideal of what the chain holds:
#      `chainswap estimate --json` of its files, read through the mount
#      (ideal_bytes_compress_lz4: per distinct block its LZ4 size rounded up
#      to 512 B, 4 KiB above 3584 B); the chain's stored bytes
#      (`chainswap stats --json`) and store.dat's allocated bytes
#      (st_blocks * 512, once the idle sync has punched what is free).
#   3. CHURN_ROUNDS rounds of churn: in each file, a random half of its
#      64 KiB regions is punched (half of them) or rewritten (the other
#      half) with blocks copied from another file of the chain, each with 16
#      bytes changed (new blocks that compress like their neighbours), then
#      fsync. Settled, then step 2's figures again (with compress=lz4 after
#      every round: the trend).
#
# Output: markdown tables (medians of REPS) on stdout; raw JSON per run in
# WORK/runs/.
#
#   sudo [WORK=/var/tmp/bench-compress] [REPS=3] [IMAGE_MIB=256] [CLONES=3] \
#        [RANDOM_OPS=20000] [THREADS=4] [CHURN_ROUNDS=10] \
#        tools/bench-compress.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
build=$(cd "${1:-$here/../build}" && pwd)
CHAINSWAP=$build/tools/chainswap
CHAINSWAPFS=$build/fs/chainswapfs
WORK=${WORK:-/var/tmp/bench-compress}
REPS=${REPS:-3}
IMAGE_MIB=${IMAGE_MIB:-256}
CLONES=${CLONES:-3}
RANDOM_OPS=${RANDOM_OPS:-20000}
THREADS=${THREADS:-4}
CHURN_ROUNDS=${CHURN_ROUNDS:-10}
CMDLINE="$0 $*"
[ "$(id -u)" = 0 ] || { echo "bench-compress: run as root (mounts)" >&2; exit 1; }
[ -x "$CHAINSWAP" ] || { echo "bench-compress: no $CHAINSWAP: build first" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/runs"
MNT=$WORK/mnt
BK=$WORK/backing
trap 'bl_unmount "$MNT" "${pid:-}" 30 >/dev/null 2>&1 || true' EXIT

# Waits (up to 60 s) until store.dat's allocated size stops shrinking: the
# daemon's idle sync punches freed slots and pack pages.
settle_store() {
  local prev=-1 cur same=0
  for _ in $(seq 120); do
    cur=$(stat -c %b "$BK/store.dat")
    if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 6 ] && break
    prev=$cur
    sleep 0.5
  done
}

# figures NAME: the ideal, stored and allocated bytes of the chain now.
figures() {
  local name=$1
  bl_cs_settle "$MNT" "$BK" >/dev/null || { echo "bench-compress: destage did not settle" >&2; exit 1; }
  settle_store
  "$CHAINSWAP" estimate --json --no-progress "$MNT"/c/* >"$run/$name.estimate.json"
  "$CHAINSWAP" stats --json "$BK" >"$run/$name.stats.json"
  echo $(($(stat -c %b "$BK/store.dat") * 512)) >"$run/$name.allocated"
}

churn() {  # seed: one round
  /usr/bin/python3 - "$MNT/c" 1 "$1" <<'EOF'
import ctypes, os, random, sys
d, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
REGION = 64 << 10
rng = random.Random(seed)
files = sorted(os.path.join(d, f) for f in os.listdir(d))
fds = [os.open(f, os.O_RDWR) for f in files]
sizes = [os.fstat(fd).st_size for fd in fds]
for r in range(rounds):
    for i, fd in enumerate(fds):
        regions = sizes[i] // REGION
        for reg in rng.sample(range(regions), regions // 2):
            off = reg * REGION
            if rng.random() < 0.5:
                if libc.fallocate(fd, PUNCH, off, REGION) != 0:
                    raise OSError(ctypes.get_errno(), "fallocate")
                continue
            j = rng.randrange(len(fds))
            src = rng.randrange(sizes[j] // REGION) * REGION
            buf = bytearray(os.pread(fds[j], REGION, src))
            for b in range(0, REGION, 4096):
                p = b + rng.randrange(4096 - 16)
                buf[p:p + 16] = rng.randbytes(16)
            os.pwrite(fd, bytes(buf), off)
        os.fsync(fd)
EOF
}

for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then order="off lz4"; else order="lz4 off"; fi
  for mode in $order; do
    run=$WORK/runs/$rep-$mode
    mkdir -p "$run"
    rm -rf "$BK" "$MNT"
    bl_mount_chainswap "$BK" "$MNT" "$WORK/chainswapfs.log" "compress=$mode" || { echo "bench-compress: $BL_ERR" >&2; exit 1; }
    pid=$BL_PID
    "$CHAINSWAP" bench "$MNT" --chain c --image-mib "$IMAGE_MIB" --clones "$CLONES" --random-ops "$RANDOM_OPS" \
      --threads "$THREADS" --direct --discard 0 --seed "$rep" --keep --json >"$run/bench.json"
    figures ingest
    for round in $(seq "$CHURN_ROUNDS"); do
      churn "$((rep * 1000 + round))"
      # The trend, round by round (compress=lz4 only: off has no fragmentation).
      if [ "$mode" = lz4 ] && [ "$round" != "$CHURN_ROUNDS" ]; then figures "round$round"; fi
    done
    figures churn
    bl_unmount "$MNT" "$pid"
    pid=''
    echo "rep $rep $mode done" >&2
  done
done

/usr/bin/python3 - "$WORK" "$REPS" <<EOF
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
med = statistics.median
def load(rep, mode, name): return json.load(open(f"{work}/runs/{rep}-{mode}/{name}"))
def alloc(rep, mode, name): return int(open(f"{work}/runs/{rep}-{mode}/{name}.allocated").read())
def chain(rep, mode, name):
    return next(c for c in load(rep, mode, name + ".stats.json")["chains"] if c["name"] == "c")
R = range(1, reps + 1)
print("# command: $CMDLINE (REPS=$REPS IMAGE_MIB=$IMAGE_MIB CLONES=$CLONES RANDOM_OPS=$RANDOM_OPS THREADS=$THREADS "
      "CHURN_ROUNDS=$CHURN_ROUNDS WORK=$WORK)")
print(f"# medians of {reps}; ratios are lz4 over off, each rep's pair run back to back\n")
def ph(rep, mode, phase, op):
    j = load(rep, mode, "bench.json")
    return j[phase] if op is None else j[phase][op]
rows = []
b = load(1, "off", "bench.json")
print("| figure | compress=off | compress=lz4 | lz4 / off |")
print("|---|---:|---:|---:|")
def row(label, f, fmt="{:,.0f}"):
    off = [f(r, "off") for r in R]
    lz4 = [f(r, "lz4") for r in R]
    ratio = med([l / o for l, o in zip(lz4, off)]) if all(off) else float("nan")
    print(f"| {label} | {fmt.format(med(off))} | {fmt.format(med(lz4))} | {ratio:.2f}x |")
row("ingest MB/s (1 MiB write + fsync)", lambda r, m: load(r, m, "bench.json")["ingest"]["mb_per_s"], "{:,.1f}")
row("4 KiB random write IOPS (O_DIRECT)", lambda r, m: load(r, m, "bench.json")["random_write"]["iops"])
row("4 KiB random read IOPS (O_DIRECT)", lambda r, m: load(r, m, "bench.json")["random_read"]["iops"])
row("4 KiB random read p99 us", lambda r, m: load(r, m, "bench.json")["random_read"]["latency_us"]["p99"], "{:,.1f}")
for name, label in (("ingest", "after ingest"), ("churn", "after churn")):
    row(f"stored bytes {label} (chainswap stats)", lambda r, m: chain(r, m, name)["stored_bytes"])
    row(f"store.dat allocated {label}", lambda r, m: alloc(r, m, name))
print()
print("| lz4 figure | after ingest | after churn |")
print("|---|---:|---:|")
def both(label, f, fmt):
    print(f"| {label} | " + " | ".join(fmt.format(med([f(r, n) for r in R])) for n in ("ingest", "churn")) + " |")
ideal = lambda r, n: load(r, "lz4", n + ".estimate.json")["ideal_bytes_compress_lz4"]
both("exact compressed ideal (bytes)", ideal, "{:,.0f}")
both("stored bytes / ideal", lambda r, n: chain(r, "lz4", n)["stored_bytes"] / ideal(r, n), "{:.4f}")
both("store.dat allocated / ideal", lambda r, n: alloc(r, "lz4", n) / ideal(r, n), "{:.4f}")
both("estimate of the files (stored form) / stored bytes",
     lambda r, n: load(r, "lz4", n + ".estimate.json")["stored_bytes_compress_lz4"] / chain(r, "lz4", n)["stored_bytes"],
     "{:.4f}")
both("distinct blocks", lambda r, n: load(r, "lz4", n + ".estimate.json")["distinct_blocks"], "{:,.0f}")
rounds = int("$CHURN_ROUNDS")
names = ["ingest"] + [f"round{i}" for i in range(1, rounds)] + ["churn"]
print("\nstore.dat allocated / exact ideal, compress=lz4, after each round of churn (medians):\n")
print("| " + " | ".join(["ingest"] + [str(i) for i in range(1, rounds + 1)]) + " |")
print("|" + "---:|" * (rounds + 1))
print("| " + " | ".join(f"{med([alloc(r, 'lz4', n) / ideal(r, n) for r in R]):.4f}" for n in names) + " |")
EOF
