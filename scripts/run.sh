#!/usr/bin/env bash
# Runs an example (default: flip) after installing the C libraries it needs.
# Usage: ./scripts/run.sh [flip|detect|echo|parrot|phone] [-addr 127.0.0.1:8000]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
example="${1:-flip}"
[ $# -gt 0 ] && shift
./scripts/deps.sh
exec go run "./examples/$example" "$@"
