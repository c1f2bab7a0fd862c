# Sourced by the scripts that start servers. free_ports N prints N distinct TCP ports on
# 127.0.0.1 that the kernel reports free right now (all bound at once, then released), so a
# server started on one does not collide with another process's port the way a random pick
# in a fixed range can. wait_up PID URL waits (up to 10 s) until URL answers, and fails with
# the reason when the process PID has exited first.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

wait_up() {
  local pid=$1 url=$2
  for _ in $(seq 100); do
    curl -sf "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before $url answered" >&2; return 1; }
    sleep 0.1
  done
  echo "$url did not answer within 10 s" >&2
  return 1
}

# stop_server is the EXIT trap of a script that started one server, pid $pid, logging to
# $tmp/server.log: it prints the log's tail when the script fails, stops the server and
# removes $tmp.
stop_server() {
  rc=$?
  if [ "$rc" != 0 ]; then echo "== server log (tail)"; tail -30 "$tmp/server.log"; fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"
}
