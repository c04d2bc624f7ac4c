#!/bin/bash
# Where chainswap's writes go during a clone-chain ingest (BENCHMARKS §6 b):
# the daemon is traced with strace while the `chainswap bench` chain is copied
# in with `dd bs=1M conv=fsync`, one file after the other, until it settles.
#
#   sudo [WORK=/var/tmp/cs-trace.$$] [CHAIN_MIB=1280] [CLONES=4] [CS_OPTS=...] \
#       tools/trace-catalog-writes.sh BUILD_DIR
#
# Prints the bytes the daemon wrote per file (journal segments, store, catalog
# WAL, catalog database), the catalog's WAL frames and commits, and the WAL
# frames per table (frame page numbers mapped with SQLite's dbstat on the
# final catalog; pages freed and reused meanwhile may be counted under their
# final owner). strace slows the daemon down several-fold, so the timing and
# the device figure printed alongside are not the benchmark's: read the split.
set -euo pipefail

BUILD=${1:?usage: trace-catalog-writes.sh BUILD_DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
# shellcheck disable=SC2034  # CHAINSWAPFS is read by bench-lib.sh
CHAINSWAP=$BUILD/tools/chainswap CHAINSWAPFS=$BUILD/fs/chainswapfs
# shellcheck source=tools/bench-lib.sh
. "$REPO/tools/bench-lib.sh"

WORK=${WORK:-/var/tmp/cs-trace.$$}
CHAIN_MIB=${CHAIN_MIB:-1280} CLONES=${CLONES:-4} CS_OPTS=${CS_OPTS:-}
IMAGE_MIB=$((CHAIN_MIB / (CLONES + 1)))
for c in strace sqlite3 dd fusermount3 getfattr /usr/bin/python3; do
  command -v "$c" >/dev/null || { echo "trace-catalog-writes: $c is missing (scripts/install-deps.sh --bench)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "trace-catalog-writes: run as root (mounts, drop_caches)" >&2; exit 2; }
[ -e "$WORK" ] && { echo "trace-catalog-writes: $WORK exists; remove it or set WORK" >&2; exit 2; }
mkdir -p "$WORK"
MNT=$WORK/mnt BK=$WORK/backing IMAGES=$WORK/images TRACE=$WORK/strace.txt LOG=$WORK/chainswapfs.log
DEV=$(bl_block_dev "$WORK")

mkdir -p "$IMAGES"
"$CHAINSWAP" bench "$IMAGES" --chain chain --clones "$CLONES" --image-mib "$IMAGE_MIB" --random-ops 0 \
  --discard 0 --keep --json >"$WORK/images.json" 2>"$WORK/images.err" ||
  { echo "trace-catalog-writes: chainswap bench failed: $(tail -1 "$WORK/images.err")" >&2; exit 1; }
bl_mount_chainswap "$BK" "$MNT" "$LOG" "$CS_OPTS" || { echo "trace-catalog-writes: $BL_ERR" >&2; exit 1; }
PID=$BL_PID
mkdir "$MNT/chain"
bl_drop_caches
strace -f -qq -p "$PID" -e trace=pwrite64,pwritev,pwritev2,write,writev -y -o "$TRACE" &
SPID=$!
sleep 1
d0=$(bl_bytes_written "$DEV")
for img in "$IMAGES"/chain/*; do dd if="$img" of="$MNT/chain/${img##*/}" bs=1M conv=fsync status=none; done
bl_cs_settle "$MNT" "$BK" >/dev/null || echo "trace-catalog-writes: did not settle" >&2
d1=$(bl_bytes_written "$DEV")
kill "$SPID"; wait "$SPID" 2>/dev/null || true
bl_unmount "$MNT" "$PID"
sqlite3 -readonly "$BK/catalog.db" "select pageno, name from dbstat" >"$WORK/pages.txt"
echo "device $DEV: $(((d1 - d0) >> 20)) MiB written from the first dd to settled (traced: slower than untraced)"
echo "catalog page size: $(sqlite3 -readonly "$BK/catalog.db" 'pragma page_size') B; store $(($(stat -c %s "$BK/store.dat") >> 20)) MiB"
/usr/bin/python3 - "$TRACE" "$WORK/pages.txt" <<'EOF'
import codecs, collections, re, sys
trace, pages = sys.argv[1], sys.argv[2]
owner = {}
for line in open(pages):
    p, _, name = line.strip().partition('|')
    owner[int(p)] = name
by_file, calls = collections.Counter(), collections.Counter()
frames, commits, by_table = 0, 0, collections.Counter()
pending = {}  # thread -> path of its call that strace split (<unfinished ...>, then <... resumed>)
for line in open(trace):
    line = line.strip()
    u = re.search(r'^(\d+) +\w+\(\d+<([^>]*)>.*<unfinished \.\.\.>$', line)
    if u:
        pending[u.group(1)] = u.group(2)
        continue
    r = re.search(r'^(\d+) +<\.\.\. \w+ resumed>.* = (\d+)$', line)
    if r and r.group(1) in pending:
        m = None
        path, n = pending.pop(r.group(1)), int(r.group(2))
    else:
        m = re.search(r'^\d+ +(\w+)\(\d+<([^>]*)>, (.*) = (\d+)$', line)
        if not m:
            continue
        path, n = m.group(2), int(m.group(4))
    f = path.rsplit('/', 1)[-1]
    if '/journal/' in path: f = 'journal segments'
    elif path.startswith('/dev/fuse'): f = '/dev/fuse (replies)'
    by_file[f] += n
    calls[f] += 1
    if m and f == 'catalog.db-wal' and n == 24:  # a frame header: page number, then the db size at a commit
        h = re.match(r'"(.*)", 24, \d+\)$', m.group(3))
        if h:
            b = codecs.escape_decode(h.group(1).encode('latin1'))[0]
            frames += 1
            by_table[owner.get(int.from_bytes(b[0:4], 'big'), '(free or gone)')] += 1
            if b[4:8] != b'\0\0\0\0':
                commits += 1
print('bytes written by the daemon, per file:')
for f, n in by_file.most_common():
    print(f'  {f:28s} {n / 2**20:9.1f} MiB in {calls[f]} calls')
print(f'catalog WAL: {frames} frames in {commits} commits ({frames / max(commits, 1):.1f} pages per commit)')
for t, n in by_table.most_common():
    print(f'  {t:28s} {n:7d} frames ({100 * n / max(frames, 1):4.1f} %)')
EOF
rm -rf "$IMAGES"
echo "trace and catalog kept in $WORK"
