package voice

import (
	"context"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

// The VAD quality benchmark: the WebRTC VAD and the Silero VAD side by side on the same audio,
// made here (the generator ships, not the audio): sentences spoken by espeak-ng, steady noise
// made by sox (pink, white) mixed in at several signal-to-noise ratios, and non-speech sounds
// (music-like chords, clicks) in the gaps between sentences. For each VAD, noise and SNR it
// reports:
//
//   - acc%: frame-level agreement with the truth (the clean speech's energy, 20 ms frames,
//     above -40 dB of its loudest frame, held 100 ms);
//   - miss%: truth-speech frames called non-speech; fa%: non-speech frames called speech;
//   - ok%: utterances that got exactly one reply from ReplyOnPause's turn detection (the same
//     code as a live session, fed the audio offline); extra: replies beyond one per utterance
//     (to noise, chords, clicks, or a sentence cut in two); none: utterances with no reply.
//
// Run (needs espeak-ng, sox and the model from ./scripts/silero.sh):
//
//	go test -run '^$' -bench VADQuality -benchtime 1x -v .   # -v prints the table
//
// VADQ_THR=0.5 and VADQ_MINSPEECH=250ms try other Silero settings; VADQ_DEBUG=1 logs where
// the replies fell.
func BenchmarkVADQuality(b *testing.B) {
	for _, tool := range []string{"espeak-ng", "sox"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	model := sileroForTest(b)
	dir := b.TempDir()
	sc := buildQualityScene(b, dir)
	detectors := []struct {
		name string
		new  func() (VAD, error)
	}{
		{"webrtc", func() (VAD, error) { return NewWebRTCVAD(3) }},
		{"silero", func() (VAD, error) { return model.NewVAD(benchSileroOpts()) }},
	}
	var table []string
	for _, noise := range []string{"pink", "white"} {
		noisePCM := soxNoise(b, dir, noise, len(sc.speech))
		for _, snr := range []float64{math.Inf(1), 20, 10, 5, 0} {
			if math.IsInf(snr, 1) && noise != "pink" {
				continue // clean is clean
			}
			mix := sc.mix(noisePCM, snr)
			for _, det := range detectors {
				name := fmt.Sprintf("%s/%s/snr=%g", det.name, noise, snr)
				if math.IsInf(snr, 1) {
					name = det.name + "/clean"
				}
				b.Run(name, func(b *testing.B) {
					var r qualityResult
					for b.Loop() {
						r = sc.evaluate(b, det.new, mix)
					}
					b.ReportMetric(r.acc, "acc%")
					b.ReportMetric(r.miss, "miss%")
					b.ReportMetric(r.fa, "fa%")
					b.ReportMetric(r.ok, "ok%")
					b.ReportMetric(float64(r.extra), "extra")
					b.ReportMetric(float64(r.none), "none")
					table = append(table, fmt.Sprintf("| %-6s | %-5s | %5s | %5.1f | %5.1f | %5.1f | %3.0f%% | %2d | %2d |",
						det.name, noise, snrLabel(snr), r.acc, r.miss, r.fa, r.ok, r.extra, r.none))
				})
			}
		}
	}
	b.Logf("%d utterances, %.0f s per condition\n| VAD    | noise | SNR   | acc%%  | miss%% | fa%%   | one reply | extra | none |\n%s",
		len(sc.utts), float64(len(sc.speech))/16000, strings.Join(table, "\n"))
}

func snrLabel(snr float64) string {
	if math.IsInf(snr, 1) {
		return "clean"
	}
	return fmt.Sprintf("%gdB", snr)
}

// sileroForTest loads the model scripts/silero.sh installs (or skips; FASTRTC_REQUIRE_SILERO
// makes that a failure).
func sileroForTest(tb testing.TB) *SileroModel {
	tb.Helper()
	p := "../testdata/silero/node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx"
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("FASTRTC_REQUIRE_SILERO") != "" {
			tb.Fatalf("Silero model missing (./scripts/silero.sh): %v", err)
		}
		tb.Skipf("Silero model not installed (./scripts/silero.sh): %v", err)
	}
	m, err := LoadSileroModelFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// qualityScene is the benchmark's audio at 16 kHz: clean speech with its truth, and the
// non-speech sounds, which are mixed with noise per condition.
type qualityScene struct {
	speech []float64 // utterances in place, zero elsewhere
	sounds []float64 // chords and clicks in some gaps
	truth  []bool    // per 20 ms frame
	utts   [][2]int  // utterance [start, end) in samples
	power  float64   // mean power of the speech frames
}

var qualitySentences = []string{
	"Hello, I would like to book a table for two tonight.",
	"What is the weather going to be like tomorrow morning?",
	"Please remind me to call my sister at five.",
	"Turn off the lights in the kitchen.",
	"How long does it take to drive to the airport?",
	"Can you play some relaxing music for me?",
	"I think the meeting was moved to Thursday afternoon.",
	"Yes.",
	"Tell me a short story about a dragon and a knight.",
	"Add milk, eggs and bread to my shopping list.",
}

func buildQualityScene(tb testing.TB, dir string) *qualityScene {
	tb.Helper()
	const rate = 16000
	sc := &qualityScene{}
	pos := rate // 1 s lead
	voices := []string{"en-us", "en", "en-us+f3", "en+m3"}
	for i, text := range qualitySentences {
		f := filepath.Join(dir, fmt.Sprintf("u%d.wav", i))
		raw := filepath.Join(dir, fmt.Sprintf("u%d_22k.wav", i))
		run(tb, "espeak-ng", "-v", voices[i%len(voices)], "-s", fmt.Sprint(150+10*(i%3)), "-w", raw, text)
		// 16 kHz, trimmed of leading and trailing silence: the utterance is the spoken part.
		run(tb, "sox", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", f,
			"rate", "-v", "silence", "1", "0.005", "-50d", "reverse", "silence", "1", "0.005", "-50d", "reverse")
		pcm, r, _, err := wav.ReadFile(f)
		if err != nil || r != rate {
			tb.Fatalf("%s: %v (rate %d)", f, err, r)
		}
		need := pos + len(pcm) + 3*rate
		sc.speech = append(sc.speech, make([]float64, need-len(sc.speech))...)
		for j, s := range pcm {
			sc.speech[pos+j] = float64(s)
		}
		sc.utts = append(sc.utts, [2]int{pos, pos + len(pcm)})
		pos += len(pcm) + 3*rate // 3 s gap: the pause is detected, then a sound may play
	}
	sc.sounds = make([]float64, len(sc.speech))
	var soundAt [][2]int
	rng := rand.New(rand.NewPCG(7, 7))
	for i, u := range sc.utts {
		at := u[1] + 1600*rate/1000 // after the reply to the sentence was due
		switch i % 3 {
		case 0: // chords, 4 x 200 ms: a music-like sound
			for n := 0; n < 4; n++ {
				f0 := []float64{261.6, 329.6, 392, 523.3}[n]
				for j := 0; j < rate/5; j++ {
					t := float64(j) / rate
					env := math.Min(1, float64(j)/160) * math.Exp(-t*3)
					sc.sounds[at+n*rate/5+j] = 6000 * env * (math.Sin(2*math.Pi*f0*t) +
						0.6*math.Sin(2*math.Pi*f0*1.25*t) + 0.5*math.Sin(2*math.Pi*f0*1.5*t))
				}
			}
			soundAt = append(soundAt, [2]int{at, at + 4*rate/5})
		case 1: // clicks: 8 sharp transients, 100 ms apart
			for n := 0; n < 8; n++ {
				for j := 0; j < 48; j++ {
					sc.sounds[at+n*rate/10+j] = 25000 * math.Exp(-float64(j)/5) * (rng.Float64()*2 - 1)
				}
			}
		}
	}
	// Truth: 20 ms frames of the clean speech above -40 dB of the loudest, held 100 ms.
	frames := len(sc.speech) / 320
	sc.truth = make([]bool, frames)
	energy := make([]float64, frames)
	peak := 0.0
	for f := range energy {
		e := 0.0
		for _, v := range sc.speech[f*320 : (f+1)*320] {
			e += v * v
		}
		energy[f] = e / 320
		peak = max(peak, energy[f])
	}
	hold, speechFrames := 0, 0
	for f, e := range energy {
		if e > peak*1e-4 {
			hold = 5
			sc.power += e
			speechFrames++
		}
		if hold > 0 {
			sc.truth[f] = true
			hold--
		}
	}
	sc.power /= float64(speechFrames)
	// The chords play as loud as the speech (mean power over their span); clicks keep their
	// peaks (a mouse click or a tap near the microphone).
	for _, span := range soundAt {
		p := 0.0
		for _, v := range sc.sounds[span[0]:span[1]] {
			p += v * v
		}
		g := math.Sqrt(sc.power / (p / float64(span[1]-span[0])))
		for i := span[0]; i < span[1]; i++ {
			sc.sounds[i] *= g
		}
	}
	return sc
}

// soxNoise makes n samples of steady noise with sox ("pink", "white", "brown").
func soxNoise(tb testing.TB, dir, kind string, n int) []float64 {
	tb.Helper()
	f := filepath.Join(dir, kind+".wav")
	secs := fmt.Sprintf("%.3f", float64(n)/16000+0.1)
	run(tb, "sox", "-D", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", f,
		"synth", secs, kind+"noise", "vol", "0.5")
	pcm, _, _, err := wav.ReadFile(f)
	if err != nil || len(pcm) < n {
		tb.Fatalf("%s: %v (%d samples)", f, err, len(pcm))
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(pcm[i])
	}
	return out
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
}

// mix returns speech + sounds + noise scaled to the SNR (noise power against the speech
// frames' power; the sounds are as loud as they were made).
func (sc *qualityScene) mix(noise []float64, snr float64) []int16 {
	np := 0.0
	for _, v := range noise {
		np += v * v
	}
	np /= float64(len(noise))
	gain := 0.0
	if !math.IsInf(snr, 1) {
		gain = math.Sqrt(sc.power / math.Pow(10, snr/10) / np)
	}
	out := make([]int16, len(sc.speech))
	for i := range out {
		v := sc.speech[i] + sc.sounds[i] + gain*noise[i]
		out[i] = int16(max(-32768, min(32767, math.Round(v))))
	}
	return out
}

type qualityResult struct {
	acc, miss, fa, ok float64
	extra, none       int
}

// evaluate runs one VAD over the mix: frame decisions against the truth, and the turn
// detector's replies per utterance.
func (sc *qualityScene) evaluate(tb testing.TB, newVAD func() (VAD, error), pcm []int16) qualityResult {
	tb.Helper()
	cfg := NewReplyOnPause(func(_ context.Context, _ *fastrtc.Session, _ fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return nil
	}).cfg
	// Frame decisions: each window's verdict covers its samples (a run confirmed later
	// covers its earlier windows too).
	v, err := newVAD()
	if err != nil {
		tb.Fatal(err)
	}
	speech := make([]bool, len(pcm))
	d := newTurnDetector(&cfg, v)
	var replies []int
	for at := 0; at+320 <= len(pcm); at += 320 {
		err := d.process(pcm[at:at+320], false, func(ev turnEvent) {
			if ev == turnPause {
				replies = append(replies, at+320)
				d.resetTurn()
			}
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	_ = v.Close()
	// Frame-level: a second pass of a fresh VAD, window by window.
	v2, err := newVAD()
	if err != nil {
		tb.Fatal(err)
	}
	win := 320
	if w, ok := v2.(WindowedVAD); ok {
		win = w.WindowSamples()
	}
	runs, _ := v2.(runVAD)
	for at := 0; at+win <= len(pcm); at += win {
		n := 0
		if runs != nil {
			n, err = runs.speechWindows(pcm[at : at+win])
		} else {
			var s bool
			s, err = v2.IsSpeech(pcm[at : at+win])
			if s {
				n = 1
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
		for i := max(0, at+win-n*win); i < at+win; i++ {
			speech[i] = true
		}
	}
	_ = v2.Close()
	var agree, hit, truthN, fa, quietN int
	for f, t := range sc.truth {
		s := speech[f*320+160]
		if s == t {
			agree++
		}
		if t {
			truthN++
			if s {
				hit++
			}
		} else {
			quietN++
			if s {
				fa++
			}
		}
	}
	r := qualityResult{
		acc:  100 * float64(agree) / float64(len(sc.truth)),
		miss: 100 * float64(truthN-hit) / float64(truthN),
		fa:   100 * float64(fa) / float64(quietN),
	}
	// Replies per utterance: a reply belongs to the utterance it follows (until the next one
	// starts); one before the first utterance is extra.
	counts := make([]int, len(sc.utts))
	for _, at := range replies {
		idx := -1
		for i, u := range sc.utts {
			if at >= u[0] {
				idx = i
			}
		}
		if idx < 0 {
			r.extra++
			continue
		}
		counts[idx]++
	}
	if os.Getenv("VADQ_DEBUG") != "" {
		tb.Logf("replies at %v; utterances %v; per utterance %v", replies, sc.utts, counts)
	}
	one := 0
	for _, c := range counts {
		switch {
		case c == 1:
			one++
		case c == 0:
			r.none++
		default:
			r.extra += c - 1
		}
	}
	r.ok = 100 * float64(one) / float64(len(sc.utts))
	return r
}

func benchSileroOpts() SileroOptions {
	var o SileroOptions
	if v := os.Getenv("VADQ_MINSPEECH"); v != "" {
		o.MinSpeech, _ = time.ParseDuration(v)
	}
	if v := os.Getenv("VADQ_THR"); v != "" {
		f, _ := strconv.ParseFloat(v, 32)
		o.Threshold = float32(f)
	}
	return o
}

// TestSileroTurnsAt0dB holds the quality benchmark's goal: at 0 dB SNR (pink and white noise,
// chords and clicks between the sentences) every sentence gets exactly one reply with Silero,
// while the WebRTC VAD, on the same audio, answers none (so the audio is hard).
func TestSileroTurnsAt0dB(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"espeak-ng", "sox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	model := sileroForTest(t)
	dir := t.TempDir()
	sc := buildQualityScene(t, dir)
	for _, noise := range []string{"pink", "white"} {
		mix := sc.mix(soxNoise(t, dir, noise, len(sc.speech)), 0)
		r := sc.evaluate(t, func() (VAD, error) { return model.NewVAD(SileroOptions{}) }, mix)
		if r.ok != 100 || r.extra != 0 {
			t.Errorf("Silero, %s noise at 0 dB: %.0f%% of sentences got one reply, %d extra, %d none", noise, r.ok, r.extra, r.none)
		}
		w := sc.evaluate(t, func() (VAD, error) { return NewWebRTCVAD(3) }, mix)
		if w.ok > 50 {
			t.Errorf("WebRTC VAD, %s noise at 0 dB: %.0f%% answered: the condition is not the hard one", noise, w.ok)
		}
		t.Logf("%s 0 dB: Silero %.0f%% one reply (acc %.1f%%), WebRTC VAD %.0f%% (acc %.1f%%)", noise, r.ok, r.acc, w.ok, w.acc)
	}
}
