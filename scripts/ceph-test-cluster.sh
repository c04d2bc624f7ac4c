#!/usr/bin/env bash
# A throw-away single-node Ceph cluster (one ceph-mon, one ceph-osd, no mgr)
# for the tests of the RADOS content store. Everything lives under DIR.
#
#   ceph-test-cluster.sh start DIR [POOL...] [--bluestore] [--owner PID]
#   ceph-test-cluster.sh stop DIR [--purge]
#   ceph-test-cluster.sh kill-osd DIR          kill -9 the OSD, wait until gone
#   ceph-test-cluster.sh start-osd DIR         start the OSD again on its data
#   ceph-test-cluster.sh create-pool DIR POOL...
#   ceph-test-cluster.sh status DIR            exit 0 if every pool answers
#
# start: DIR must be absent or empty. Writes DIR/ceph.conf (clients use
# `rados -c DIR/ceph.conf`, librados conf_read_file; cephx is on and the
# [client] section names the client.admin keyring), bootstraps the mon and
# the OSD (memstore by default), creates each POOL (default: chainswap;
# size 1, 8 PGs, application "rados") and waits, at most 60 s, until
# `rados -p POOL stat x` answers ENOENT. Prints only the line
# "ceph-test-cluster: up, conf DIR/ceph.conf"; on failure, the reason and the
# tails of the logs on stderr, and exits 1 (the daemons are stopped).
# The daemons run in the foreground (-f) in their own sessions (setsid),
# detached from the caller's terminal and pipes; pids in DIR/mon.pid and
# DIR/osd.pid, logs in DIR/log/, admin sockets in DIR/run/. --owner PID adds a
# watchdog that stops the cluster (and removes DIR unless CHAINSWAP_KEEP_CEPH=1)
# once PID is gone, so that a test killed by a timeout leaks no daemons.
#
# stop: OSD first (SIGTERM; it would wait 5 s for an absent mon), then the
# mon; SIGKILL after 20 s. Idempotent, fine on a half-started cluster, and
# leaves DIR (the logs) unless --purge is given.
#
# Ports: messenger v2 only, on 127.0.0.1. The mon takes the first port of
# 17100-17999 (starting at a random one) that no TCP socket of this network
# namespace uses (/proc/net/tcp, tcp6), under an flock on
# /tmp/ceph-test-cluster.lock held until the mon listens, so that clusters
# started at the same time never pick the same port. The OSD binds in
# Ceph's default range 6800-7300 (it tries the next port when one is taken).
#
# Object stores and times (2 cores, Ceph 16.2.15; start = until the pools
# answer, from the script's start):
#   memstore (default): start 1.1 s, stop 0.2-0.3 s. The objects live in the
#     OSD's memory only: the OSD saves nothing at kill -9, nor at SIGTERM
#     (osd_fast_shutdown skips memstore's save). A restarted memstore OSD
#     boots on the state of its mkfs and joins the cluster, but the pools'
#     PGs are gone: every op on them queues in the OSD ("queued for pg") and
#     clients get ETIMEDOUT after 10 s, forever. So start-osd refuses on
#     memstore; kill-osd works (a test of a dead OSD). Its size is 4 GiB
#     (`memstore device bytes`; the OSD calls itself full at 95 %).
#   --bluestore: start 4 s (most of it the OSD's mkfs), stop 0.3 s. BlueStore
#     on a sparse 20 GiB file DIR/osd.block (a few MB used; outside DIR/osd:
#     BlueStore refuses a block file inside its data directory). Everything
#     acknowledged survives kill-osd + start-osd (start-osd: 1.9 s until the
#     pools answer; a client connected across the restart gets answers again
#     about 2 s later).
# While the OSD is dead, ops fail with ETIMEDOUT after `rados osd op timeout`
# = 10 s: the mon never marks a lone OSD down (no peer reports it), so ops go
# to the dead address until they time out.
# Needs: ceph-mon, ceph-osd, ceph-common (scripts/install-deps.sh; the mon
# commands here use the python3-rados that ceph-common brings).
set -euo pipefail

PORT_MIN=17100 PORT_MAX=17999
LOCK=/tmp/ceph-test-cluster.lock
READY_TIMEOUT=60
PG_NUM=8

die() { echo "ceph-test-cluster: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 start DIR [POOL...] [--bluestore] [--owner PID] | stop DIR [--purge] |" \
    "kill-osd DIR | start-osd DIR | create-pool DIR POOL... | status DIR" >&2
  exit 2
}

# --- helpers ---------------------------------------------------------------
# The pid in DIR/NAME.pid if that process is alive and is our daemon (its
# command line names DIR/ceph.conf: a recycled pid is never ours).
live_pid() {
  local f=$DIR/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(<"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

# The process is gone, or a zombie (exited; its new parent reaps it later).
gone() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$st" ] || [ "$st" = Z ]
}

# Stops daemon NAME (mon or osd): SIGTERM (or the given signal), waits, SIGKILL after 20 s.
stop_daemon() {
  local name=$1 sig=${2:-TERM} pid i
  if pid=$(live_pid "$name"); then
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 400; i++)); do gone "$pid" && break; sleep 0.05; done
    if ! gone "$pid"; then
      kill -9 "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do gone "$pid" && break; sleep 0.05; done
    fi
  fi
  rm -f "$DIR/$name.pid"
}

# Starts a daemon in the foreground in its own session, stdio to DIR/log.
# fd 9 (the port lock) is closed for it. Returns once the child has exec'd
# (until then its command line is this script's, and live_pid would take it
# for a dead daemon) or is gone.
spawn() {
  local name=$1 pid i; shift
  setsid "$@" -f -c "$CONF" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$DIR/$name.pid"
  for ((i = 0; i < 500; i++)); do
    gone "$pid" && return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" && return 0
    sleep 0.01
  done
}

show_logs() {
  local f
  for f in "$DIR"/log/*; do
    [ -f "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# Fails with the logs' tails; a failed start also stops what it started.
STOP_ON_FAIL=0
fail() {
  echo "ceph-test-cluster: $*" >&2
  show_logs
  if [ $STOP_ON_FAIL = 1 ]; then cmd_stop; fi
  exit 1
}

# A port of the range no TCP socket uses (any state), starting at a random one.
free_port() {
  local n=$((PORT_MAX - PORT_MIN + 1)) off i port used
  used=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR > 1 {split($2, a, ":"); print a[2]}' | sort -u)
  off=$((RANDOM % n))
  for ((i = 0; i < n; i++)); do
    port=$((PORT_MIN + (off + i) % n))
    if ! grep -qx "$(printf '%04X' "$port")" <<<"$used"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

port_listening() {  # port: something accepts connections on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Mon commands, one JSON object an argument ("_input": the input buffer), in
# one client session: the ceph CLI takes about 0.4 s a command, this about
# 0.4 s for all of them. Prints each command's output buffer.
read -r -d '' MON_COMMANDS_PY <<'PY' || true
import json, sys, rados
c = rados.Rados(conffile=sys.argv[1], name='client.admin')
c.connect(timeout=30)
for arg in sys.argv[2:]:
    cmd = json.loads(arg)
    inbuf = cmd.pop('_input', '').encode()
    ret, outbuf, outs = c.mon_command(json.dumps(cmd), inbuf, timeout=30)
    if ret != 0:
        sys.exit('%s: error %d: %s' % (cmd['prefix'], ret, outs))
    sys.stdout.write(outbuf.decode())
c.shutdown()
PY
mon_commands() { timeout 90 /usr/bin/python3 -c "$MON_COMMANDS_PY" "$CONF" "$@"; }
pool_commands() {  # POOL... -> the JSON commands that create them
  local p
  for p in "$@"; do
    printf '{"prefix": "osd pool create", "pool": "%s", "pg_num": %d, "pgp_num": %d, "pool_type": "replicated"}\n' "$p" "$PG_NUM" "$PG_NUM"
    printf '{"prefix": "osd pool application enable", "pool": "%s", "app": "rados"}\n' "$p"
  done
}

# rados -p POOL stat x answers ENOENT: the pool is served.
pool_answers() {
  local out
  out=$(timeout 30 rados -c "$CONF" -p "$1" stat x 2>&1) && return 1
  grep -q 'No such file or directory' <<<"$out"
}

# Spawns the OSD and waits (10 s at most) until its log says it is active:
# a client that asks before the OSD is up waits about 1 s more for the next
# osdmap. Readiness itself is wait_pools's.
spawn_osd() {
  local log=$DIR/log/osd.0.log off=0 deadline=$((SECONDS + 10))
  [ -f "$log" ] && off=$(stat -c %s "$log")
  spawn osd ceph-osd -i 0
  until grep -q 'state: booting -> active' < <(tail -c +$((off + 1)) "$log" 2>/dev/null); do
    [ $SECONDS -lt $deadline ] || return 0
    live_pid osd >/dev/null || fail "the OSD exited"
    sleep 0.05
  done
}

wait_pools() {
  local deadline=$((SECONDS + READY_TIMEOUT)) p
  for p in "$@"; do
    until pool_answers "$p"; do
      [ $SECONDS -lt $deadline ] || fail "pool $p does not answer after ${READY_TIMEOUT} s"
      live_pid osd >/dev/null || fail "the OSD died"
      sleep 0.2
    done
  done
}

note_pools() {
  local p
  for p in "$@"; do
    grep -qx -- "$p" "$DIR/pools" 2>/dev/null || echo "$p" >>"$DIR/pools"
  done
}

write_conf() {  # fsid port objectstore
  cat >"$CONF" <<EOF
# Written by scripts/ceph-test-cluster.sh: a throw-away test cluster.
[global]
fsid = $1
mon host = [v2:127.0.0.1:$2]
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd crush initial weight = 1
paxos propose interval = 0.05
paxos min wait = 0.01
mon mgr mkfs grace = 31536000
osd class load list = *
osd class default list = *

[mon]
mon data = $DIR/mon
keyring = $DIR/mon/keyring

[osd]
osd data = $DIR/osd
keyring = $DIR/osd/keyring
osd objectstore = $3
# memstore's used-bytes count drifts under concurrent writes and removes
# with the default op sharding (the OSD then calls itself full).
osd op num shards = 1
osd op num threads per shard = 1
memstore device bytes = 4294967296
bluestore block path = $DIR/osd.block
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false

[client]
keyring = $DIR/client.admin.keyring
admin socket =
log file =
rados osd op timeout = 10
rados mon op timeout = 10
client mount timeout = 10
# An op unanswered for 2 s makes the client ask the mon for a newer osdmap
# (defaults 10 s, checked every 5 s): without this a client that saw the OSD
# before a restart keeps sending to its old address until the 10 s op
# timeout, and never recovers.
objecter timeout = 2
objecter tick interval = 1
EOF
}

watchdog() {  # owner pid
  local owner=$1 self=$0
  case $self in /*) ;; *) self=$PWD/$self ;; esac
  # shellcheck disable=SC2016  # expanded by the watchdog's bash
  setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2/ceph.conf" ]; do sleep 1; done
    if [ -f "$2/ceph.conf" ]; then
      if [ "${CHAINSWAP_KEEP_CEPH:-0}" = 1 ]; then exec bash "$3" stop "$2"; else exec bash "$3" stop "$2" --purge; fi
    fi' ceph-test-cluster-watchdog "$owner" "$DIR" "$self" </dev/null >/dev/null 2>&1 9>&- &
  echo $! >"$DIR/watchdog.pid"
}

# --- commands --------------------------------------------------------------
cmd_start() {
  local pools=() bluestore=0 owner='' store=memstore fsid port osd_uuid key i cmds
  while [ $# -gt 0 ]; do
    case $1 in
      --bluestore) bluestore=1 ;;
      --owner) [ $# -ge 2 ] || usage; owner=$2; shift ;;
      -*) usage ;;
      *) pools+=("$1") ;;
    esac
    shift
  done
  [ ${#pools[@]} -gt 0 ] || pools=(chainswap)
  [ $bluestore = 0 ] || store=bluestore
  STOP_ON_FAIL=1
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then die "$DIR is not empty"; fi
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd) CONF=$DIR/ceph.conf
  # an admin socket path longer than sun_path (108 bytes) cannot be bound
  [ ${#DIR} -le 70 ] || die "$DIR: path too long for the admin sockets (at most 70 characters)"
  mkdir -p "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR/crash"
  echo "$store" >"$DIR/objectstore"
  fsid=$(</proc/sys/kernel/random/uuid)
  osd_uuid=$(</proc/sys/kernel/random/uuid)

  # Keyrings: mon. and client.admin (imported into the mon's at mkfs).
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/client.admin.keyring" >/dev/null

  # The mon: pick a port and start it under the lock, until it listens.
  exec 9>>"$LOCK"
  flock -w 60 9 || fail "$LOCK is held by another start for 60 s"
  port=$(free_port) || fail "no free port in $PORT_MIN-$PORT_MAX"
  write_conf "$fsid" "$port" "$store"
  [ -z "$owner" ] || watchdog "$owner"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
    >>"$DIR/log/bootstrap.out" 2>&1 || fail "ceph-mon --mkfs failed"
  spawn mon ceph-mon -i a
  for ((i = 0; i < 300; i++)); do
    port_listening "$port" && break
    live_pid mon >/dev/null || fail "ceph-mon exited"
    sleep 0.05
  done
  port_listening "$port" || fail "ceph-mon does not listen on 127.0.0.1:$port after 15 s"
  exec 9>&-

  # The OSD registered with a cephx secret, and the pools, in one session;
  # then the OSD's mkfs and start.
  key=$(ceph-authtool --gen-print-key)
  mapfile -t cmds < <(pool_commands "${pools[@]}")
  i=$(mon_commands "$(printf '{"prefix": "osd new", "uuid": "%s", "_input": "{\\"cephx_secret\\": \\"%s\\"}"}' "$osd_uuid" "$key")" \
    "${cmds[@]}" 2>>"$DIR/log/bootstrap.out") || fail "the mon commands (osd new, pool create) failed"
  [ "$i" = 0 ] || fail "ceph osd new gave id '$i', not 0"
  note_pools "${pools[@]}"
  ceph-authtool --create-keyring "$DIR/osd/keyring" -n osd.0 --add-key "$key" >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/bootstrap.out" 2>&1 ||
    fail "ceph-osd --mkfs failed"
  spawn_osd
  wait_pools "${pools[@]}"
  echo "ceph-test-cluster: up, conf $CONF"
}

cmd_stop() {
  local purge=0
  while [ $# -gt 0 ]; do
    case $1 in --purge) purge=1 ;; *) usage ;; esac
    shift
  done
  [ -d "$DIR" ] || return 0
  DIR=$(cd "$DIR" && pwd) CONF=$DIR/ceph.conf
  stop_daemon osd
  stop_daemon mon
  # the watchdog (if any) sees ceph.conf go or its owner exit; stop it now
  if [ -f "$DIR/watchdog.pid" ]; then
    local w
    w=$(<"$DIR/watchdog.pid")
    if [ -n "$w" ] && [ "$w" != $$ ] && [ -r "/proc/$w/cmdline" ] &&
      tr '\0' ' ' <"/proc/$w/cmdline" | grep -qF -- "ceph-test-cluster-watchdog"; then
      kill "$w" 2>/dev/null || true
    fi
    rm -f "$DIR/watchdog.pid"
  fi
  if [ $purge = 1 ]; then rm -rf "$DIR"; fi
}

need_cluster() {
  [ -f "$DIR/ceph.conf" ] || die "$DIR has no ceph.conf: no cluster there"
  DIR=$(cd "$DIR" && pwd) CONF=$DIR/ceph.conf
}

cmd_kill_osd() {
  need_cluster
  stop_daemon osd KILL
}

cmd_start_osd() {
  need_cluster
  local p
  live_pid osd >/dev/null && die "the OSD is running"
  live_pid mon >/dev/null || die "the mon is not running"
  if [ "$(<"$DIR/objectstore")" = memstore ]; then
    die "memstore keeps nothing across an OSD restart: the PGs would be gone and every op on the pools would hang; start the cluster with --bluestore to restart its OSD"
  fi
  spawn_osd
  mapfile -t p <"$DIR/pools"
  wait_pools "${p[@]}"
}

cmd_create_pool() {
  need_cluster
  [ $# -gt 0 ] || usage
  local cmds
  mapfile -t cmds < <(pool_commands "$@")
  mon_commands "${cmds[@]}" >/dev/null || die "pool create failed"
  note_pools "$@"
  wait_pools "$@"
}

cmd_status() {
  need_cluster
  local p
  [ -s "$DIR/pools" ] || return 1
  while IFS= read -r p; do
    pool_answers "$p" || return 1
  done <"$DIR/pools"
}

[ $# -ge 2 ] || usage
cmd=$1 DIR=$2
shift 2
CONF=$DIR/ceph.conf
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill-osd) [ $# = 0 ] || usage; cmd_kill_osd ;;
  start-osd) [ $# = 0 ] || usage; cmd_start_osd ;;
  create-pool) cmd_create_pool "$@" ;;
  status) [ $# = 0 ] || usage; cmd_status ;;
  *) usage ;;
esac
