// Command realtime puts a speech-to-speech model behind the built-in page: OpenAI's Realtime
// API or Google's Gemini Live API, one model connection per browser session, with barge-in,
// live transcripts of both sides and a tool (the time of day) the model may call.
//
//	OPENAI_API_KEY=sk-... ./scripts/run.sh realtime                    # then open http://127.0.0.1:8000/
//	GEMINI_API_KEY=...    ./scripts/run.sh realtime -provider gemini
//	./scripts/run.sh realtime -base-url wss://my-proxy.example/v1/realtime
//
// The chat also goes to /outputs in the shape FastRTC's voice demos use
// ({"message": {"role", "content"}}), so their pages run against it unchanged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/realtime/gemini"
	"github.com/fastrtc-go/fastrtc/realtime/openai"
)

// clockArgs are the arguments of the example's tool.
type clockArgs struct {
	Zone string `json:"zone,omitempty" desc:"an IANA time zone, e.g. Europe/Paris; the server's by default"`
}

// clock is a tool the model may call: the time now.
var clock = realtime.Func("current_time", "The current date and time.", func(ctx context.Context, s *fastrtc.Session, a clockArgs) (any, error) {
	loc := time.Local
	if a.Zone != "" {
		l, err := time.LoadLocation(a.Zone)
		if err != nil {
			return nil, err
		}
		loc = l
	}
	return map[string]string{"time": time.Now().In(loc).Format(time.RFC1123)}, nil
})

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	provider := flag.String("provider", "openai", "openai or gemini")
	baseURL := flag.String("base-url", "", "the model's WebSocket endpoint (default: the provider's own)")
	model := flag.String("model", "", "the model (default: the provider's default)")
	voice := flag.String("voice", "", "the model's voice (default: the provider's default)")
	instructions := flag.String("instructions", "You are a helpful voice assistant. Keep your answers short.", "system instructions")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	agent, err := bridge(*provider, *baseURL, *model, *voice, *instructions)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realtime:", err)
		os.Exit(2)
	}
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithLogger(log), fastrtc.WithChatOutputs(),
		fastrtc.WithInputs(fastrtc.Text("instructions", ""), fastrtc.Text("textbox", "")))
	if err != nil {
		log.Error("realtime", "err", err)
		os.Exit(1)
	}
	defer stream.Close()
	log.Info("open http://"+*addr+"/", "provider", *provider)
	if err := stream.ListenAndServe(context.Background(), *addr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("realtime", "err", err)
		os.Exit(1)
	}
}

// bridge makes the provider's bridge, with its key from the environment.
func bridge(provider, baseURL, model, voice, instructions string) (*fastrtc.AudioAgent, error) {
	switch provider {
	case "openai":
		key := os.Getenv("OPENAI_API_KEY")
		if key == "" {
			return nil, errors.New("set OPENAI_API_KEY to your OpenAI API key (or -provider gemini with GEMINI_API_KEY)")
		}
		return openai.New(openai.Options{APIKey: key, BaseURL: baseURL, Model: model, Voice: voice, Instructions: instructions,
			InstructionsInput: "instructions", TextInput: "textbox", Tools: []realtime.Tool{clock}})
	case "gemini":
		key := os.Getenv("GEMINI_API_KEY")
		if key == "" {
			return nil, errors.New("set GEMINI_API_KEY to your Gemini API key (or -provider openai with OPENAI_API_KEY)")
		}
		return gemini.New(gemini.Options{APIKey: key, BaseURL: baseURL, Model: model, Voice: voice, Instructions: instructions,
			InstructionsInput: "instructions", TextInput: "textbox", Tools: []realtime.Tool{clock}})
	}
	return nil, fmt.Errorf("-provider %q: want openai or gemini", provider)
}
