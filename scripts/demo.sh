#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, formats a
# backing directory, mounts it, and shows a small clone chain deduplicating.
#
#   BACKING (default /var/lib/chainswap)  MOUNT (default /mnt/swap)
#
# The mount stays up afterwards; unmount with: fusermount3 -u $MOUNT
set -euo pipefail
cd "$(dirname "$0")/.."
BACKING=${BACKING:-/var/lib/chainswap}
MOUNT=${MOUNT:-/mnt/swap}

./scripts/install-deps.sh
BUILD_TARGETS="chainswapfs chainswap" ./scripts/build.sh
BIN=$PWD/build

if [ ! -e "$BACKING/catalog.db" ]; then
  "$BIN/tools/chainswap" format "$BACKING"
fi
mkdir -p "$MOUNT"
if ! mountpoint -q "$MOUNT"; then
  "$BIN/fs/chainswapfs" "$BACKING" "$MOUNT" -o allow_other
  for _ in $(seq 50); do mountpoint -q "$MOUNT" && break; sleep 0.1; done
fi
mountpoint -q "$MOUNT" || { echo "demo: mount failed (see syslog / journalctl)" >&2; exit 1; }
echo "mounted $BACKING on $MOUNT"

CHAIN=$MOUNT/demo-pool
rm -rf "$CHAIN"
mkdir "$CHAIN"

# A 64 MiB parent swap image: pages of this machine's libraries and binaries,
# text, and one third zero pages, like a guest's swap after boot.
PARENT=$CHAIN/vm01.vswp
truncate -s 64M "$PARENT"
i=0
for f in /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/*; do
  [ -f "$f" ] || continue
  [ $i -ge 10922 ] && break            # two thirds of 16384 pages
  size=$(stat -c %s "$f")
  [ "$size" -ge 4096 ] || continue
  pages=$(( size / 4096 )); [ $pages -gt 64 ] && pages=64
  seek=$(( i + i / 2 )); [ $(( seek + pages )) -gt 16384 ] && pages=$(( 16384 - seek ))
  [ $pages -gt 0 ] || break
  dd if="$f" of="$PARENT" bs=4096 count=$pages seek=$seek conv=notrunc status=none
  i=$(( i + pages ))
done

# Three clones: each copies the parent and then dirties 5% of its pages.
for n in 02 03 04; do
  cp "$PARENT" "$CHAIN/vm$n.vswp"
  dd if=/dev/urandom of="$CHAIN/vm$n.vswp" bs=4096 count=819 seek=$(( 10#$n * 1000 )) conv=notrunc status=none
done
sync

echo
ls -ls "$CHAIN"
echo
"$BIN/tools/chainswap" stats "$BACKING"
echo
echo "sqlite3 $BACKING/catalog.db 'select * from chain_stats'"
sqlite3 -header -column "$BACKING/catalog.db" 'select * from chain_stats'
echo
getfattr -d -m chainswap "$CHAIN"
echo "backing directory on disk: $(du -sh "$BACKING" | cut -f1) for $(du -sh --apparent-size "$CHAIN" | cut -f1) of swap files"
echo "unmount with: fusermount3 -u $MOUNT"
