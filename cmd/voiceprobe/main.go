// Command voiceprobe measures a voice session (ReplyOnPause) from a Go client (package
// client): are the turns still detected, and how close is the audio the handler receives
// to what was sent. scripts/badlink-voice.sh runs it through each link profile.
//
//	voiceprobe serve -addr 10.211.1.2:8000
//	voiceprobe client -server http://10.211.1.2:8000 -rounds 2
//
// The server is a fastrtc audio send-receive Stream with ReplyOnPause: each reply keeps the
// utterance the handler got (48 kHz mono PCM) and answers with 0.3 s of 660 Hz. GET
// /probe/turns?id=ID returns that session's turns and its incoming RTP figures
// (Session.Stats) as JSON.
//
// The client sends testdata/audio/two_utterances48k.wav (two utterances, a pause between
// them) in real time, 20 ms Opus packets, -rounds times back to back, counts the reply tones
// it hears, then fetches the turns and compares each with the clip: it finds the turn in the
// clip by cross-correlation (within 0.6 s before to 0.4 s after an utterance's start), and
// reports the normalised correlation and the segmental SNR (20 ms segments, clamped to
// [-10, 35] dB, speech segments only) against the clean clip, and the same SNR against the
// clip as a perfect link would have delivered it (the client's Opus stream decoded locally:
// the codec's own error taken out, so what is left is the network's). It prints one JSON
// line.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "client":
		err = runClient(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "voiceprobe:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: voiceprobe serve [-addr host:port] | voiceprobe client [-server URL] [-rounds N]")
	os.Exit(2)
}
