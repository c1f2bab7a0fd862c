package vad

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

type utterances struct {
	SampleRate int `json:"sample_rate"`
	Utterances []struct {
		StartMs int `json:"start_ms"`
		EndMs   int `json:"end_ms"`
	} `json:"utterances"`
}

func fixture(t testing.TB) ([]int16, utterances) {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "testdata", "audio")
	s, rate, ch, err := wav.ReadFile(filepath.Join(dir, "two_utterances48k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	var u utterances
	b, err := os.ReadFile(filepath.Join(dir, "two_utterances.json"))
	if err == nil {
		err = json.Unmarshal(b, &u)
	}
	if err != nil {
		t.Fatal(err)
	}
	if rate != 48000 || ch != 1 || u.SampleRate != 48000 || len(u.Utterances) != 2 {
		t.Fatalf("fixture: %d Hz %d ch, json %+v", rate, ch, u)
	}
	return s, u
}

// to converts 48 kHz mono to rate.
func to(t testing.TB, s []int16, rate int) []int16 {
	t.Helper()
	if rate == 48000 {
		return s
	}
	r, err := resample.New(48000, rate, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the filter delay so frame times line up with the JSON.
	return r.Flush(r.Process(nil, s))[r.Delay():]
}

// addNoise adds white noise of the given peak amplitude, deterministically.
func addNoise(s []int16, amp int) []int16 {
	rng := rand.New(rand.NewPCG(7, 7))
	out := make([]int16, len(s))
	for i, v := range s {
		out[i] = int16(max(-32768, min(32767, int(v)+rng.IntN(2*amp+1)-amp)))
	}
	return out
}

// classify runs the VAD over s in frameMs frames and scores it against the
// utterance boundaries: the fraction of frames inside an utterance called
// speech, and the fraction of frames at least 200 ms away from any
// utterance (and past the first 150 ms) called speech.
func classify(t *testing.T, mode, rate, frameMs int, s []int16, u utterances) (inSpeech, inSilence float64) {
	t.Helper()
	v, err := New(mode)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	fs := rate * frameMs / 1000
	var sp, spN, si, siN int
	for off := 0; off+fs <= len(s); off += fs {
		ms0, ms1 := off*1000/rate, (off+fs)*1000/rate
		speech, err := v.IsSpeech(rate, s[off:off+fs])
		if err != nil {
			t.Fatal(err)
		}
		inside, near := false, false
		for _, x := range u.Utterances {
			if ms0 >= x.StartMs && ms1 <= x.EndMs {
				inside = true
			}
			if ms1 > x.StartMs-200 && ms0 < x.EndMs+200 {
				near = true
			}
		}
		switch {
		case inside:
			spN++
			if speech {
				sp++
			}
		case !near && ms0 >= 150: // the noise model settles in the first ~120 ms
			siN++
			if speech {
				si++
			}
		}
	}
	return float64(sp) / float64(spN), float64(si) / float64(siN)
}

func TestSpeechAndSilence(t *testing.T) {
	s, u := fixture(t)
	for _, rate := range []int{8000, 16000, 32000, 48000} {
		x := to(t, s, rate)
		for _, noisy := range []bool{false, true} {
			in := x
			if noisy {
				in = addNoise(x, 60) // about -60 dBFS RMS of white noise
			}
			for _, frameMs := range []int{10, 20, 30} {
				for mode := range 4 {
					sp, si := classify(t, mode, rate, frameMs, in, u)
					if rate == 16000 && frameMs == 20 {
						t.Logf("%d Hz, %d ms, mode %d, noise %v: speech frames %.0f%% speech, silent frames %.0f%% speech", rate, frameMs, mode, noisy, 100*sp, 100*si)
					}
					if sp < 0.85 || si > 0.01 {
						t.Errorf("%d Hz, %d ms, mode %d, noise %v: %.0f%% of speech frames and %.0f%% of silent frames called speech",
							rate, frameMs, mode, noisy, 100*sp, 100*si)
					}
				}
			}
		}
	}
}

func TestFrameErrors(t *testing.T) {
	v, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, c := range []struct{ rate, n int }{
		{16000, 0}, {16000, 159}, {16000, 161}, {16000, 640}, {16000, 480 + 1},
		{44100, 441}, {24000, 480}, {48000, 960 + 2}, {8000, 320},
	} {
		if _, err := v.IsSpeech(c.rate, make([]int16, c.n)); !errors.Is(err, ErrFrame) {
			t.Errorf("IsSpeech(%d Hz, %d samples) = %v, want ErrFrame", c.rate, c.n, err)
		}
	}
	for _, rate := range []int{8000, 16000, 32000, 48000} {
		for _, ms := range []int{10, 20, 30} {
			if _, err := v.IsSpeech(rate, make([]int16, rate*ms/1000)); err != nil {
				t.Errorf("IsSpeech(%d Hz, %d ms): %v", rate, ms, err)
			}
		}
	}
}

func TestModeAndLifecycle(t *testing.T) {
	if _, err := New(4); !errors.Is(err, ErrMode) {
		t.Errorf("New(4) = %v, want ErrMode", err)
	}
	if _, err := New(-1); !errors.Is(err, ErrMode) {
		t.Errorf("New(-1) = %v, want ErrMode", err)
	}
	v, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SetMode(3); err != nil || v.Mode() != 3 {
		t.Fatalf("SetMode(3) = %v, mode %d", err, v.Mode())
	}
	if err := v.SetMode(9); !errors.Is(err, ErrMode) {
		t.Errorf("SetMode(9) = %v", err)
	}
	if err := v.Reset(); err != nil || v.Mode() != 3 {
		t.Fatalf("Reset = %v, mode %d", err, v.Mode())
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := v.IsSpeech(16000, make([]int16, 320)); !errors.Is(err, ErrClosed) {
		t.Errorf("IsSpeech after Close = %v", err)
	}
	if err := v.SetMode(1); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMode after Close = %v", err)
	}
}

func TestZeroAllocs(t *testing.T) {
	s, _ := fixture(t)
	x := to(t, s, 16000)
	v, _ := New(2)
	defer v.Close()
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		off := (i * 320) % (len(x) - 320)
		i++
		if _, err := v.IsSpeech(16000, x[off:off+320]); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Fatalf("IsSpeech: %v allocs, want 0", n)
	}
}

func BenchmarkVAD20ms(b *testing.B) {
	s, _ := fixture(b)
	x := to(b, s, 16000)
	v, _ := New(2)
	defer v.Close()
	frames := len(x) / 320
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.IsSpeech(16000, x[i*320:(i+1)*320]); err != nil {
			b.Fatal(err)
		}
		if i++; i == frames {
			i = 0
		}
	}
}

func BenchmarkVAD20ms48k(b *testing.B) {
	s, _ := fixture(b)
	v, _ := New(2)
	defer v.Close()
	frames := len(s) / 960
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.IsSpeech(48000, s[i*960:(i+1)*960]); err != nil {
			b.Fatal(err)
		}
		if i++; i == frames {
			i = 0
		}
	}
}
