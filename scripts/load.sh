#!/usr/bin/env bash
# Load benchmark on loopback: starts cmd/e2eserver, drives it with cmd/loadtest, prints the
# server's CPU and the returned frame rate, and stops the server it started (by PID).
# Usage: ./scripts/load.sh video 8 [extra e2eserver flags, e.g. -vp8speed -16]
#        ./scripts/load.sh audio-idle 50
#        ./scripts/load.sh voice 100     # turn latency; VAD=webrtc for the WebRTC VAD
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
kind="${1:-video}"; n="${2:-8}"; shift 2 || true
./scripts/deps.sh
tmp=$(mktemp -d)
go build -o "$tmp/e2eserver" ./cmd/e2eserver
go build -o "$tmp/loadtest" ./cmd/loadtest
if [ "$kind" = video ] && [ ! -f testdata/video/noisy640.ivf ]; then
  go test -run '^$' -bench VideoPath640 -benchtime 1x . >/dev/null   # makes the fixture (ffmpeg)
fi
server_kind=flip; case "$kind" in audio-idle|voice) server_kind=pause ;; esac
if [ "$kind" = voice ] && [ "${VAD:-silero}" = silero ] && [ -z "${FASTRTC_SILERO_MODEL:-}" ]; then
  FASTRTC_SILERO_MODEL=$(./scripts/silero.sh) && export FASTRTC_SILERO_MODEL
fi
[ "${VAD:-}" = webrtc ] && unset FASTRTC_SILERO_MODEL
. scripts/ports.sh
port=$(free_ports 1)
"$tmp/e2eserver" -kind "$server_kind" -addr "127.0.0.1:$port" "$@" >"$tmp/server.log" 2>&1 &
pid=$!
trap stop_server EXIT
wait_up "$pid" "http://127.0.0.1:$port/debug/stats"
"$tmp/loadtest" -url "http://127.0.0.1:$port" -pid "$pid" -n "$n" -kind "$kind" -duration "${DURATION:-10s}"
