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
	"context"
	"errors"
	"flag"
	"iter"
	"log/slog"
	"net/http"
	"os"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
	"github.com/fastrtc-go/fastrtc/speech"
)

// agent answers each turn with what it heard.
type agent struct {
	stt fastrtc.Transcriber
	tts fastrtc.Synthesizer
}

// reply transcribes the utterance (or takes the typed text, or the words after the wake
// phrase), shows both sides of the conversation and speaks the answer.
func (a *agent) reply(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		text := fastrtc.ReplyText(ctx)
		if text == "" {
			text = fastrtc.ReplyTranscript(ctx)
		}
		if text == "" && len(utt.Samples) > 0 {
			var err error
			if text, err = a.stt.Transcribe(ctx, utt); err != nil {
				yield(fastrtc.AudioFrame{}, err)
				return
			}
		}
		answer := "Sorry, I did not catch that."
		if text != "" {
			_ = s.Transcript(fastrtc.RoleUser, text)
			answer = "You said: " + text
		}
		_ = s.Transcript(fastrtc.RoleAssistant, answer)
		for f, err := range a.tts.Synthesize(ctx, answer) {
			if !yield(f, err) || err != nil {
				return
			}
		}
	}
}

// newStream builds the talk stream; wake, if set, is the phrase it waits for.
func newStream(a *agent, wake string, opts ...fastrtc.Option) (*fastrtc.Stream, error) {
	pause := []fastrtc.PauseOption{fastrtc.WithTextInput("textbox")}
	handler := fastrtc.NewReplyOnPause(a.reply, pause...)
	subtitle := "Speak, then pause (or type): the agent says what it heard."
	if wake != "" {
		handler = fastrtc.NewReplyOnStopWords(a.reply, a.stt, []string{wake}, pause...)
		subtitle = `Say "` + wake + `", then what you want (or type).`
	}
	opts = append([]fastrtc.Option{
		fastrtc.WithTitle("Talk", subtitle),
		fastrtc.WithInputs(fastrtc.Text("textbox", "")),
	}, opts...)
	return fastrtc.New(handler, fastrtc.Audio, fastrtc.SendReceive, opts...)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	wake := flag.String("wake", "", `answer only after this phrase, e.g. "hello computer"`)
	voice := flag.String("voice", "en-us", "espeak-ng voice")
	network := netflags.Register(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *wake, *voice, log, network()); err != nil {
		log.Error("talk", "err", err)
		os.Exit(1)
	}
}

func run(addr, wake, voice string, log *slog.Logger, network fastrtc.Option) error {
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
	stream, err := newStream(&agent{stt: stt, tts: tts}, wake, network, fastrtc.WithLogger(log))
	if err != nil {
		return err
	}
	defer stream.Close()
	log.Info("open http://" + addr + "/")
	if err := http.ListenAndServe(addr, stream.Handler()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
