#!/usr/bin/env bash
# Runs every test of the project: unit and in-process WebRTC tests (real pion peers, real
# libvpx/libopus), then the headless-Chromium end-to-end tests. Installs what it needs (apt,
# npm) when missing. Usage: ./scripts/test.sh [-short]   (-short skips the browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

./scripts/deps.sh --test

echo "== gofmt, vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...

echo "== go test"
go test -count=1 -timeout 15m ./...

echo "== go test -race (codecs, and the sessions' concurrency paths; the whole root package is race-clean too: go test -race .)"
go test -race -count=1 -timeout 15m ./internal/...
go test -race -count=1 -timeout 15m -run 'TestOfferFailures|TestConcurrencyLimit|TestTimeLimit|TestDataChannel|TestHandlerPanic|TestHandlerFactoryPanic|TestVideoFlip|TestVideoRejectsHugeFrame|TestSkipFrames|TestAudioEcho|TestAudioStereo|TestEmitEOFClientGone|TestReplyOnPause|TestAudioVideo|TestWebSocketBadInput|TestWebSocketClientVanishes|TestTelephoneCall' .

if [ "${1:-}" = "-short" ]; then exit 0; fi
if [ -d e2e ]; then
  echo "== browser tests (headless Chromium, no network but loopback)"
  ./e2e/run.sh
fi
echo "all tests passed"
