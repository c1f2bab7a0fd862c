package silero

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

// The model and onnxruntime-node are installed by scripts/silero.sh into
// testdata/silero/node_modules. FASTRTC_REQUIRE_SILERO=1 (set by
// scripts/test.sh) makes their absence a failure instead of a skip.
const npmDir = "../../../testdata/silero"

func modelPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(npmDir, "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("FASTRTC_REQUIRE_SILERO") != "" {
			t.Fatalf("Silero model missing (run scripts/silero.sh): %v", err)
		}
		t.Skipf("Silero model not installed (scripts/silero.sh): %v", err)
	}
	return p
}

func loadModel(t testing.TB) *Model {
	t.Helper()
	f, err := os.Open(modelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mixedAudio is 36 s at rate of speech (the espeak-ng fixtures), digital
// silence, white and low-passed noise at several levels, speech in noise,
// tones and clicks: deterministic.
func mixedAudio(t testing.TB, rate int) []int16 {
	t.Helper()
	var speech []int16
	for _, name := range []string{"hello48k.wav", "two_utterances48k.wav"} {
		s, r, ch, err := wav.ReadFile(filepath.Join("../../../testdata/audio", name))
		if err != nil || ch != 1 {
			t.Fatalf("%s: %v (channels %d)", name, err, ch)
		}
		res, err := resample.New(r, rate, 1)
		if err != nil {
			t.Fatal(err)
		}
		speech = append(speech, res.Process(nil, s)...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var out []int16
	sec := func(s float64) int { return int(s * float64(rate)) }
	add := func(x []float64) {
		for _, v := range x {
			out = append(out, int16(max(-32768, min(32767, math.Round(v)))))
		}
	}
	noise := func(n int, amp float64, lowpass bool) []float64 {
		x := make([]float64, n)
		y := 0.0
		for i := range x {
			v := rng.NormFloat64() * amp
			if lowpass {
				y = 0.95*y + 0.05*v*4
				v = y
			}
			x[i] = v
		}
		return x
	}
	toF := func(s []int16) []float64 {
		x := make([]float64, len(s))
		for i, v := range s {
			x[i] = float64(v)
		}
		return x
	}
	add(toF(speech))               // ~8 s of speech and silence
	add(make([]float64, sec(2)))   // digital silence
	add(noise(sec(3), 300, false)) // white noise, -40 dBFS
	add(noise(sec(3), 3000, true)) // rumble
	sp := toF(speech)
	n := noise(len(sp), 1500, false) // speech in white noise
	for i := range sp {
		sp[i] += n[i]
	}
	add(sp)
	tone := make([]float64, sec(4)) // music-like: chords switching every 250 ms
	for i := range tone {
		f := []float64{220, 277, 330, 440}[(i/sec(0.25))%4]
		ts := float64(i) / float64(rate)
		tone[i] = 4000*math.Sin(2*math.Pi*f*ts) + 2000*math.Sin(2*math.Pi*1.5*f*ts)
	}
	add(tone)
	clicks := make([]float64, sec(3))
	for i := 0; i < len(clicks); i += sec(0.3) {
		for j := 0; j < 40 && i+j < len(clicks); j++ {
			clicks[i+j] = 20000 * math.Exp(-float64(j)/6) * float64(1-2*(j%2))
		}
	}
	add(clicks)
	add(toF(speech)) // the speech again, after all that (the state has seen noise)
	return out
}

// TestMatchesOnnxRuntime compares the pure-Go network's probabilities with
// onnxruntime's, window by window, on the same audio, at 16 and 8 kHz.
func TestMatchesOnnxRuntime(t *testing.T) {
	m := loadModel(t)
	model, _ := filepath.Abs(modelPath(t))
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	for _, rate := range []int{16000, 8000} {
		audio := mixedAudio(t, rate)
		if secs := float64(len(audio)) / float64(rate); secs < 30 {
			t.Fatalf("only %.1f s of audio", secs)
		}
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.pcm"), filepath.Join(dir, "out.f32")
		raw := make([]byte, 2*len(audio))
		for i, s := range audio {
			binary.LittleEndian.PutUint16(raw[2*i:], uint16(s))
		}
		if err := os.WriteFile(in, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(node, "ref.cjs", model, strconv.Itoa(rate), in, out)
		cmd.Dir = npmDir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("onnxruntime reference: %v\n%s", err, b)
		}
		refRaw, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		d, err := m.NewDetector(rate)
		if err != nil {
			t.Fatal(err)
		}
		win := d.WindowSamples()
		if len(refRaw)/4 != len(audio)/win {
			t.Fatalf("%d reference windows, want %d", len(refRaw)/4, len(audio)/win)
		}
		maxDiff, speechy := 0.0, 0
		for w := 0; w < len(audio)/win; w++ {
			p, err := d.ProbabilityInt16(audio[w*win : (w+1)*win])
			if err != nil {
				t.Fatal(err)
			}
			ref := math.Float32frombits(binary.LittleEndian.Uint32(refRaw[4*w:]))
			maxDiff = max(maxDiff, math.Abs(float64(p-ref)))
			if ref > 0.5 {
				speechy++
			}
		}
		n := len(audio) / win
		t.Logf("%d Hz: %d windows (%.1f s), %d with p > 0.5; max |Go - onnxruntime| = %.2g",
			rate, n, float64(len(audio))/float64(rate), speechy, maxDiff)
		if maxDiff >= 1e-3 {
			t.Errorf("%d Hz: max difference %.3g >= 1e-3", rate, maxDiff)
		}
		if speechy < n/10 || speechy > n*9/10 {
			t.Errorf("%d Hz: %d of %d windows are speech: the audio does not exercise the model", rate, speechy, n)
		}
	}
}

// TestSteadyStateAllocs: a window costs no allocation.
func TestSteadyStateAllocs(t *testing.T) {
	m := loadModel(t)
	for _, rate := range []int{16000, 8000} {
		d, err := m.NewDetector(rate)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]int16, d.WindowSamples())
		for i := range w {
			w[i] = int16(1000 * math.Sin(float64(i)/5))
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = d.ProbabilityInt16(w) }); n != 0 {
			t.Errorf("%d Hz: %.1f allocations per window", rate, n)
		}
	}
}

// TestStateAndReset: the LSTM state carries from window to window (the same
// window scores differently after speech than after silence), Reset forgets
// it, and detectors of one model are independent.
func TestStateAndReset(t *testing.T) {
	m := loadModel(t)
	audio := mixedAudio(t, 16000)
	a, _ := m.NewDetector(16000)
	b, _ := m.NewDetector(16000)
	win := a.WindowSamples()
	var pa []float32
	for w := 0; w < 100; w++ {
		p, _ := a.ProbabilityInt16(audio[w*win : (w+1)*win])
		pa = append(pa, p)
	}
	a.Reset()
	for w := 0; w < 100; w++ {
		p, _ := a.ProbabilityInt16(audio[w*win : (w+1)*win])
		q, _ := b.ProbabilityInt16(audio[w*win : (w+1)*win])
		if p != pa[w] || q != pa[w] {
			t.Fatalf("window %d: %v after Reset, %v on a fresh detector, want %v", w, p, q, pa[w])
		}
	}
	// Without state: the same window after other audio scores differently.
	c, _ := m.NewDetector(16000)
	p0, _ := c.ProbabilityInt16(audio[50*win : 51*win])
	if p0 == pa[50] {
		t.Errorf("window 50 scored %v with and without history: no state carried", p0)
	}
}

func TestErrors(t *testing.T) {
	if _, err := Load(bytes.NewReader([]byte("not a model"))); !errors.Is(err, ErrModel) {
		t.Errorf("garbage: %v, want ErrModel", err)
	}
	if _, err := Load(bytes.NewReader(nil)); !errors.Is(err, ErrModel) {
		t.Errorf("empty: %v, want ErrModel", err)
	}
	m := loadModel(t)
	if _, err := m.NewDetector(44100); !errors.Is(err, ErrRate) {
		t.Errorf("44.1 kHz: %v, want ErrRate", err)
	}
	d, _ := m.NewDetector(16000)
	if _, err := d.ProbabilityInt16(make([]int16, 320)); err == nil {
		t.Error("a 320-sample window was accepted")
	}
	// The legacy (v4) model is a different network: refused, not misread.
	legacy := filepath.Join(npmDir, "node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx")
	if f, err := os.Open(legacy); err == nil {
		defer f.Close()
		if _, err := Load(f); !errors.Is(err, ErrModel) {
			t.Errorf("legacy model: %v, want ErrModel", err)
		}
	}
}

// BenchmarkWindow: one 32 ms window (512 samples at 16 kHz).
//
//	go test -run '^$' -bench Window -benchmem ./internal/silero
func BenchmarkWindow(b *testing.B) {
	m := loadModel(b)
	for _, rate := range []int{16000, 8000} {
		b.Run(strconv.Itoa(rate), func(b *testing.B) {
			audio := mixedAudio(b, rate)
			d, _ := m.NewDetector(rate)
			win := d.WindowSamples()
			n := len(audio) / win
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, _ = d.ProbabilityInt16(audio[i*win : (i+1)*win])
				i = (i + 1) % n
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/32e6, "cpu/realtime")
		})
	}
}
