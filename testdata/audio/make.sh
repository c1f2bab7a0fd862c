#!/usr/bin/env bash
# Regenerates the audio fixtures in this directory (deterministic: no dither).
#
# Needs: espeak-ng, sox (apt-get install -y espeak-ng sox).
#
#   hello48k.wav            espeak-ng "Hello, this is a test of the streaming server.", 48 kHz mono PCM16
#   two_utterances48k.wav   0.5 s silence, utterance A, 1.5 s silence, utterance B, 2.0 s silence
#                           (48 kHz mono PCM16; the silence is digital zero)
#   two_utterances.json     where A and B are, in ms and in samples (speech trimmed at -50 dBFS)
set -euo pipefail
cd "$(dirname "$0")"

RATE=48000
TEXT_HELLO="Hello, this is a test of the streaming server."
TEXT_A="Hello there, how are you today"
TEXT_B="Please tell me the weather"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# -D: no dither, so the output is bit-for-bit reproducible and silence stays zero.
espeak-ng -w "$tmp/hello22k.wav" "$TEXT_HELLO"
sox -D "$tmp/hello22k.wav" -r "$RATE" -c 1 -b 16 -e signed-integer hello48k.wav rate -v

# Each utterance is resampled, then trimmed of leading/trailing silence (-50 dBFS)
# so that its length is the length of the spoken segment.
speak() { # text out.wav
	espeak-ng -w "$tmp/s22k.wav" "$1"
	sox -D "$tmp/s22k.wav" -r "$RATE" -c 1 -b 16 -e signed-integer "$2" rate -v \
		silence 1 0.005 -50d reverse silence 1 0.005 -50d reverse
}
speak "$TEXT_A" "$tmp/a.wav"
speak "$TEXT_B" "$tmp/b.wav"

silence() { # seconds out.wav
	sox -D -n -r "$RATE" -c 1 -b 16 -e signed-integer "$2" trim 0 "$1"
}
silence 0.5 "$tmp/s05.wav"
silence 1.5 "$tmp/s15.wav"
silence 2.0 "$tmp/s20.wav"
sox -D "$tmp/s05.wav" "$tmp/a.wav" "$tmp/s15.wav" "$tmp/b.wav" "$tmp/s20.wav" two_utterances48k.wav

na=$(soxi -s "$tmp/a.wav")
nb=$(soxi -s "$tmp/b.wav")
a0=$((RATE / 2))
a1=$((a0 + na))
b0=$((a1 + RATE * 3 / 2))
b1=$((b0 + nb))
ms() { echo $(($1 * 1000 / RATE)); }
cat >two_utterances.json <<JSON
{
  "sample_rate": $RATE,
  "total_samples": $(soxi -s two_utterances48k.wav),
  "utterances": [
    {"start_ms": $(ms $a0), "end_ms": $(ms $a1), "start_sample": $a0, "end_sample": $a1, "text": "$TEXT_A"},
    {"start_ms": $(ms $b0), "end_ms": $(ms $b1), "start_sample": $b0, "end_sample": $b1, "text": "$TEXT_B"}
  ]
}
JSON
echo "wrote hello48k.wav two_utterances48k.wav two_utterances.json"
