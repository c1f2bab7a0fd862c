# Shared by run.sh and latency.sh (sourced): dependencies, the test server, the namespace.
E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$E2E")
OUT=${E2E_OUT:-$E2E/out}
export E2E_OUT=$OUT
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$OUT"

# e2e_setup checks the tools, installs the npm dependencies when missing, builds cmd/e2eserver.
e2e_setup() {
  local tool
  for tool in go node npm; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool not found" >&2; return 1; }
  done
  [ -x "$CHROMIUM" ] || { echo "e2e: $CHROMIUM not found (apt-get install -y chromium)" >&2; return 1; }
  if [ ! -d "$E2E/node_modules/playwright-core" ]; then
    echo "e2e: installing npm dependencies"
    (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # The pause-detection scenario runs on the Silero VAD (the library's default once the model
  # is installed), through the browser's echo cancellation and noise suppression.
  if [ -z "${FASTRTC_SILERO_MODEL:-}" ]; then
    FASTRTC_SILERO_MODEL=$("$ROOT/scripts/silero.sh") && export FASTRTC_SILERO_MODEL
  fi
  echo "e2e: building cmd/e2eserver"
  (cd "$ROOT" && go build -o "$OUT/e2eserver" ./cmd/e2eserver)
}

# in_netns runs a command inside a network namespace with only loopback (unshare -n as root,
# unshare -rn with unprivileged user namespaces), or on the host's loopback if neither works.
in_netns() {
  if unshare -n true 2>/dev/null; then
    unshare -n bash -c 'ip link set lo up && exec "$@"' bash "$@"
  elif unshare -rn true 2>/dev/null; then
    unshare -rn bash -c 'ip link set lo up && exec "$@"' bash "$@"
  else
    echo "e2e: warning: cannot create a network namespace (unshare -n); running on the host's loopback" >&2
    "$@"
  fi
}
