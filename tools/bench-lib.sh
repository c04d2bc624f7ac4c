# shellcheck shell=bash
# Shared functions of the benchmark scripts (tools/bench-*.sh). Source it:
#
#   . "$(dirname "$0")/bench-lib.sh"
#
# Nothing here runs on its own; every function is prefixed bl_. The mount
# helpers start daemons in the background of the *calling* shell (so that it
# can `wait` for them) and return their PID in BL_PID; failures return 1
# with a one-line reason in BL_ERR.
#
#   bl_build_passthrough_ll OUT LOG [no-odirect]
#       libfuse's passthrough_ll example (/usr/share/doc/libfuse3-dev/
#       examples/passthrough_ll.c) compiled in a temporary directory (removed
#       afterwards) into the binary OUT; compiler output in LOG. With
#       no-odirect it opens its backing files without the caller's O_DIRECT:
#       unchanged, it passes O_DIRECT to the backing file and pwrite()s from
#       libfuse's request buffer, which is not block-aligned, so every
#       O_DIRECT write fails with EINVAL.
#   bl_wait_mount MNT PID             until MNT is a mount point (10 s), 1 if PID died
#   bl_mount_chainswap BACKING MNT LOG [OPTS]
#       `$CHAINSWAP format BACKING` (BACKING must not exist or be empty), then
#       `$CHAINSWAPFS BACKING MNT -f [-o OPTS]` in the background, log in LOG
#   bl_mount_passthrough_ll BIN SOURCE MNT LOG
#       BIN -f -o source=SOURCE MNT in the background (SOURCE created)
#   bl_unmount MNT [PID] [TIMEOUT_S]
#       fusermount3 -u (retried, lazy as a last resort), then waits up to
#       TIMEOUT_S (300) for PID to exit (chainswap finishes destage first),
#       then kills it
#   bl_mount_tmpfs DIR SIZE / bl_umount_tmpfs DIR
#   bl_cs_idle MNT                    true when the journal is empty and nothing is pending (live xattrs)
#   bl_cs_settle MNT BACKING [TIMEOUT_S]
#       waits until bl_cs_idle, then until `chainswap stats BACKING --json`
#       (published once a second) shows journal_bytes 0 and pending_records
#       0; prints the seconds waited, or returns 1 after TIMEOUT_S (600)
#   bl_block_dev DIR                  the block device (name under /sys/block) holding DIR's filesystem:
#                                     a partition's parent disk; a device-mapper device itself (dm-N)
#   bl_bytes_written DEV              bytes written to DEV so far (/sys/block/DEV/stat field 7 x 512)
#   bl_dev_describe DEV               one line: size, transport/model, rotational, dm name and slaves
#   bl_rss_sampler_start PID OUT / bl_rss_sampler_stop
#       samples RssAnon and VmHWM of PID from /proc/PID/status every 100 ms
#       in the background (one sampler at a time); stop (in the calling
#       shell, never in $(...)) sets BL_RSS="peak_rssanon_kib peak_vmhwm_kib
#       samples" (n/a n/a 0 without a sampler)
#   bl_fio_json FILE rw               "iops p99_us max_us" (completion latency) of fio's JSON output
#   bl_drop_caches                    sync, then drop the page cache
#   bl_machine                        one line: CPU, nproc, RAM, kernel, OS
#   bl_now / bl_elapsed T0            wall clock seconds / seconds since T0
#
# Uses: CHAINSWAP, CHAINSWAPFS (paths of the binaries) for the chainswap
# helpers; /usr/bin/python3 for bl_fio_json.

# shellcheck disable=SC2034  # BL_PID, BL_ERR and BL_RSS are read by the scripts that source this
BL_PID='' BL_ERR='' BL_RSS='' BL_SAMPLER_PID='' BL_SAMPLER_OUT=''
BL_PT_EXAMPLES=/usr/share/doc/libfuse3-dev/examples

bl_now() { date +%s.%N; }
bl_elapsed() { awk -v a="$1" -v b="$(bl_now)" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- passthrough_ll
bl_build_passthrough_ll() {  # out log [no-odirect]
  local out=$1 log=$2 mode=${3:-} tmp rc=0
  BL_ERR=''
  if [ ! -r "$BL_PT_EXAMPLES/passthrough_ll.c" ]; then
    BL_ERR="$BL_PT_EXAMPLES/passthrough_ll.c missing (libfuse3-dev)"
    return 1
  fi
  tmp=$(mktemp -d /tmp/chainswap-ptll.XXXXXX)
  if [ "$mode" = no-odirect ]; then
    sed 's/& ~O_NOFOLLOW\b/\& ~(O_NOFOLLOW | O_DIRECT)/' "$BL_PT_EXAMPLES/passthrough_ll.c" >"$tmp/passthrough_ll.c"
    if [ "$(grep -c 'O_NOFOLLOW | O_DIRECT' "$tmp/passthrough_ll.c")" != 2 ]; then
      BL_ERR="passthrough_ll.c: expected to change its 2 opens of backing files (another libfuse version?)"
      rm -rf "$tmp"
      return 1
    fi
  else
    cp "$BL_PT_EXAMPLES/passthrough_ll.c" "$tmp/passthrough_ll.c"
  fi
  # shellcheck disable=SC2046  # pkg-config's flags are meant to be split
  gcc -O2 -Wall -I"$BL_PT_EXAMPLES" -o "$tmp/passthrough_ll" "$tmp/passthrough_ll.c" \
    $(pkg-config fuse3 --cflags --libs) >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    mv "$tmp/passthrough_ll" "$out" || rc=$?
  fi
  rm -rf "$tmp"
  if [ "$rc" != 0 ]; then
    BL_ERR="gcc failed on $BL_PT_EXAMPLES/passthrough_ll.c: $(tail -1 "$log" 2>/dev/null)"
    return 1
  fi
}

# ---------------------------------------------------------------- mounts
bl_wait_mount() {  # mnt pid
  local i
  for i in $(seq 200); do
    mountpoint -q "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

bl_mount_chainswap() {  # backing mnt log [opts]
  local backing=$1 mnt=$2 log=$3 opts=${4:-}
  BL_PID='' BL_ERR=''
  mkdir -p "$mnt"
  if ! "$CHAINSWAP" format "$backing" >>"$log" 2>&1; then
    BL_ERR="chainswap format $backing failed: $(tail -1 "$log")"
    return 1
  fi
  "$CHAINSWAPFS" "$backing" "$mnt" -f ${opts:+-o "$opts"} >>"$log" 2>&1 &
  BL_PID=$!
  if ! bl_wait_mount "$mnt" "$BL_PID"; then
    BL_ERR="chainswapfs did not mount $mnt: $(tail -1 "$log")"
    kill "$BL_PID" 2>/dev/null || true
    wait "$BL_PID" 2>/dev/null || true
    BL_PID=''
    return 1
  fi
}

bl_mount_passthrough_ll() {  # bin source mnt log
  local bin=$1 src=$2 mnt=$3 log=$4
  BL_PID='' BL_ERR=''
  mkdir -p "$src" "$mnt"
  "$bin" -f -o source="$src" "$mnt" >>"$log" 2>&1 &
  BL_PID=$!
  if ! bl_wait_mount "$mnt" "$BL_PID"; then
    BL_ERR="passthrough_ll did not mount $mnt: $(tail -1 "$log")"
    kill "$BL_PID" 2>/dev/null || true
    wait "$BL_PID" 2>/dev/null || true
    BL_PID=''
    return 1
  fi
}

bl_unmount() {  # mnt [pid] [timeout_s]
  local mnt=$1 pid=${2:-} timeout=${3:-300} i
  if mountpoint -q "$mnt" 2>/dev/null; then
    fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } ||
      fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  [ -n "$pid" ] || return 0
  for i in $(seq $((timeout * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench: daemon $pid did not exit ${timeout} s after the unmount; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

bl_mount_tmpfs() {  # dir size
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1"
}
bl_umount_tmpfs() {  # dir
  if mountpoint -q "$1" 2>/dev/null; then umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true; fi
}

# ---------------------------------------------------------------- chainswap destage
bl_cs_idle() {  # mnt
  local j p
  j=$(getfattr --only-values -n user.chainswap.destage.journal_bytes "$1" 2>/dev/null) || return 1
  p=$(getfattr --only-values -n user.chainswap.destage.pending_records "$1" 2>/dev/null) || return 1
  [ "$j" = 0 ] && [ "$p" = 0 ]
}

bl_cs_settle() {  # mnt backing [timeout_s] -> seconds waited
  local mnt=$1 backing=$2 timeout=${3:-600} t0 idle=0
  t0=$(bl_now)
  for _ in $(seq $((timeout * 50))); do
    if bl_cs_idle "$mnt"; then idle=1; break; fi
    sleep 0.02
  done
  [ "$idle" = 1 ] || return 1
  # what `chainswap stats` says (the daemon publishes it once a second)
  for _ in $(seq $((timeout * 10))); do
    if "$CHAINSWAP" stats "$backing" --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin).get("destage") or {}
sys.exit(0 if d.get("journal_bytes", 1) == 0 and d.get("pending_records", 1) == 0 else 1)'; then
      bl_elapsed "$t0"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- block devices
bl_block_dev() {  # dir -> name under /sys/block
  local majmin sys name
  majmin=$(stat -c '%Hd:%Ld' "$1") || return 1
  sys=$(readlink -f "/sys/dev/block/$majmin" 2>/dev/null) || true
  if [ -z "$sys" ] || [ ! -d "$sys" ]; then
    echo "bench: $1 is on $(stat -f -c %T "$1") (device $majmin), not on a block device" >&2
    return 1
  fi
  name=${sys##*/}
  [ -e "$sys/partition" ] && name=$(basename "$(dirname "$sys")")
  if [ ! -r "/sys/block/$name/stat" ]; then
    echo "bench: no /sys/block/$name/stat for $1 (device $majmin)" >&2
    return 1
  fi
  echo "$name"
}

bl_bytes_written() {  # dev
  awk '{ printf "%.0f\n", $7 * 512 }' "/sys/block/$1/stat"
}

bl_dev_describe() {  # dev
  local d=$1 size rot model tran dm slaves
  size=$(lsblk -dno SIZE "/dev/$d" 2>/dev/null | tr -d ' ')
  rot=$(cat "/sys/block/$d/queue/rotational" 2>/dev/null || echo '?')
  model=$(lsblk -dno MODEL "/dev/$d" 2>/dev/null | sed 's/ *$//')
  tran=$(lsblk -dno TRAN "/dev/$d" 2>/dev/null | tr -d ' ')
  case $d in vd*) tran=${tran:-virtio-blk} ;; nvme*) tran=${tran:-nvme} ;; esac
  dm=''
  if [ -r "/sys/block/$d/dm/name" ]; then
    slaves=$(find "/sys/block/$d/slaves" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null | sed 's/ $//')
    dm=", device-mapper $(cat "/sys/block/$d/dm/name") on ${slaves:-?}"
  fi
  echo "/dev/$d ${size:-?}${tran:+ $tran}${model:+, model $model}, rotational=$rot$dm"
}

# ---------------------------------------------------------------- memory sampler
bl_rss_sampler_start() {  # pid out
  local pid=$1 out=$2
  BL_SAMPLER_OUT=$out
  rm -f "$out"
  (
    stop=0
    trap 'stop=1' TERM
    peak_a=0 peak_h=0 n=0
    while [ "$stop" = 0 ] && [ -r "/proc/$pid/status" ]; do
      a='' h=''
      while read -r k v _; do
        case $k in RssAnon:) a=$v ;; VmHWM:) h=$v ;; esac
      done 2>/dev/null <"/proc/$pid/status" || true
      if [ -n "$a" ]; then
        n=$((n + 1))
        [ "$a" -gt "$peak_a" ] && peak_a=$a
        [ -n "$h" ] && [ "$h" -gt "$peak_h" ] && peak_h=$h
      fi
      sleep 0.1
    done
    echo "$peak_a $peak_h $n" >"$out"
  ) &
  BL_SAMPLER_PID=$!
}

bl_rss_sampler_stop() {  # sets BL_RSS="peak_rssanon_kib peak_vmhwm_kib samples"; not in $(...): it waits
  BL_RSS='n/a n/a 0'
  [ -n "$BL_SAMPLER_PID" ] || return 0
  kill -TERM "$BL_SAMPLER_PID" 2>/dev/null || true
  wait "$BL_SAMPLER_PID" 2>/dev/null || true
  BL_SAMPLER_PID=''
  if [ -s "$BL_SAMPLER_OUT" ]; then read -r BL_RSS <"$BL_SAMPLER_OUT"; fi
}

# ---------------------------------------------------------------- fio, caches, machine
bl_fio_json() {  # file rw(read|write) -> "iops p99_us max_us"
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
try:
    d = json.loads(text[text.index("{"):])
    job = d["jobs"][0][sys.argv[2]]
    clat = job["clat_ns"]
    p99 = (clat.get("percentile") or {}).get("99.000000")
    print("%.1f %s %.1f" % (job["iops"], "n/a" if p99 is None else "%.1f" % (p99 / 1000), clat["max"] / 1000))
except (ValueError, KeyError, IndexError):
    print("n/a n/a n/a")
EOF
}

bl_drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

bl_machine() {
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc $(nproc)," \
       "$(free -g | awk '/Mem:/ { print $2 }') GiB RAM, swap $(free -m | awk '/Swap:/ { print $2 }') MiB," \
       "kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
}
