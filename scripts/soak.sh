#!/usr/bin/env bash
# Memory and soak benchmark on loopback: starts cmd/e2eserver (flip and echo streams), runs
# cmd/soak against it (rounds of live 640x480 video and voice sessions with RSS after each,
# then connect/disconnect cycles of mixed sessions, checking goroutines, codec contexts, fds
# and RSS return), and stops the server it started (by PID). Bounded: cmd/soak gives up
# after -timeout (10 min).
# Usage: ./scripts/soak.sh [cmd/soak flags, e.g. -rounds 3 -cycles 200]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
./scripts/deps.sh --test
tmp=$(mktemp -d)
go build -o "$tmp/e2eserver" ./cmd/e2eserver
go build -o "$tmp/soak" ./cmd/soak
if [ ! -f testdata/video/noisy640.ivf ]; then
  go test -run '^$' -bench VideoPath640 -benchtime 1x . >/dev/null   # makes the fixture (ffmpeg)
fi
. scripts/ports.sh
port=$(free_ports 1)
env ${SERVER_ENV:-} "$tmp/e2eserver" -kind flip,echo -addr "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
pid=$!
trap stop_server EXIT
wait_up "$pid" "http://127.0.0.1:$port/debug/stats"
"$tmp/soak" -url "http://127.0.0.1:$port" -pid "$pid" "$@"
