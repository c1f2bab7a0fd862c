package voice_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/voice"
)

// A voice agent: when the user pauses, reply gets the whole utterance and streams its answer
// back; new speech interrupts the answer.
func ExampleNewReplyOnPause() {
	reply := func(ctx context.Context, s *fastrtc.Session, utterance fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			// Here: speech-to-text, a model, text-to-speech. This parrot says it back.
			_ = s.Emit(map[string]any{"heard_seconds": utterance.Duration().Seconds()})
			yield(utterance, nil)
		}
	}
	stream, err := fastrtc.New(voice.NewReplyOnPause(reply, voice.WithCanInterrupt(true)),
		fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	fmt.Println(stream.Mode())
	// Output: send-receive
}

// A voice agent on the Silero VAD, tuned: stricter speech, a longer silence before speech
// ends, and half a second of talking over the reply before it is cut. The model file comes
// from npm (./scripts/silero.sh installs it).
func ExampleWithSilero() {
	model, err := voice.LoadSileroModelFile("../testdata/silero/node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx")
	if err != nil {
		fmt.Println("no model:", errors.Is(err, fs.ErrNotExist))
		return
	}
	reply := func(ctx context.Context, s *fastrtc.Session, utterance fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(yield func(fastrtc.AudioFrame, error) bool) { yield(utterance, nil) }
	}
	stream, err := fastrtc.New(voice.NewReplyOnPause(reply,
		voice.WithSilero(model, voice.SileroOptions{Threshold: 0.7, MinSilence: 200 * time.Millisecond}),
		voice.WithMinInterruption(500*time.Millisecond)),
		fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	fmt.Println(stream.Modality())
}
