#!/usr/bin/env bash
# `chainswap estimate` (issue 14, "Targets"): its speed against `cat` reading
# the same images, its memory against its bound, and its figures against what
# a chainswap mount of the same images really stores, in one run.
#
#   1. `chainswap bench` generates a parent image of IMAGE_MIB and CLONES
#      clones (real library and binary pages, records, repeats, zeros; the
#      clones rewrite 5 % of the non-zero pages each) into WORK/images, once.
#   2. REPS repetitions, each: cold (page cache dropped before each command)
#      and warm (images in the page cache): `cat IMAGES > /dev/null`, then
#      `chainswap estimate --json IMAGES` with the default --memory (256M),
#      then with --memory SMALL_MEM (spills to a temporary file). Wall seconds
#      and peak RSS (/usr/bin/time %M) of each.
#   3. Once per setting (compress=off, compress=lz4): the images copied into
#      a chain of a fresh chainswap mount with cp, settled; `chainswap stats
#      --json` against the estimate.
#
# Output: markdown tables (medians of REPS) on stdout; raw figures in
# WORK/raw.txt.
#
#   sudo [WORK=/var/tmp/bench-estimate] [IMAGE_MIB=1024] [CLONES=3] [REPS=3] \
#        [SMALL_MEM=26M] tools/bench-estimate.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
build=$(cd "${1:-$here/../build}" && pwd)
CHAINSWAP=$build/tools/chainswap
CHAINSWAPFS=$build/fs/chainswapfs
WORK=${WORK:-/var/tmp/bench-estimate}
IMAGE_MIB=${IMAGE_MIB:-1024}
CLONES=${CLONES:-3}
REPS=${REPS:-3}
SMALL_MEM=${SMALL_MEM:-26M}
[ "$(id -u)" = 0 ] || { echo "bench-estimate: run as root (drops the page cache, mounts)" >&2; exit 1; }
[ -x "$CHAINSWAP" ] || { echo "bench-estimate: no $CHAINSWAP: build first" >&2; exit 1; }

mkdir -p "$WORK"
raw=$WORK/raw.txt
: >"$raw"
if [ ! -d "$WORK/images/img" ] || [ "$(ls "$WORK/images/img" | wc -l)" != $((CLONES + 1)) ]; then
  rm -rf "$WORK/images"
  mkdir -p "$WORK/images"
  "$CHAINSWAP" bench "$WORK/images" --chain img --image-mib "$IMAGE_MIB" --clones "$CLONES" \
    --random-ops 0 --discard 0 --keep >"$WORK/bench.log"
fi
images=("$WORK"/images/img/*.vswp)
total=$(du -cb "${images[@]}" | tail -1 | cut -f1)

# timed NAME OUT CMD...: runs CMD with stdout to OUT; appends "NAME seconds
# max_rss_kib" to raw.txt.
timed() {
  local name=$1 out=$2
  shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$out"
  echo "$name $(cat "$WORK/time.txt")" >>"$raw"
}
for rep in $(seq "$REPS"); do
  for cache in cold warm; do
    prep() { if [ $cache = cold ]; then bl_drop_caches; else cat "${images[@]}" >/dev/null; fi; }
    prep; timed "$cache.cat" /dev/null cat "${images[@]}"
    prep; timed "$cache.estimate" "$WORK/estimate.json" "$CHAINSWAP" estimate --json --no-progress "${images[@]}"
    prep; timed "$cache.estimate_small" "$WORK/estimate-small.json" \
      "$CHAINSWAP" estimate --json --no-progress --memory "$SMALL_MEM" --tmpdir "$WORK" "${images[@]}"
  done
  echo "rep $rep done" >&2
done

# The mounts: cp into a chain, settle, stats.
for mode in off lz4; do
  rm -rf "$WORK/backing" "$WORK/mnt"
  bl_mount_chainswap "$WORK/backing" "$WORK/mnt" "$WORK/chainswapfs.log" "compress=$mode" ||
    { echo "bench-estimate: $BL_ERR" >&2; exit 1; }
  pid=$BL_PID
  mkdir "$WORK/mnt/img"
  for f in "${images[@]}"; do cp "$f" "$WORK/mnt/img/"; done
  bl_cs_settle "$WORK/mnt" "$WORK/backing" >/dev/null
  "$CHAINSWAP" stats "$WORK/backing" --json >"$WORK/stats-$mode.json"
  bl_unmount "$WORK/mnt" "$pid"
done

/usr/bin/python3 - "$raw" "$WORK" "$total" "$SMALL_MEM" <<'EOF'
import json, statistics, sys
raw, work, total, small = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = {}
for line in open(raw):
    name, secs, rss = line.split()
    runs.setdefault(name, []).append((float(secs), int(rss)))
med = lambda name, i: statistics.median(r[i] for r in runs[name])
est = json.load(open(work + "/estimate.json"))
small_est = json.load(open(work + "/estimate-small.json"))
print(f"Images: {est['images']}, {total / 2**30:.2f} GiB; medians of {len(runs['cold.cat'])}\n")
print("| cache | command | seconds | GB/s | vs cat | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|")
for cache in ("cold", "warm"):
    cat = med(cache + ".cat", 0)
    for name, label in (("cat", "`cat IMAGES > /dev/null`"), ("estimate", "`chainswap estimate` (--memory 256M)"),
                        ("estimate_small", f"`chainswap estimate --memory {small}`")):
        s = med(f"{cache}.{name}", 0)
        print(f"| {cache} | {label} | {s:.2f} | {total / s / 1e9:.2f} | {cat / s:.2f}x | {med(f'{cache}.{name}', 1) / 1024:.1f} |")
same = {k: v for k, v in est.items() if k not in ("seconds", "spill_runs", "table_bytes")} == \
       {k: v for k, v in small_est.items() if k not in ("seconds", "spill_runs", "table_bytes")}
print(f"\nThe --memory {small} run spilled {small_est['spill_runs']} run(s); its figures "
      f"{'equal' if same else 'DIFFER FROM'} the default run's.\n")
chain = next(c for c in json.load(open(work + "/stats-off.json"))["chains"] if c["name"] == "img")
lz4 = next(c for c in json.load(open(work + "/stats-lz4.json"))["chains"] if c["name"] == "img")
rows = [("non-zero bytes", est["nonzero_bytes"], chain["nonzero_bytes"]),
        ("stored bytes (compress=off)", est["stored_bytes_compress_off"], chain["stored_bytes"]),
        ("stored bytes (compress=lz4)", est["stored_bytes_compress_lz4"], lz4["stored_bytes"])]
print("| figure | `chainswap estimate` | the mount (`chainswap stats`) | difference |")
print("|---|---:|---:|---:|")
for name, e, m in rows:
    print(f"| {name} | {e:,} | {m:,} | {100.0 * (e - m) / m if m else 0:+.3f} % |")
print(f"| dedup ratio | {est['dedup_ratio']:.3f} | {chain['dedup_ratio']:.3f} | |")
print(f"| compress ratio | {est['compress_ratio']:.3f} | {lz4['compress_ratio']:.3f} | |")
print(f"\nWith compress=lz4: dedup x compress {est['total_ratio']:.2f}x; {est['raw_blocks']:,} of "
      f"{est['distinct_blocks']:,} distinct blocks raw; the exact compressed ideal (LZ4 alone in 512-byte sectors) "
      f"is {est['ideal_bytes_compress_lz4']:,} bytes, the stored form takes "
      f"{est['stored_bytes_compress_lz4'] / est['ideal_bytes_compress_lz4']:.4f}x that.")
EOF
