#!/usr/bin/env bash
# Runs every test of the project: unit and in-process WebRTC tests (real pion peers, real
# libvpx/libopus), then the headless-Chromium end-to-end tests. Installs what it needs (apt,
# npm) when missing. Usage: ./scripts/test.sh [-short]   (-short skips the browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in pkg-config libvpx-dev libopus-dev libwebrtc-audio-processing-dev ffmpeg espeak-ng sox chromium iproute2; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # The image may delete downloaded .debs mid-install: retry once.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" || \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

echo "== gofmt, vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...

echo "== go test"
go test -count=1 -timeout 15m ./...

if [ "${1:-}" = "-short" ]; then exit 0; fi
if [ -d e2e ]; then
  echo "== browser tests (headless Chromium, no network but loopback)"
  ./e2e/run.sh
fi
echo "all tests passed"
