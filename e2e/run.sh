#!/usr/bin/env bash
# The browser suite: builds cmd/e2eserver, makes the fake camera and microphone files, and
# runs e2e/suite.mjs (headless Chromium through playwright-core) with the server and the
# browser inside a network namespace that has only loopback (unshare -n).
#
#   ./e2e/run.sh                                 # every scenario
#   ./e2e/run.sh --only flip,pause-detection     # some
#
# Needs go, node + npm, chromium, ffmpeg, espeak-ng, sox, iproute2 (scripts/test.sh installs the apt
# packages); the npm dependencies are installed here when missing. Generated files go to
# e2e/out/ (git-ignored). Exits non-zero if any scenario fails.
set -euo pipefail
source "$(dirname "$0")/common.sh"
command -v ffmpeg >/dev/null || { echo "e2e: ffmpeg not found" >&2; exit 1; }
e2e_setup

# Fake media (Chrome loops both files).
if [ ! -s "$OUT/camera.y4m" ]; then # SMPTE bars (top and bottom differ) with a moving test card inset
  ffmpeg -loglevel error -y -f lavfi -i smptebars=size=640x480:rate=30 -f lavfi -i testsrc=size=224x168:rate=30 \
    -filter_complex "[0][1]overlay=x=24:y=24" -t 3 -pix_fmt yuv420p "$OUT/camera.tmp.y4m"
  mv "$OUT/camera.tmp.y4m" "$OUT/camera.y4m"
fi
if [ ! -s "$OUT/tone440.wav" ]; then # 440 Hz, a quarter of full scale (-12 dBFS peak)
  ffmpeg -loglevel error -y -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=5" \
    -af volume=2 -ac 1 -c:a pcm_s16le "$OUT/tone.tmp.wav"
  mv "$OUT/tone.tmp.wav" "$OUT/tone440.wav"
fi

# Spoken questions for the talk agent (espeak-ng, sox), with silence after them: Chrome loops
# them, so the agent hears the question every few seconds.
speak() { # text out.wav [voice speed]
  [ -s "$2" ] && return 0
  espeak-ng -v "${3:-en-us}" -s "${4:-150}" -w "$OUT/speak.tmp.wav" "$1"
  sox -D "$OUT/speak.tmp.wav" -r 48000 -c 1 -b 16 -e signed-integer "$OUT/speak48.tmp.wav" pad 0.5 3
  mv "$OUT/speak48.tmp.wav" "$2"; rm -f "$OUT/speak.tmp.wav"
}
speak "what is the weather today" "$OUT/talk_question.wav"
# The wake phrase in the voice PocketSphinx's keyword spotting hears (internal/sphinx's
# tests): with the default voice, "hello computer" is spotted only now and then.
speak "hello computer what is the weather today" "$OUT/talk_wake_klatt.wav" en-us+klatt 175

start=$(date +%s)
rc=0
in_netns node "$E2E/suite.mjs" "$@" || rc=$?
echo "e2e: finished in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
