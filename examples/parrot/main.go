// Command parrot is a minimal voice agent: it waits until you pause, then speaks your
// utterance back to you. It serves the built-in page at /.
//
//	go run ./examples/parrot          # then open http://127.0.0.1:8000/
package main

import (
	"context"
	"flag"
	"iter"
	"log/slog"
	"os"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
	"github.com/fastrtc-go/fastrtc/internal/voiceenv"
	"github.com/fastrtc-go/fastrtc/voice"
)

// parrot yields the utterance back in 20 ms frames (the stream paces them in real time).
func parrot(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		step := u.SampleRate / 50 * u.Channels
		for i := 0; i < len(u.Samples); i += step {
			f := u
			f.Samples = u.Samples[i:min(i+step, len(u.Samples))]
			if !yield(f, nil) {
				return // interrupted, or the session ended
			}
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "parrot")
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	clusterOpt, err := node.Option(log)
	if err != nil {
		log.Error("cluster", "err", err)
		os.Exit(1)
	}

	vad, err := voiceenv.Detector() // FASTRTC_SILERO_MODEL: the Silero VAD (./scripts/run.sh sets it)
	if err != nil {
		log.Error("vad", "err", err)
		os.Exit(1)
	}
	stream, err := fastrtc.New(voice.NewReplyOnPause(parrot, vad...), fastrtc.Audio, fastrtc.SendReceive, network(), clusterOpt,
		fastrtc.WithTitle("Parrot", "Say something, then pause: the server says it back."),
		fastrtc.WithLogger(log))
	if err != nil {
		log.Error("stream", "err", err)
		os.Exit(1)
	}
	defer stream.Close()
	log.Info("open http://" + *addr + "/")
	if err := node.Serve(*addr, "parrot", stream, stream.Handler(), log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
