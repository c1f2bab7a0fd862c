#!/usr/bin/env bash
# The Go client (package client) through each bad-link profile: cmd/linkprobe in the client
# namespace against cmd/e2eserver -kind flip in the server namespace, through cmd/linkemu
# (scripts/netem.sh). Prints one line of figures per profile: received fps, frozen s, lag
# p50/p95 (send to reply), height, and the client's own sender (estimate, size, target).
#
#   ./scripts/badlink-go.sh [--profiles a,b] [--seconds 20] [--warmup 8] [--floor]
# --floor exits 1 when a profile falls below the floor CI holds (see e2e/badlink.mjs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${E2E_OUT:-$ROOT/e2e/out}
mkdir -p "$OUT"
PROFILES=perfect,loss5,jitter,1mbit,1mbit-down,500kbit,4to600 SECS=20 WARMUP=8 FLOOR=0
while [ $# -gt 0 ]; do
  case $1 in
    --profiles) PROFILES=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --floor) FLOOR=1; shift ;;
    *) echo "badlink-go: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "badlink-go: needs root (network namespaces, TUN)" >&2; exit 1; }
# shellcheck source=scripts/netem.sh
source "$ROOT/scripts/netem.sh"
(cd "$ROOT" && go build -o "$OUT/e2eserver" ./cmd/e2eserver && go build -o "$OUT/linkemu" ./cmd/linkemu && go build -o "$OUT/linkprobe" ./cmd/linkprobe)
export NETEM_LINKEMU=$OUT/linkemu
netem_deps
IFS=, read -r -a profiles <<<"$PROFILES"
fail=0
printf '| profile | fps | frozen s | lag p50 ms | lag p95 ms | height | client sends (size, fps, target/estimate kbit/s) |\n|---|---:|---:|---:|---:|---:|---|\n'
for p in "${profiles[@]}"; do
  switch=()
  [ "$p" = 4to600 ] && switch=(-switch-after "$((WARMUP + SECS / 2))s")
  netem_up "$p" "${switch[@]}" || { echo "badlink-go: $p: could not build the link" >&2; fail=1; continue; }
  slog=$OUT/badlink-go-$p-server.log
  netem_spawn server "$slog" "$OUT/e2eserver" -kind flip -addr "$NETEM_SERVER_IP:8000" -loopback=false
  for _ in $(seq 100); do grep -q 'e2eserver listening' "$slog" 2>/dev/null && break; sleep 0.1; done
  res=$(timeout -k 5 $((WARMUP + SECS + 40)) ip netns exec "$NETEM_CLI" "$OUT/linkprobe" -server "http://$NETEM_SERVER_IP:8000" \
    -seconds "$SECS" -warmup "$WARMUP" 2>"$OUT/badlink-go-$p-client.log") || res=
  netem_down
  rm -rf "$NETEM_DIR"
  if [ -z "$res" ]; then
    echo "| $p | error: $(tail -2 "$OUT/badlink-go-$p-client.log" | tr '\n' ' ') |"; fail=1; continue
  fi
  echo "$res" >"$OUT/badlink-go-$p.json"
  node -e '
    const [p, floor] = [process.argv[1], process.argv[2] === "1"];
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
    console.log(`| ${p} | ${r.fps.toFixed(1)} | ${r.frozenS.toFixed(2)} | ${r.lagP50} | ${r.lagP95} | ${r.height} | ${r.sendWidth}x${r.sendHeight}, ${r.sendFps}, ${r.sendTargetKbps}/${r.estimateKbps} |`);
    const miss = p === "perfect" ? (r.fps < 25 || r.frozenS > 1 || r.height < 480) : (r.fps < 12 || r.frozenS > 8 || (p !== "4to600" && r.lagP95 > 2000));
    if (floor && miss) { console.error(`badlink-go: ${p} below the floor`); process.exit(1); }' "$p" "$FLOOR" <<<"$res" || fail=1
done
exit $fail
