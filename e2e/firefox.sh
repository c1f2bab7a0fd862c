#!/usr/bin/env bash
# The browser tests in a second engine: Debian's Firefox ESR, headless, driven over WebDriver
# BiDi by npm's puppeteer-core (e2e/firefox.mjs), against the built-in page of cmd/e2eserver.
#
#   ./e2e/firefox.sh                                # every scenario (about 85 s here)
#   ./e2e/firefox.sh --only flip,pause-detection    # some
#   ./e2e/firefox.sh --only flip-loss5              # the lossy link only (~40 s)
#
# Two passes. First the scenarios on a plain link: Firefox's ICE does not connect over
# 127.0.0.1 alone (even with media.peerconnection.ice.loopback), so the server and the browser
# run in two network namespaces of their own, joined by a veth pair: server 10.212.0.1/24,
# client 10.212.0.2/24. The page is served from the server's veth address, which is not a
# secure context: the pref dom.securecontext.allowlist names it, so the page may open the fake
# camera and microphone. Headless Firefox runs WebAudio only with an audio output, so a
# PulseAudio daemon with a null sink runs beside it (private socket).
# Then the scenarios through an emulated link (flip-loss5: scripts/netem.sh's loss5, 20 ms
# and 5% loss each way through cmd/linkemu), one link at a time: server namespace 10.211.1.2,
# router, client namespace 10.211.2.2; a cmd/e2eserver -kind flip of its own.
#
# Installs firefox-esr and pulseaudio with apt when missing, and the npm dependencies
# (puppeteer-core) when missing. Exits non-zero if any scenario fails, with the server's log.
# Generated files go to e2e/out/firefox/ (git-ignored): screenshots, server logs,
# flip-loss5.json (the lossy run's raw figures), loss5-linkemu.json (the link's counters).
# E2E_FF_LINK_WARMUP / E2E_FF_LINK_SECONDS: the lossy scenario's warm-up and window (8, 20);
# E2E_FF_LINKS=perfect,jitter,...: flip-<profile> through more of netem.sh's profiles
# (measured and printed, not asserted; name them in --only or run them all).
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$ROOT/scripts/netem.sh"
FF_OUT=$OUT/firefox
mkdir -p "$FF_OUT"
export FIREFOX=${FIREFOX:-/usr/bin/firefox-esr}

ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --only) ONLY=${2:?--only name,name}; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "firefox.sh: unknown argument $1 (--only name,name)" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -eq 0 ] || { echo "firefox.sh: needs root (network namespaces, veth)" >&2; exit 1; }
for tool in go node npm ip timeout; do
  command -v "$tool" >/dev/null || { echo "firefox.sh: $tool not found" >&2; exit 1; }
done

# --- dependencies ------------------------------------------------------------------------
apt_install() { # packages...: waits for another apt to finish; updates the lists once if needed
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" ||
    { apt-get -o DPkg::Lock::Timeout=300 update -q && apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@"; }
}
need=()
if [ ! -x "$FIREFOX" ]; then
  [ "$FIREFOX" = /usr/bin/firefox-esr ] || { echo "firefox.sh: $FIREFOX not found" >&2; exit 1; }
  need+=(firefox-esr)
fi
command -v pulseaudio >/dev/null || need+=(pulseaudio)
if [ ${#need[@]} -gt 0 ]; then
  echo "firefox.sh: installing ${need[*]}"
  apt_install "${need[@]}" >"$FF_OUT/apt.log" 2>&1 || { tail -20 "$FF_OUT/apt.log" >&2; exit 1; }
fi
if [ ! -d "$E2E/node_modules/puppeteer-core" ]; then
  echo "firefox.sh: installing npm dependencies"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The scenarios to run, by link ("name link" lines; link - for none). Exits on an unknown name.
listing=$(node "$E2E/firefox.mjs" --list ${ONLY:+--only "$ONLY"})
plain=$(awk '$2 == "-" { printf "%s%s", sep, $1; sep = "," }' <<<"$listing")
link_profiles=$(awk '$2 != "-" { print $2 }' <<<"$listing" | awk '!seen[$0]++')
[ -n "$plain$link_profiles" ] || { echo "firefox.sh: no scenario selected" >&2; exit 2; }

# pause-detection runs on the Silero VAD (the library's default once the model is installed),
# as in run.sh.
if [[ ",$plain," == *,pause-detection,* ]] && [ -z "${FASTRTC_SILERO_MODEL:-}" ]; then
  FASTRTC_SILERO_MODEL=$("$ROOT/scripts/silero.sh") && export FASTRTC_SILERO_MODEL
fi
echo "firefox.sh: building cmd/e2eserver${link_profiles:+ and cmd/linkemu}"
(cd "$ROOT" && go build -o "$FF_OUT/e2eserver" ./cmd/e2eserver)
if [ -n "$link_profiles" ]; then
  (cd "$ROOT" && go build -o "$FF_OUT/linkemu" ./cmd/linkemu)
  export NETEM_LINKEMU=$FF_OUT/linkemu
fi

# --- teardown ------------------------------------------------------------------------------
NS_SRV=fxsrv$$ NS_CLI=fxcli$$
VETH_SRV=fxs$$ VETH_CLI=fxc$$
SRV_IP=10.212.0.1 CLI_IP=10.212.0.2 PORT=8000
server_pid="" pa_pid="" node_pid="" plain_ns=""
run_dir=$(mktemp -d /tmp/fastrtc-firefox.XXXXXX) # PulseAudio sockets, Firefox profiles (TMPDIR)
RESULTS=$run_dir/results.jsonl
: >"$RESULTS"

stop_node() { # interrupted: puppeteer closes Firefox
  if [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  node_pid=""
}
kill_pids() { # pids...: TERM, then KILL what is left
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  [ $# -gt 0 ] && sleep 0.3
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}
# plain_down stops the first pass's server and PulseAudio and deletes its namespaces (what is
# left in them is ours: Firefox if node died hard).
plain_down() {
  [ -n "$plain_ns" ] || return 0
  # shellcheck disable=SC2046
  kill_pids $server_pid $pa_pid $(ip netns pids "$NS_CLI" 2>/dev/null) $(ip netns pids "$NS_SRV" 2>/dev/null)
  server_pid="" pa_pid=""
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true # the veth pair goes with them
  plain_ns=""
}
# link_down stops the link pass's PulseAudio and Firefox, then netem_down the rest (the
# server, linkemu, the namespaces); linkemu's counters stay in $NETEM_DIR/linkemu.json.
link_down() {
  [ -n "${NETEM_RTR:-}" ] || return 0
  # shellcheck disable=SC2046
  kill_pids $pa_pid $(ip netns pids "$NETEM_CLI" 2>/dev/null)
  pa_pid=""
  netem_down
  set_traps # netem_down clears the traps
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_node
  plain_down
  if [ -n "${NETEM_RTR:-}" ]; then
    # shellcheck disable=SC2046
    kill_pids $pa_pid $(ip netns pids "$NETEM_CLI" 2>/dev/null)
    netem_down
  fi
  [ -n "${NETEM_DIR:-}" ] && rm -rf "$NETEM_DIR"
  rm -rf "$run_dir"
  exit "$rc"
}
set_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
set_traps

# --- helpers ---------------------------------------------------------------------------------
# wait_server PID LOG: until the e2eserver says it listens (60 s).
wait_server() {
  local pid=$1 log=$2
  for _ in $(seq 300); do
    grep -q 'e2eserver listening' "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "firefox.sh: e2eserver exited" >&2; cat "$log" >&2; return 1; }
    sleep 0.2
  done
  echo "firefox.sh: e2eserver did not start in 60 s; its goroutines:" >&2
  kill -QUIT "$pid" 2>/dev/null && sleep 1 # a Go process prints its stacks and exits
  tail -n 150 "$log" >&2
  return 1
}

# start_pulse NS: PulseAudio with a null sink on a private socket in that namespace: Firefox's
# WebAudio (the page's level meters, the tests' analysers) stays suspended without an audio
# output device. Sets pa_dir, pa_pid.
start_pulse() {
  pa_dir=$run_dir/pulse-$1
  mkdir -p "$pa_dir" "$run_dir/tmp"
  HOME=$pa_dir XDG_RUNTIME_DIR=$pa_dir PULSE_RUNTIME_PATH=$pa_dir PULSE_STATE_PATH=$pa_dir \
    ip netns exec "$1" pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no \
    --log-target="file:$pa_dir/pulse.log" --log-level=error \
    -L "module-null-sink sink_name=null rate=48000" -L "module-always-sink" \
    -L "module-native-protocol-unix socket=$pa_dir/native auth-anonymous=1" &
  pa_pid=$!
  for _ in $(seq 50); do [ -S "$pa_dir/native" ] && return 0; sleep 0.1; done
  echo "firefox.sh: pulseaudio did not start" >&2
  cat "$pa_dir/pulse.log" >&2
  return 1
}

# run_suite NS TIMEOUT SERVER_LOG firefox.mjs-args...: firefox.mjs in that namespace (in the
# background and waited for, so that a signal to this script runs the cleanup at once).
# Returns its exit status; on failure prints the server's log.
run_suite() {
  local ns=$1 limit=$2 slog=$3 rc=0
  shift 3
  HOME=$pa_dir TMPDIR=$run_dir/tmp PULSE_SERVER="unix:$pa_dir/native" E2E_FF_OUT="$FF_OUT" E2E_FF_RESULTS="$RESULTS" \
    timeout -k 10 "$limit" ip netns exec "$ns" node "$E2E/firefox.mjs" "$@" &
  node_pid=$!
  wait "$node_pid" || rc=$?
  node_pid=""
  [ "$rc" -eq 124 ] && echo "firefox.sh: the pass did not finish within $limit s" >&2
  if [ "$rc" -ne 0 ]; then
    echo "---- server log ($slog, last 200 lines)"
    tail -n 200 "$slog"
    echo "----"
  fi
  return "$rc"
}

start=$(date +%s)
rm -f "$FF_OUT"/fail-*.png
rc=0

# --- pass 1: a plain link (veth) ------------------------------------------------------------
if [ -n "$plain" ]; then
  ip netns add "$NS_SRV"
  plain_ns=1
  ip netns add "$NS_CLI"
  ip link add "$VETH_SRV" type veth peer name "$VETH_CLI"
  ip link set "$VETH_SRV" netns "$NS_SRV"
  ip link set "$VETH_CLI" netns "$NS_CLI"
  ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "$VETH_SRV"
  ip -n "$NS_CLI" addr add "$CLI_IP/24" dev "$VETH_CLI"
  for ns in "$NS_SRV" "$NS_CLI"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_SRV" link set "$VETH_SRV" up
  ip -n "$NS_CLI" link set "$VETH_CLI" up

  # The server gathers its candidates on every interface of its namespace (-loopback=false):
  # lo and the veth address.
  SERVER_LOG=$FF_OUT/server.log
  : >"$SERVER_LOG" # now, not in the background job: the wait below must not read the last run's log
  ip netns exec "$NS_SRV" "$FF_OUT/e2eserver" -kind flip,echo,pause -addr "$SRV_IP:$PORT" -loopback=false \
    $([ -n "${E2E_VERBOSE:-}" ] && echo -v) >>"$SERVER_LOG" 2>&1 &
  server_pid=$!
  wait_server "$server_pid" "$SERVER_LOG" || exit 1
  start_pulse "$NS_CLI" || exit 1
  # Hard bound on the pass; firefox.mjs also bounds each scenario.
  E2E_FF_BASE="http://$SRV_IP:$PORT" run_suite "$NS_CLI" "${E2E_FF_TIMEOUT:-170}" "$SERVER_LOG" --only "$plain" || rc=$?
  plain_down
fi

# --- pass 2: through emulated links, one at a time -------------------------------------------
for profile in $link_profiles; do
  names=$(awk -v p="$profile" '$2 == p { printf "%s%s", sep, $1; sep = "," }' <<<"$listing")
  slog=$FF_OUT/server-$profile.log
  : >"$slog"
  netem_up "$profile" || { echo "firefox.sh: could not build the link $profile" >&2; rc=1; continue; }
  set_traps # netem_up sets its own
  netem_spawn server "$slog" "$FF_OUT/e2eserver" -kind flip -addr "$NETEM_SERVER_IP:$PORT" -loopback=false \
    $([ -n "${E2E_VERBOSE:-}" ] && echo -v)
  prc=0
  if wait_server "$NETEM_LAST_PID" "$slog" && start_pulse "$NETEM_CLI"; then
    warm=${E2E_FF_LINK_WARMUP:-8} win=${E2E_FF_LINK_SECONDS:-20}
    E2E_FF_BASE="http://$NETEM_SERVER_IP:$PORT" E2E_FF_LINKEMU_PID=$NETEM_LINKEMU_PID \
      run_suite "$NETEM_CLI" $((warm + win + 80)) "$slog" --link "$profile" --only "$names" || prc=$?
  else
    prc=1
  fi
  link_down
  # The link's own counts over the measured window (linkemu's two marks), or its whole life.
  cp "$NETEM_DIR/linkemu.json" "$FF_OUT/$profile-linkemu.json" 2>/dev/null || true
  node -e '
    const lk = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").pop());
    const m = lk.marks || [], w = m.length >= 2;
    const c = (k) => { const x = w ? m[m.length - 1][k] : lk[k], y = w ? m[0][k] : {};
      return `${x.in - (y.in || 0)} in, ${x.dropped_loss - (y.dropped_loss || 0)} lost, ${x.dropped_queue - (y.dropped_queue || 0)} queue-dropped`; };
    console.log(`firefox.sh: link ${process.argv[2]} (${w ? "measured window" : "whole run"}): toward Firefox ${c("down")}; toward the server ${c("up")}`);
  ' "$FF_OUT/$profile-linkemu.json" "$profile" 2>/dev/null || true
  rm -rf "$NETEM_DIR"
  NETEM_DIR=""
  [ "$prc" -eq 0 ] || rc=$prc
done

# One table over both passes.
if [ -n "$plain" ] && [ -n "$link_profiles" ]; then
  node "$E2E/firefox.mjs" --summary "$RESULTS" || [ "$rc" -ne 0 ] || rc=1
fi
echo "firefox.sh: finished in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
