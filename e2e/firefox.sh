#!/usr/bin/env bash
# The browser tests in a second engine: Debian's Firefox ESR, headless, driven over WebDriver
# BiDi by npm's puppeteer-core (e2e/firefox.mjs), against the built-in page of cmd/e2eserver.
#
#   ./e2e/firefox.sh                                # every scenario (about 50 s here)
#   ./e2e/firefox.sh --only flip,pause-detection    # some
#
# Firefox's ICE does not connect over 127.0.0.1 alone (even with media.peerconnection.ice.loopback),
# so the server and the browser run in two network namespaces of their own, joined by a veth
# pair: server 10.212.0.1/24, client 10.212.0.2/24. The page is served from the server's veth
# address, which is not a secure context: the pref dom.securecontext.allowlist names it, so the
# page may open the fake camera and microphone. Headless Firefox runs WebAudio only with an
# audio output, so a PulseAudio daemon with a null sink runs beside it (private socket).
#
# Installs firefox-esr and pulseaudio with apt when missing, and the npm dependencies
# (puppeteer-core) when missing. Exits non-zero if any scenario fails, with the server's log.
# Generated files go to e2e/out/firefox/ (git-ignored).
set -euo pipefail
source "$(dirname "$0")/common.sh"
FF_OUT=$OUT/firefox
mkdir -p "$FF_OUT"
export FIREFOX=${FIREFOX:-/usr/bin/firefox-esr}
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
# pause-detection runs on the Silero VAD (the library's default once the model is installed),
# as in run.sh.
if [ -z "${FASTRTC_SILERO_MODEL:-}" ]; then
  FASTRTC_SILERO_MODEL=$("$ROOT/scripts/silero.sh") && export FASTRTC_SILERO_MODEL
fi
echo "firefox.sh: building cmd/e2eserver"
(cd "$ROOT" && go build -o "$FF_OUT/e2eserver" ./cmd/e2eserver)

# --- namespaces, server, audio -------------------------------------------------------------
NS_SRV=fxsrv$$ NS_CLI=fxcli$$
VETH_SRV=fxs$$ VETH_CLI=fxc$$
SRV_IP=10.212.0.1 CLI_IP=10.212.0.2 PORT=8000
server_pid="" pa_pid="" run_dir="" node_pid=""
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null; then # interrupted: puppeteer closes Firefox
    for _ in $(seq 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # What is left in the client namespace is ours (Firefox if node died hard, pulseaudio).
  for pid in $server_pid $pa_pid $(ip netns pids "$NS_CLI" 2>/dev/null) $(ip netns pids "$NS_SRV" 2>/dev/null); do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in $server_pid $pa_pid $(ip netns pids "$NS_CLI" 2>/dev/null) $(ip netns pids "$NS_SRV" 2>/dev/null); do
    kill -9 "$pid" 2>/dev/null || true
  done
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true # the veth pair goes with them
  [ -n "$run_dir" ] && rm -rf "$run_dir" # PulseAudio socket, Firefox profiles (TMPDIR)
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$NS_SRV"
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
for _ in $(seq 300); do
  grep -q 'e2eserver listening' "$SERVER_LOG" && break
  kill -0 "$server_pid" 2>/dev/null || { echo "firefox.sh: e2eserver exited" >&2; cat "$SERVER_LOG" >&2; exit 1; }
  sleep 0.2
done
if ! grep -q 'e2eserver listening' "$SERVER_LOG"; then
  echo "firefox.sh: e2eserver did not start in 60 s; its goroutines:" >&2
  kill -QUIT "$server_pid" 2>/dev/null && sleep 1 # a Go process prints its stacks and exits
  tail -n 150 "$SERVER_LOG" >&2
  exit 1
fi

# PulseAudio with a null sink on a private socket: Firefox's WebAudio (the page's level
# meters, the tests' analysers) stays suspended without an audio output device.
run_dir=$(mktemp -d /tmp/fastrtc-firefox.XXXXXX)
pa_dir=$run_dir/pulse
mkdir -p "$pa_dir" "$run_dir/tmp"
HOME=$pa_dir XDG_RUNTIME_DIR=$pa_dir PULSE_RUNTIME_PATH=$pa_dir PULSE_STATE_PATH=$pa_dir \
  ip netns exec "$NS_CLI" pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no \
  --log-target="file:$pa_dir/pulse.log" --log-level=error \
  -L "module-null-sink sink_name=null rate=48000" -L "module-always-sink" \
  -L "module-native-protocol-unix socket=$pa_dir/native auth-anonymous=1" &
pa_pid=$!
for _ in $(seq 50); do [ -S "$pa_dir/native" ] && break; sleep 0.1; done
[ -S "$pa_dir/native" ] || { echo "firefox.sh: pulseaudio did not start" >&2; cat "$pa_dir/pulse.log" >&2; exit 1; }

# --- the suite --------------------------------------------------------------------------------
start=$(date +%s)
rc=0
# Hard bound on the whole run; firefox.mjs also bounds each scenario.
# In the background and waited for, so that a signal to this script runs the cleanup at once.
HOME=$pa_dir TMPDIR=$run_dir/tmp PULSE_SERVER="unix:$pa_dir/native" E2E_FF_BASE="http://$SRV_IP:$PORT" E2E_FF_OUT="$FF_OUT" \
  timeout -k 10 "${E2E_FF_TIMEOUT:-170}" ip netns exec "$NS_CLI" node "$E2E/firefox.mjs" "$@" &
node_pid=$!
wait "$node_pid" || rc=$?
node_pid=""
[ "$rc" -eq 124 ] && echo "firefox.sh: the suite did not finish within ${E2E_FF_TIMEOUT:-170} s" >&2
if [ "$rc" -ne 0 ]; then
  echo "---- server log ($SERVER_LOG, last 200 lines)"
  tail -n 200 "$SERVER_LOG"
  echo "----"
fi
echo "firefox.sh: finished in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
