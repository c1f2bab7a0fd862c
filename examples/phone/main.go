// Command phone serves a voice agent reachable by telephone (Twilio Media Streams), by
// WebSocket and from the built-in page: a ReplyOnPause "parrot" that greets the caller with
// a beep and, each time they pause, plays back what they said. Pressing a key logs the
// digit; pressing # hangs up.
//
//	go run ./examples/phone -addr 127.0.0.1:8000
//
// To call it, expose the server over HTTPS (Twilio only connects to wss:// streams), e.g.
// with `ngrok http 8000`, and in the Twilio console set your number's "A call comes in"
// webhook to https://<public host>/telephone/incoming (HTTP POST). The TwiML it answers
// points Twilio at wss://<public host>/telephone/handler; the host is -public-url's, or
// taken from the request (X-Forwarded-Host / X-Forwarded-Proto only from a proxy named by
// -trusted-proxy, e.g. -trusted-proxy 127.0.0.1 for ngrok on this host). With -twilio-token
// (or TWILIO_AUTH_TOKEN) set, requests without a valid X-Twilio-Signature are refused: set
// -public-url too, so that signatures are checked against your public URL only.
package main

import (
	"context"
	"errors"
	"flag"
	"iter"
	"log/slog"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
	"github.com/fastrtc-go/fastrtc/internal/voiceenv"
	"github.com/fastrtc-go/fastrtc/voice"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	token := flag.String("twilio-token", os.Getenv("TWILIO_AUTH_TOKEN"), "Twilio auth token: validate X-Twilio-Signature (default $TWILIO_AUTH_TOKEN; empty: no validation)")
	publicURL := flag.String("public-url", "", "the server's public base URL as Twilio calls it, e.g. https://abc.ngrok.app")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "phone")
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	clusterOpt, err := node.Option(log)
	if err != nil {
		log.Error("cluster", "err", err)
		os.Exit(1)
	}

	// parrot answers each utterance with the utterance itself.
	parrot := func(ctx context.Context, s *fastrtc.Session, utterance fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		log.Info("utterance", "session", s.ID(), "from", s.Metadata()["From"], "seconds", utterance.Duration().Seconds())
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			yield(utterance, nil)
		}
	}
	// greet says hello with two short beeps.
	greet := func(ctx context.Context, s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			for _, hz := range []float64{660, 880} {
				if !yield(beep(16000, hz, 150*time.Millisecond), nil) {
					return
				}
			}
		}
	}
	opts := []fastrtc.Option{
		network(), clusterOpt,
		fastrtc.WithLogger(log),
		fastrtc.WithConcurrencyLimit(10),
		fastrtc.WithTimeLimit(10 * time.Minute),
		fastrtc.WithTelephone(fastrtc.TelephoneOptions{
			AuthToken: *token, // empty: no signature validation
			PublicURL: *publicURL,
			DTMF: func(s *fastrtc.Session, digit string) {
				log.Info("dtmf", "session", s.ID(), "digit", digit)
				if digit == "#" {
					s.End("caller pressed #")
				}
			},
		}),
	}
	// 16 kHz is plenty for speech (telephone audio is 8 kHz).
	vad, err := voiceenv.Detector() // FASTRTC_SILERO_MODEL: the Silero VAD (./scripts/run.sh sets it)
	if err != nil {
		log.Error("vad", "err", err)
		os.Exit(1)
	}
	agent := voice.NewReplyOnPause(parrot, append(vad, voice.WithStartup(greet), voice.WithPauseInputRate(16000))...)
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive, opts...)
	if err != nil {
		log.Error("stream", "err", err)
		os.Exit(1)
	}

	log.Info("serving", "page", "http://"+*addr+"/", "twilio webhook", "https://<public host>/telephone/incoming",
		"signature validation", *token != "")
	if err := node.Serve(*addr, "phone", stream, stream.Handler(), log); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
	if err := stream.Close(); err != nil {
		log.Error("close", "err", err)
	}
}

// beep returns a tone of length d with short fades.
func beep(rate int, hz float64, d time.Duration) fastrtc.AudioFrame {
	n := int(d * time.Duration(rate) / time.Second)
	out := make([]float32, n)
	fade := rate / 100
	for i := range out {
		env := math.Min(1, math.Min(float64(i), float64(n-1-i))/float64(fade))
		out[i] = float32(0.3 * env * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
	}
	return fastrtc.AudioFromFloat32(rate, 1, out)
}
