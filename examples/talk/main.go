// Command talk is a complete local voice agent, offline: pause detection (Silero when its
// model is installed), PocketSphinx transcribes what you said, and espeak-ng answers "You
// said: ..."; the conversation shows on the built-in page, and you can type instead of
// speaking. With -wake it answers only when addressed ("hello computer, ...").
//
//	./scripts/run.sh talk                          # then open http://127.0.0.1:8000/
//	./scripts/run.sh talk -wake "hello computer"
//
// A real agent puts a language model between the transcript and the reply; the
// Transcriber and Synthesizer are interfaces, so a cloud service fits in their place.
package main

import (
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
	"github.com/fastrtc-go/fastrtc/internal/talkagent"
	"github.com/fastrtc-go/fastrtc/internal/voiceenv"
	"github.com/fastrtc-go/fastrtc/speech"
	"github.com/fastrtc-go/fastrtc/voice"
)

// newStream builds the talk stream; wake, if set, is the phrase it waits for.
func newStream(a *talkagent.Agent, wake string, vad []voice.Option, opts ...fastrtc.Option) (*fastrtc.Stream, error) {
	return fastrtc.New(a.Handler(wake, vad...), fastrtc.Audio, fastrtc.SendReceive, append(talkagent.Options(wake), opts...)...)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	wake := flag.String("wake", "", `answer only after this phrase, e.g. "hello computer"`)
	voice := flag.String("voice", "en-us", "espeak-ng voice")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "talk")
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *wake, *voice, log, node, network()); err != nil {
		log.Error("talk", "err", err)
		os.Exit(1)
	}
}

func run(addr, wake, voice string, log *slog.Logger, node *netflags.Node, network fastrtc.Option) error {
	stt, err := speech.NewPocketSphinx(speech.PocketSphinxOptions{})
	if err != nil {
		return err
	}
	defer stt.Close()
	tts, err := speech.NewEspeak(speech.EspeakOptions{Voice: voice})
	if err != nil {
		return err
	}
	defer tts.Close()
	clusterOpt, err := node.Option(log)
	if err != nil {
		return err
	}
	vad, err := voiceenv.Detector() // FASTRTC_SILERO_MODEL: the Silero VAD (./scripts/run.sh sets it)
	if err != nil {
		return err
	}
	// WithChatOutputs: the chat on /outputs as FastRTC's voice demos send it, so their pages work.
	stream, err := newStream(&talkagent.Agent{STT: stt, TTS: tts}, wake, vad, network, clusterOpt, fastrtc.WithLogger(log), fastrtc.WithChatOutputs())
	if err != nil {
		return err
	}
	defer stream.Close()
	log.Info("open http://" + addr + "/")
	if err := node.Serve(addr, "talk", stream, stream.Handler(), log); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
