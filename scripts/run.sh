#!/usr/bin/env bash
# Runs an example (default: flip) after installing the C libraries it needs.
# Usage: ./scripts/run.sh [flip|detect|echo|parrot|phone|talk|realtime] [-addr 127.0.0.1:8000]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
example="${1:-flip}"
[ $# -gt 0 ] && shift
./scripts/deps.sh
# Voice examples detect pauses with the Silero VAD when its model is installed (npm, ~10 s).
if [ -z "${FASTRTC_SILERO_MODEL:-}" ] && command -v npm >/dev/null; then
  FASTRTC_SILERO_MODEL=$(./scripts/silero.sh) && export FASTRTC_SILERO_MODEL
fi
exec go run "./examples/$example" "$@"
