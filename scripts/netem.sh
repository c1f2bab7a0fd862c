#!/usr/bin/env bash
# A bad network link between two network namespaces, on a kernel without netem: three
# namespaces (server, router, client) joined by two veth pairs; the router policy-routes
# everything it forwards into a TUN device, where cmd/linkemu holds each packet (delay,
# jitter, loss, a rate with a bounded queue, per direction) before writing it back.
#
#   server 10.211.1.2 --veth-- 10.211.1.1 router 10.211.2.1 --veth-- 10.211.2.2 client
#                                        (TUN emu0 + linkemu)
#
# Run it:
#   scripts/netem.sh check [PROFILE...]     # ping and TCP throughput through each profile
#                                           # (default: all seven), to see that they apply
#   scripts/netem.sh run PROFILE [-- CMD...] # build the link, run CMD on the host with
#                                           # NETEM_* exported (default: an interactive shell)
# Or source it:
#   source scripts/netem.sh
#   netem_up PROFILE [linkemu flags...]  # sets NETEM_SRV, NETEM_RTR, NETEM_CLI (namespace
#                                        # names), NETEM_SERVER_IP, NETEM_CLIENT_IP,
#                                        # NETEM_LINKEMU_PID, NETEM_DIR
#   netem_server CMD... ; netem_client CMD... ; netem_router CMD...   # run in a namespace
#   netem_spawn server|client LOG CMD...  # the same in the background; PID in NETEM_LAST_PID,
#                                         # stopped by netem_down
#   netem_mark ; netem_switch             # SIGUSR2 (counter snapshot) / SIGUSR1 (next step)
#   netem_down                            # stop what it started (by PID), delete the
#                                         # namespaces; linkemu's counters: $NETEM_DIR/linkemu.json
# netem_up sets an EXIT/INT/TERM trap that runs netem_down and removes $NETEM_DIR (a caller
# with its own trap calls netem_down from it); netem_down clears it. Namespace names carry $$ and a counter, so parallel runs don't clash.
# Needs root, ip (iproute2: installed with apt-get when missing), /dev/net/tun, and Go to
# build cmd/linkemu (or NETEM_LINKEMU=/path/to/linkemu).

NETEM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETEM_SERVER_IP=10.211.1.2
NETEM_CLIENT_IP=10.211.2.2
NETEM_SEQ=${NETEM_SEQ:-0}
NETEM_PIDS=()
NETEM_NAMES=()

netem_log() { echo "netem: $*" >&2; }

# netem_deps installs iproute2 when ip is missing and builds linkemu once per shell.
netem_deps() {
  command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
  if ! command -v ip >/dev/null; then
    netem_log "installing iproute2"
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 >/dev/null
  fi
  [ "$(id -u)" -eq 0 ] || { netem_log "needs root (network namespaces, TUN)"; return 1; }
  [ -c /dev/net/tun ] || { netem_log "no /dev/net/tun"; return 1; }
  if [ -z "${NETEM_LINKEMU:-}" ]; then
    NETEM_BUILD=${NETEM_BUILD:-$(mktemp -d /tmp/netem-build.XXXXXX)}
    (cd "$NETEM_ROOT" && go build -o "$NETEM_BUILD/linkemu" ./cmd/linkemu) || return 1
    NETEM_LINKEMU=$NETEM_BUILD/linkemu
  fi
}

# netem_up PROFILE [linkemu flags...]: builds the namespaces and starts linkemu.
netem_up() {
  local profile=${1:?netem_up PROFILE}; shift
  [ -z "${NETEM_RTR:-}" ] || { netem_log "already up ($NETEM_RTR); netem_down first"; return 1; }
  netem_deps || return 1
  NETEM_SEQ=$((NETEM_SEQ + 1))
  local id="$$-$NETEM_SEQ"
  NETEM_SRV="netem-$id-srv" NETEM_RTR="netem-$id-rtr" NETEM_CLI="netem-$id-cli"
  NETEM_DIR=$(mktemp -d "/tmp/netem-$id.XXXXXX")
  # Torn down by a signal or an exit: nothing is left, not even linkemu's output.
  trap 'netem_down; rm -rf "$NETEM_DIR"' EXIT
  trap 'netem_down; rm -rf "$NETEM_DIR"; trap - INT; kill -INT $$' INT
  trap 'netem_down; rm -rf "$NETEM_DIR"; trap - TERM; kill -TERM $$' TERM
  local ns
  for ns in "$NETEM_SRV" "$NETEM_RTR" "$NETEM_CLI"; do
    ip netns add "$ns" || { netem_down; return 1; }
    NETEM_NAMES+=("$ns")
    ip -n "$ns" link set lo up
    # IPv4 only: no link-local IPv6 candidates or router solicitations in the way.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  # Interface names live in their namespace (created there directly): no clash between runs.
  {
    ip link add srv0 netns "$NETEM_SRV" type veth peer name rs0 netns "$NETEM_RTR" &&
      ip link add cli0 netns "$NETEM_CLI" type veth peer name rc0 netns "$NETEM_RTR" &&
      ip -n "$NETEM_SRV" addr add "$NETEM_SERVER_IP/24" dev srv0 &&
      ip -n "$NETEM_RTR" addr add 10.211.1.1/24 dev rs0 &&
      ip -n "$NETEM_RTR" addr add 10.211.2.1/24 dev rc0 &&
      ip -n "$NETEM_CLI" addr add "$NETEM_CLIENT_IP/24" dev cli0 &&
      ip -n "$NETEM_SRV" link set srv0 up && ip -n "$NETEM_RTR" link set rs0 up &&
      ip -n "$NETEM_RTR" link set rc0 up && ip -n "$NETEM_CLI" link set cli0 up &&
      ip -n "$NETEM_SRV" route add default via 10.211.1.1 &&
      ip -n "$NETEM_CLI" route add default via 10.211.2.1 &&
      ip netns exec "$NETEM_RTR" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.rs0.rp_filter=0 net.ipv4.conf.rc0.rp_filter=0 &&
      # The TUN (persistent, so that routes can point at it before linkemu attaches).
      ip -n "$NETEM_RTR" tuntap add dev emu0 mode tun &&
      ip -n "$NETEM_RTR" link set emu0 txqueuelen 10000 up &&
      ip netns exec "$NETEM_RTR" sysctl -qw net.ipv4.conf.emu0.rp_filter=0 &&
      # Everything that comes in on a veth goes to the TUN; what linkemu writes back comes in
      # on the TUN and takes the main table to the other veth.
      ip -n "$NETEM_RTR" route add default dev emu0 table 100 &&
      ip -n "$NETEM_RTR" rule add iif rs0 lookup 100 &&
      ip -n "$NETEM_RTR" rule add iif rc0 lookup 100
  } || { netem_log "setting up the namespaces failed"; netem_down; return 1; }
  ip netns exec "$NETEM_RTR" "$NETEM_LINKEMU" -tun emu0 -down 10.211.2.0/24 -up 10.211.1.0/24 \
    -profile "$profile" "$@" >"$NETEM_DIR/linkemu.json" 2>"$NETEM_DIR/linkemu.log" &
  NETEM_LINKEMU_PID=$!
  local i
  for i in $(seq 100); do
    grep -q 'linkemu: running' "$NETEM_DIR/linkemu.log" 2>/dev/null && break
    if ! kill -0 "$NETEM_LINKEMU_PID" 2>/dev/null; then
      netem_log "linkemu exited: $(cat "$NETEM_DIR/linkemu.log")"; netem_down; return 1
    fi
    sleep 0.1
  done
  grep -q 'linkemu: running' "$NETEM_DIR/linkemu.log" || { netem_log "linkemu did not start"; netem_down; return 1; }
  export NETEM_SRV NETEM_RTR NETEM_CLI NETEM_SERVER_IP NETEM_CLIENT_IP NETEM_LINKEMU_PID NETEM_DIR
  netem_log "$(sed -n 's/^linkemu: running on emu0, //p' "$NETEM_DIR/linkemu.log") ($NETEM_SRV / $NETEM_RTR / $NETEM_CLI)"
}

netem_server() { ip netns exec "$NETEM_SRV" "$@"; }
netem_client() { ip netns exec "$NETEM_CLI" "$@"; }
netem_router() { ip netns exec "$NETEM_RTR" "$@"; }

# netem_spawn server|client|router LOG CMD...: runs CMD in the background in that namespace,
# output to LOG; its PID in NETEM_LAST_PID; netem_down stops it.
netem_spawn() {
  local role=$1 log=$2 ns; shift 2
  case $role in server) ns=$NETEM_SRV ;; client) ns=$NETEM_CLI ;; router) ns=$NETEM_RTR ;; *) return 2 ;; esac
  ip netns exec "$ns" "$@" >"$log" 2>&1 &
  NETEM_LAST_PID=$!
  NETEM_PIDS+=("$NETEM_LAST_PID")
}

netem_mark() { if [ -n "${NETEM_LINKEMU_PID:-}" ]; then kill -USR2 "$NETEM_LINKEMU_PID"; fi; }
netem_switch() { if [ -n "${NETEM_LINKEMU_PID:-}" ]; then kill -USR1 "$NETEM_LINKEMU_PID"; fi; }

# netem_stop_pid PID: SIGTERM, then SIGKILL after 5 s; reaps it. Safe under set -e (these
# run from traps of scripts that set it).
netem_stop_pid() {
  local pid=$1 i
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
}

# netem_down: stops the processes it started (by PID) and deletes the namespaces. Idempotent.
netem_down() {
  local pid ns
  for pid in "${NETEM_PIDS[@]}"; do netem_stop_pid "$pid"; done
  NETEM_PIDS=()
  if [ -n "${NETEM_LINKEMU_PID:-}" ]; then
    netem_stop_pid "$NETEM_LINKEMU_PID"
    NETEM_LINKEMU_PID=
  fi
  for ns in "${NETEM_NAMES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NETEM_NAMES=()
  NETEM_SRV= NETEM_RTR= NETEM_CLI=
  trap - EXIT INT TERM
  return 0
}

# netem_ping [COUNT]: "rtt_avg_ms mdev_ms loss_pct" of pings from the client to the server.
netem_ping() {
  local out
  out=$(netem_client ping -n -q -c "${1:-100}" -i 0.02 -W 2 "$NETEM_SERVER_IP" 2>&1)
  local loss rtt avg mdev
  loss=$(grep -o '[0-9.]*% packet loss' <<<"$out" | cut -d% -f1)
  # rtt min/avg/max/mdev = 40.1/40.8/44.0/0.5 ms
  rtt=$(grep -o 'min/avg/max/mdev = [0-9./]*' <<<"$out" | cut -d' ' -f3)
  avg=$(cut -d/ -f2 <<<"$rtt")
  mdev=$(cut -d/ -f4 <<<"$rtt")
  echo "${avg:--} ${mdev:--} ${loss:--}"
}

# netem_tcp down|up SECONDS: TCP goodput (kbit/s, over the second half) from the server to
# the client (down) or back (up), with node.
netem_tcp() {
  local dir=$1 secs=${2:-6} port=5201 srcrole dstip
  local sender='const s=require("net").createServer(c=>{const b=Buffer.alloc(16384);const w=()=>{while(c.write(b));};c.on("drain",w);c.on("error",()=>{});w();});s.listen(+process.argv[2],process.argv[1]);setTimeout(()=>process.exit(0),(+process.argv[3]+5)*1000);'
  local receiver='const [h,p,t]=[process.argv[1],+process.argv[2],+process.argv[3]];let n=0,n0=0,t0=0;const c=require("net").connect(p,h);const st=Date.now();c.on("data",d=>{n+=d.length;});setTimeout(()=>{n0=n;t0=Date.now();},t*500);setTimeout(()=>{console.log(Math.round((n-n0)*8/(Date.now()-t0)));c.destroy();process.exit(0);},t*1000);c.on("error",e=>{console.log("-");process.exit(0);});'
  if [ "$dir" = down ]; then srcrole=server dstip=$NETEM_SERVER_IP; else srcrole=client dstip=$NETEM_CLIENT_IP; fi
  netem_spawn "$srcrole" "$NETEM_DIR/tcp-$dir.log" node -e "$sender" "$dstip" "$port" "$secs"
  local spid=$NETEM_LAST_PID
  sleep 0.5
  if [ "$dir" = down ]; then netem_client node -e "$receiver" "$dstip" "$port" "$secs"; else netem_server node -e "$receiver" "$dstip" "$port" "$secs"; fi
  netem_stop_pid "$spid"
}

netem_check() {
  local profiles=("$@") p
  [ ${#profiles[@]} -gt 0 ] || profiles=(perfect loss5 jitter 1mbit 1mbit-down 500kbit 4to600)
  printf '%-11s %9s %9s %7s %12s %12s\n' profile "rtt ms" "mdev ms" "loss %" "down kbit/s" "up kbit/s"
  for p in "${profiles[@]}"; do
    netem_up "$p" || return 1
    local ping down up
    ping=$(netem_ping 100)
    down=$(netem_tcp down 6)
    up=$(netem_tcp up 6)
    # shellcheck disable=SC2086
    printf '%-11s %9s %9s %7s %12s %12s\n' "$p" $ping "$down" "$up"
    netem_down
    sed 's/^/    linkemu: /' "$NETEM_DIR/linkemu.json" | cut -c1-400
    rm -rf "$NETEM_DIR"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  # The linkemu this run builds goes with it.
  if [ -z "${NETEM_LINKEMU:-}" ]; then
    NETEM_BUILD=$(mktemp -d /tmp/netem-build.XXXXXX)
    netem_cleanup_build() { rm -rf "$NETEM_BUILD"; }
  else
    netem_cleanup_build() { :; }
  fi
  cmd=${1:-check}; shift || true
  case $cmd in
    check) netem_check "$@"; rc=$?; netem_cleanup_build; exit $rc ;;
    run)
      profile=${1:?run PROFILE [-- CMD...]}; shift
      [ "${1:-}" = -- ] && shift
      netem_up "$profile" || exit 1
      if [ $# -eq 0 ]; then
        echo "netem: server ns $NETEM_SRV ($NETEM_SERVER_IP), client ns $NETEM_CLI ($NETEM_CLIENT_IP); exit the shell to tear down" >&2
        bash -i
      else
        "$@"
      fi
      rc=$?
      netem_down
      echo "netem: linkemu counters: $(cat "$NETEM_DIR/linkemu.json")" >&2
      rm -rf "$NETEM_DIR"
      netem_cleanup_build
      exit $rc
      ;;
    *) echo "usage: $0 check [PROFILE...] | run PROFILE [-- CMD...]" >&2; exit 2 ;;
  esac
fi
