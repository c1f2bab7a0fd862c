#!/usr/bin/env bash
# The server's video through bad links, as headless Chromium sees it (a measurement; a test
# with --assert). Per profile: scripts/netem.sh builds server | router (cmd/linkemu on a TUN)
# | client namespaces, cmd/e2eserver -kind flip runs in the server namespace on its veth
# address, and badlink.mjs drives Chromium in the client namespace (warm-up, then a measured
# window). Then a table of fps, frozen time, lag and resolution per profile, and
# e2e/out/badlink.json.
#
#   ./e2e/badlink.sh                                  # all seven profiles (~4 min)
#   ./e2e/badlink.sh --profiles loss5,1mbit --seconds 20 --warmup 8
#   ./e2e/badlink.sh --assert                         # exit 1 when a profile misses its targets
#   ./e2e/badlink.sh --floor                          # exit 1 below the regression floor (CI)
#   ./e2e/badlink.sh --server-args '-vp8speed 8'      # or E2E_SERVER_ARGS: flags for cmd/e2eserver
#   ./e2e/badlink.sh --switch-at 10                   # 4to600: seconds into the window (default half)
#   ./e2e/badlink.sh --hint detail                    # the canvas track's contentHint (default none)
#   E2E_SERVER_BIN=/tmp/e2eserver ./e2e/badlink.sh    # a server built elsewhere (e.g. another commit)
#
# Needs root (namespaces, TUN), ip, node, Chromium ($CHROMIUM, default /usr/bin/chromium), Go.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$ROOT/scripts/netem.sh"

PROFILES=perfect,loss5,jitter,1mbit,1mbit-down,500kbit,4to600
SECONDS_=20 WARMUP=8 SWITCH_AT= ASSERT= HINT=
SERVER_ARGS=${E2E_SERVER_ARGS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --profiles) PROFILES=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --switch-at) SWITCH_AT=$2; shift 2 ;;
    --server-args) SERVER_ARGS=$2; shift 2 ;;
    --hint) HINT=$2; shift 2 ;;
    --assert) ASSERT=--assert; shift ;;
    --floor) ASSERT=--floor; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "badlink: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$SWITCH_AT" ] || SWITCH_AT=$(awk "BEGIN{print $SECONDS_/2}")

for tool in go node; do
  command -v "$tool" >/dev/null || { echo "badlink: $tool not found" >&2; exit 1; }
done
[ -x "$CHROMIUM" ] || { echo "badlink: $CHROMIUM not found (apt-get install -y chromium)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "badlink: needs root (network namespaces, TUN)" >&2; exit 1; }
if [ ! -d "$E2E/node_modules/playwright-core" ]; then
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
fi
SERVER_BIN=${E2E_SERVER_BIN:-$OUT/e2eserver}
if [ -z "${E2E_SERVER_BIN:-}" ]; then
  echo "badlink: building cmd/e2eserver and cmd/linkemu"
  (cd "$ROOT" && go build -o "$OUT/e2eserver" ./cmd/e2eserver)
fi
(cd "$ROOT" && go build -o "$OUT/linkemu" ./cmd/linkemu)
export NETEM_LINKEMU=$OUT/linkemu
netem_deps

IFS=, read -r -a profiles <<<"$PROFILES"
echo "badlink: profiles ${profiles[*]}; ${WARMUP} s warm-up + ${SECONDS_} s measured each${SERVER_ARGS:+; server args: $SERVER_ARGS}"
started=$(date +%s)
for p in "${profiles[@]}"; do
  rm -f "$OUT/badlink-$p.json" "$OUT/badlink-$p-linkemu.json"
  netem_up "$p" || { echo "badlink: $p: could not build the link" >&2; continue; }
  slog=$OUT/badlink-$p-server.log
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
  netem_spawn server "$slog" "$SERVER_BIN" -kind flip -addr "$NETEM_SERVER_IP:8000" -loopback=false $SERVER_ARGS
  for _ in $(seq 100); do
    grep -q 'e2eserver listening' "$slog" 2>/dev/null && break
    kill -0 "$NETEM_LAST_PID" 2>/dev/null || break
    sleep 0.1
  done
  ok=1
  if ! grep -q 'e2eserver listening' "$slog"; then
    echo "badlink: $p: the server did not start" >&2; ok=0
  else
    switch=()
    [ "$p" = 4to600 ] && switch=(--switch-at "$SWITCH_AT")
    # A hard bound on the run (badlink.mjs has its own, shorter). In the background so that a
    # signal to this script runs its trap (netem_down stops it by PID) at once.
    timeout -k 10 $((WARMUP + SECONDS_ + 90)) ip netns exec "$NETEM_CLI" node "$E2E/badlink.mjs" run --profile "$p" \
      --server "http://$NETEM_SERVER_IP:8000" --seconds "$SECONDS_" --warmup "$WARMUP" "${switch[@]}" \
      --linkemu-pid "$NETEM_LINKEMU_PID" --hint "$HINT" --out "$OUT/badlink-$p.json" &
    NETEM_PIDS+=("$!")
    wait "$!" || ok=0
  fi
  netem_down
  cp "$NETEM_DIR/linkemu.json" "$OUT/badlink-$p-linkemu.json" 2>/dev/null || true
  if [ "$ok" = 0 ]; then
    echo "badlink: $p failed; linkemu: $(cat "$NETEM_DIR/linkemu.log" 2>/dev/null | tail -3)" >&2
    echo "---- server log ($slog), last 40 lines:" >&2
    tail -40 "$slog" >&2 || true
    echo "----" >&2
  fi
  rm -rf "$NETEM_DIR"
done
echo "badlink: $(($(date +%s) - started)) s for ${#profiles[@]} profile(s)"
node "$E2E/badlink.mjs" report --profiles "$PROFILES" $ASSERT
