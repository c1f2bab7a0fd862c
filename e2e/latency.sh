#!/usr/bin/env bash
# Glass-to-glass latency benchmark (not a test): headless Chromium sends a canvas with a
# frame counter through (1) a plain pion server forwarding its VP8 RTP back (the floor) and
# (2) fastrtc's full path (decode -> handler -> encode), and prints p50/p95 of each.
#
#   ./e2e/latency.sh                          # 2 rounds x (forward, identity, flip), 10 s each
#   ./e2e/latency.sh --seconds 20 --rounds 3 --paths forward,identity
set -euo pipefail
source "$(dirname "$0")/common.sh"
e2e_setup
in_netns node "$E2E/latency.mjs" "$@"
