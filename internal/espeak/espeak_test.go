package espeak

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

const sentence = "Hello world, this is a test."

func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// speak synthesises text and returns all its audio and the number of chunks.
func speak(t testing.TB, e *Engine, text string) ([]int16, int) {
	t.Helper()
	var pcm []int16
	chunks := 0
	err := e.Synthesize(context.Background(), text, func(c []int16) bool {
		pcm = append(pcm, c...)
		chunks++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return pcm, chunks
}

func rms(s []int16) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(max(len(s), 1)))
}

func TestSynthesize(t *testing.T) {
	e := newEngine(t, Options{})
	if e.SampleRate() != 22050 {
		t.Fatalf("SampleRate = %d, want 22050", e.SampleRate())
	}
	if e.Voice() != DefaultVoice {
		t.Fatalf("Voice = %q", e.Voice())
	}
	pcm, chunks := speak(t, e, sentence)
	dur := float64(len(pcm)) / float64(e.SampleRate())
	r := rms(pcm)
	t.Logf("%d samples (%.2f s) in %d chunks, RMS %.0f", len(pcm), dur, chunks, r)
	if dur < 0.8 || dur > 4 {
		t.Errorf("duration %.2f s, want 0.8-4 s", dur)
	}
	if r < 300 {
		t.Errorf("RMS %.0f: audio is (nearly) silent", r)
	}
	if chunks < 5 {
		t.Errorf("%d chunks: audio was not streamed", chunks)
	}
	// The same text gives about the same audio again (no state left over).
	again, _ := speak(t, e, sentence)
	if d := len(again) - len(pcm); d < -len(pcm)/20 || d > len(pcm)/20 {
		t.Errorf("second synthesis %d samples, first %d", len(again), len(pcm))
	}
}

func TestOptions(t *testing.T) {
	normal := newEngine(t, Options{})
	fast := newEngine(t, Options{WordsPerMinute: 350})
	n, _ := speak(t, normal, sentence)
	f, _ := speak(t, fast, sentence)
	if len(f) > len(n)*3/4 {
		t.Errorf("350 wpm: %d samples, 175 wpm: %d; want clearly shorter", len(f), len(n))
	}
	// Rate set by fast must not leak into normal.
	n2, _ := speak(t, normal, sentence)
	if d := len(n2) - len(n); d < -len(n)/20 || d > len(n)/20 {
		t.Errorf("175 wpm after 350 wpm engine: %d samples, before: %d", len(n2), len(n))
	}
	high := newEngine(t, Options{Pitch: 90})
	if h, _ := speak(t, high, sentence); rms(h) < 300 {
		t.Errorf("pitch 90: silent")
	}
	gb := newEngine(t, Options{Voice: "en-gb"}) // found by language, not name
	if g, _ := speak(t, gb, sentence); rms(g) < 300 {
		t.Errorf("en-gb: silent")
	}

	for _, o := range []Options{{WordsPerMinute: 10}, {WordsPerMinute: 1000}, {Pitch: -1}, {Pitch: 101}, {Voice: "a\x00b"}} {
		if _, err := New(o); !errors.Is(err, ErrOption) {
			t.Errorf("New(%+v) = %v, want ErrOption", o, err)
		}
	}
	if _, err := New(Options{Voice: "xx-nonexistent"}); !errors.Is(err, ErrVoice) {
		t.Errorf("unknown voice: %v, want ErrVoice", err)
	}
}

func TestStopEarly(t *testing.T) {
	e := newEngine(t, Options{})
	full, _ := speak(t, e, sentence)

	// fn returning false.
	var got int
	calls := 0
	err := e.Synthesize(context.Background(), sentence, func(c []int16) bool {
		got += len(c)
		calls++
		return calls < 3
	})
	if err != nil {
		t.Fatalf("stopped by fn: %v", err)
	}
	if calls != 3 || got >= len(full)/2 {
		t.Errorf("stopped by fn: %d calls, %d of %d samples", calls, got, len(full))
	}

	// Cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	got, calls = 0, 0
	err = e.Synthesize(ctx, sentence, func(c []int16) bool {
		got += len(c)
		calls++
		if calls == 2 {
			cancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v, want context.Canceled", err)
	}
	if calls != 2 || got >= len(full)/2 {
		t.Errorf("cancelled: %d calls, %d of %d samples", calls, got, len(full))
	}
	// Already cancelled: no audio at all.
	err = e.Synthesize(ctx, sentence, func([]int16) bool { t.Error("fn called"); return true })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("pre-cancelled: %v", err)
	}

	// The library is usable after an aborted synthesis, from the start of
	// the text (nothing of the aborted one is left over).
	after, _ := speak(t, e, sentence)
	if d := len(after) - len(full); d < -len(full)/20 || d > len(full)/20 {
		t.Errorf("after abort: %d samples, want about %d", len(after), len(full))
	}
}

func TestPanicInCallback(t *testing.T) {
	e := newEngine(t, Options{})
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = e.Synthesize(context.Background(), sentence, func([]int16) bool { panic("boom") })
		t.Error("no panic")
	}()
	// The lock was released and the library reset.
	if pcm, _ := speak(t, e, sentence); rms(pcm) < 300 {
		t.Error("silent after panic")
	}
}

func TestEnginesInSequenceAndConcurrently(t *testing.T) {
	us := newEngine(t, Options{Voice: "en-us"})
	de := newEngine(t, Options{Voice: "de", WordsPerMinute: 200})
	want := map[*Engine]int{}
	for _, e := range []*Engine{us, de, us, de} {
		pcm, _ := speak(t, e, sentence)
		if rms(pcm) < 300 {
			t.Fatalf("%s: silent", e.Voice())
		}
		if w, ok := want[e]; ok && (len(pcm) < w*95/100 || len(pcm) > w*105/100) {
			t.Errorf("%s: %d samples, earlier %d", e.Voice(), len(pcm), w)
		}
		want[e] = len(pcm)
	}
	if want[us] == want[de] {
		t.Errorf("en-us and de gave identical lengths (%d): voice not switched?", want[us])
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		e := []*Engine{us, de}[i%2]
		wg.Go(func() {
			for range 3 {
				n := 0
				if err := e.Synthesize(context.Background(), sentence, func(c []int16) bool { n += len(c); return true }); err != nil {
					errs <- err
					return
				}
				// Each engine keeps its own voice and rate while others interleave.
				if w := want[e]; n < w*95/100 || n > w*105/100 {
					errs <- errors.New(e.Voice() + ": length changed under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClose(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Synthesize(context.Background(), sentence, func([]int16) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	// Other engines are unaffected.
	if pcm, _ := speak(t, newEngine(t, Options{}), sentence); rms(pcm) < 300 {
		t.Error("new engine after Close: silent")
	}
	if err := newEngine(t, Options{}).Synthesize(context.Background(), "x", nil); !errors.Is(err, ErrOption) {
		t.Errorf("nil fn: %v, want ErrOption", err)
	}
}

func BenchmarkSynthesize(b *testing.B) {
	e := newEngine(b, Options{})
	var samples int
	var synth time.Duration
	for b.Loop() {
		start := time.Now()
		if err := e.Synthesize(context.Background(), sentence, func(c []int16) bool { samples += len(c); return true }); err != nil {
			b.Fatal(err)
		}
		synth += time.Since(start)
	}
	audio := float64(samples) / float64(e.SampleRate())
	b.ReportMetric(synth.Seconds()/audio, "rtf")
}
