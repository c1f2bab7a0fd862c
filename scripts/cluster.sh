#!/usr/bin/env bash
# Cluster mode as separate processes, on loopback: Debian's nats-server (JetStream), three
# examples/echo nodes (-nats, -node n1..n3, a cluster limit), and cmd/loadtest -kind cluster
# driving echo sessions through its round-robin proxy over the nodes. Checks that exactly
# the limit's worth of sessions connect, that every node holds some and echoes their audio,
# that forwarded /stats lookups work; then SIGTERMs one node and checks that it drains and
# exits, and the others still take sessions. Stops only the processes it started (by PID).
# Usage: ./scripts/cluster.sh [sessions (default 12)] [cluster limit (default 9)]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
./scripts/deps.sh --test
n=${1:-12}
limit=${2:-9}
tmp=$(mktemp -d)
pids=()
cleanup() {
  rc=$?
  if [ "$rc" != 0 ]; then
    for f in "$tmp"/n*.log; do echo "== $f"; tail -20 "$f"; done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/echo" ./examples/echo
go build -o "$tmp/loadtest" ./cmd/loadtest
. scripts/ports.sh
read -r natsport p1 p2 p3 m1 m2 m3 <<<"$(free_ports 7)"
ports=("$p1" "$p2" "$p3")
mports=("$m1" "$m2" "$m3")
nats-server -a 127.0.0.1 -p "$natsport" -js -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$natsport") 2>/dev/null && break; sleep 0.1; done
urls=()
murls=()
for i in 1 2 3; do
  port=${ports[$((i - 1))]}
  mport=${mports[$((i - 1))]}
  "$tmp/echo" -addr "127.0.0.1:$port" -metrics-addr "127.0.0.1:$mport" -nats "nats://127.0.0.1:$natsport" -node "n$i" \
    -cluster-limit "$limit" -drain 2s >"$tmp/n$i.log" 2>&1 &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
  murls+=("http://127.0.0.1:$mport")
done
for u in "${urls[@]}"; do
  for _ in $(seq 100); do curl -sf "$u/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$u/healthz" >/dev/null || { echo "node $u did not start"; cat "$tmp"/n*.log; exit 1; }
done
nodes=$(IFS=,; echo "${urls[*]}")
mnodes=$(IFS=,; echo "${murls[*]}")
out=$("$tmp/loadtest" -kind cluster -nodes "$nodes" -metrics "$mnodes" -n "$n" -duration "${DURATION:-5s}")
echo "$out"
python3 - "$out" "$n" "$limit" <<'PY'
import json, sys
r, n, limit = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
want = min(n, limit)
assert r["connected"] == want, f"{r['connected']} sessions connected, want {want} (cluster limit {limit})"
assert r["refused"] == n - want, f"{r['refused']} refused, want {n - want}"
held = 0
for name, f in r["nodes"].items():
    assert f["sessions"] > 0, f"node {name} holds no session"
    assert f["echo_packets_per_s_per_session"] > 40, f"node {name}: {f['echo_packets_per_s_per_session']} echoed packets/s per session, want ~50"
    assert f["stats_forwarded"] > 0, f"node {name}: no forwarded /stats"
    assert f["metrics_sessions"] == f["sessions"], f"node {name}: /metrics says {f['metrics_sessions']} sessions, the lookups {f['sessions']}"
    held += f["sessions"]
assert held == want
print("cluster: %d sessions over 3 nodes (limit %d), %d refused; forwarded /stats p50 %s ms vs local %s ms" % (
    held, limit, r["refused"],
    "/".join(str(f["stats_forwarded_ms_p50"]) for f in r["nodes"].values()),
    "/".join(str(f["stats_local_ms_p50"]) for f in r["nodes"].values())))
PY
# Drain n1: it stops taking sessions and exits by itself; the others take the new ones.
kill -TERM "${pids[1]}"
for _ in $(seq 100); do kill -0 "${pids[1]}" 2>/dev/null || break; sleep 0.1; done
if kill -0 "${pids[1]}" 2>/dev/null; then echo "n1 did not exit after SIGTERM (drain 2s)"; exit 1; fi
grep -q draining "$tmp/n1.log" || { echo "n1 did not drain"; cat "$tmp/n1.log"; exit 1; }
# The first run's sessions end on n2 and n3 once their peers' close arrives.
for u in "${murls[1]}" "${murls[2]}"; do
  for _ in $(seq 150); do
    [ "$(curl -sf "$u/metrics" | awk '/^fastrtc_sessions\{/ {s += $NF} END {print s+0}')" = 0 ] && break
    sleep 0.1
  done
done
out=$("$tmp/loadtest" -kind cluster -nodes "${urls[1]},${urls[2]}" -metrics "${murls[1]},${murls[2]}" -n 4 -duration 2s)
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["connected"] == 4, f"after n1 drained: {r['connected']} of 4 sessions connected: {r.get('errors')}"
PY
echo "cluster: n1 drained and exited; n2 and n3 took the new sessions"
