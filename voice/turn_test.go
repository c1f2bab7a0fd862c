package voice

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
)

// scriptVAD says speech for the windows its script marks.
type scriptVAD struct {
	speech func(i int) bool
	i      int
}

func (v *scriptVAD) IsSpeech([]int16) (bool, error) { v.i++; return v.speech(v.i - 1), nil }
func (v *scriptVAD) Close() error                   { return nil }

// TestTurnDetectorMinInterruption: while a reply is audible, speech shorter than the minimum
// interruption (with breaks under 200 ms) neither starts a turn nor interrupts; 300 ms does,
// at the moment it reaches 300 ms; a break over 200 ms starts the count again.
func TestTurnDetectorMinInterruption(t *testing.T) {
	t.Parallel()
	cfg := NewReplyOnPause(func(context.Context, *fastrtc.Session, fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return nil
	}).cfg
	cases := []struct {
		name    string
		bursts  [][2]int // speech [from, to) in 20 ms windows
		startAt int      // window at which the turn starts, -1 for never
	}{
		{"cough 160 ms", [][2]int{{10, 18}}, -1},
		{"two 120 ms sounds 400 ms apart", [][2]int{{10, 16}, {36, 42}}, -1},
		{"uh-huh: 200 ms, 100 ms break, 80 ms", [][2]int{{10, 20}, {25, 29}}, -1},
		{"speech 600 ms", [][2]int{{10, 40}}, 24},
		{"200 ms, 100 ms break, 200 ms", [][2]int{{10, 20}, {25, 35}}, 29},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := &scriptVAD{speech: func(i int) bool {
				for _, b := range c.bursts {
					if i >= b[0] && i < b[1] {
						return true
					}
				}
				return false
			}}
			d := newTurnDetector(&cfg, v)
			started := -1
			for w := 0; w < 100; w++ {
				if err := d.process(make([]int16, 320), true, func(ev turnEvent) {
					if ev == turnStarted && started < 0 {
						started = w
					}
				}); err != nil {
					t.Fatal(err)
				}
			}
			if started != c.startAt {
				t.Errorf("turn started at window %d, want %d", started, c.startAt)
			}
		})
	}
	// Without a reply playing, FastRTC's rule applies: 200 ms of speech within 0.6 s.
	v := &scriptVAD{speech: func(i int) bool { return i >= 10 && i < 18 }} // 160 ms
	d := newTurnDetector(&cfg, v)
	for w := 0; w < 100; w++ {
		_ = d.process(make([]int16, 320), false, func(ev turnEvent) {
			if ev == turnStarted {
				t.Errorf("160 ms of speech started a turn")
			}
		})
	}
}

// TestReplyOnPauseMinInterruption: over a playing reply, a 160 ms sound (a slice of speech: a
// cough, an "uh") does not cut the reply nor start a turn; a whole utterance does. With
// WithMinInterruption(0) the same sound cuts the reply (so the test can tell).
func TestReplyOnPauseMinInterruption(t *testing.T) {
	t.Parallel()
	pcm, _ := speechFixture(t)
	// Utterance A and its pause (0-3.0 s), then during the reply a 160 ms slice of utterance B
	// at 4.0 s, silence, and the whole of utterance B at 5.5 s.
	const r = 48000
	audio := append([]int16(nil), pcm[:3*r]...)
	audio = append(audio, make([]int16, r)...)
	audio = append(audio, pcm[r*4000/1000:r*4160/1000]...)
	audio = append(audio, make([]int16, r*1340/1000)...)
	audio = append(audio, pcm[r*3557/1000:r*5200/1000]...)
	audio = append(audio, make([]int16, 2*r)...)
	for _, minInt := range []time.Duration{300 * time.Millisecond, 0} {
		t.Run(minInt.String(), func(t *testing.T) {
			t.Parallel()
			rec := &replyRecorder{replyLen: 5 * time.Second}
			s, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithMinInterruption(minInt)), fastrtc.Audio, fastrtc.SendReceive)
			c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
			c.connect()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := c.collectLogs(ctx)
			done := c.sendAudio(ctx, audio, nil)
			capt := c.receiveAudio(5 * time.Second)
			<-done
			heard(t, s, pcmDuration(len(audio)))
			// What played until 0.5 s after the audio ended is measured: B's reply is still
			// playing then (a measuring time, not a wait for an event).
			time.Sleep(500 * time.Millisecond)
			utts, _, cancelled := rec.snapshot()
			started := strings.Count(strings.Join(logs(), ","), "started_talking")
			out, _, _ := capt.snapshot()
			t.Logf("replies %d, cancelled %d, started_talking %d, %.2f s of reply audio", len(utts), cancelled, started, float64(len(out))/r)
			if minInt > 0 {
				// A's reply plays from ~3.0 s until B cuts it (~5.8 s); B's reply follows.
				if len(utts) != 2 || cancelled != 1 || started != 2 {
					t.Errorf("replies %d, cancelled %d, started_talking %d; want 2, 1 (by B), 2", len(utts), cancelled, started)
				}
				if got := float64(len(out)) / r; got < 2.5+1.5 {
					t.Errorf("%.2f s of reply audio: the first reply was cut before B", got)
				}
			} else if cancelled < 2 && len(utts) < 3 {
				t.Errorf("with no minimum the sound did not interrupt: replies %d, cancelled %d", len(utts), cancelled)
			}
		})
	}
}

// TestReplyOnPauseSilero: the two-utterance fixture over WebRTC with the Silero VAD: two
// replies, each to its utterance (length within 0.3 s of the speech plus padding).
func TestReplyOnPauseSilero(t *testing.T) {
	t.Parallel()
	m := sileroForTest(t)
	rec := &replyRecorder{replyLen: 500 * time.Millisecond}
	s, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithSilero(m, SileroOptions{})), fastrtc.Audio, fastrtc.SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pcm, truth := speechFixture(t)
	done := c.sendAudio(ctx, pcm, nil)
	capt := c.receiveAudio(5 * time.Second)
	<-done
	heard(t, s, pcmDuration(len(pcm)))
	// Both replies generated and their audio arrived.
	eventually(10*time.Second, func() bool {
		_, finished, _ := rec.snapshot()
		return finished >= 2 && capt.quiet(300*time.Millisecond)
	})
	utts, finished, _ := rec.snapshot()
	if len(utts) != 2 || finished != 2 {
		t.Fatalf("%d replies (utterances %v), %d finished; want 2", len(utts), utts, finished)
	}
	for i, u := range utts {
		if want := truth[i] + 0.2; abs(u.Seconds()-want) > 0.3 {
			t.Errorf("utterance %d: %.2f s, want %.2f ± 0.3", i, u.Seconds(), want)
		}
	}
	if out, _, _ := capt.snapshot(); float64(len(out))/48000 < 0.9 {
		t.Errorf("received %.2f s of reply audio, want ~1.0", float64(len(out))/48000)
	}
	if n := s.Stats().CodecContexts; n < 2 { // Opus decoder and encoder, plus the VAD
		t.Errorf("%d codec contexts while live", n)
	}
}

func abs(x float64) float64 { return max(x, -x) }

// TestSileroModel: WithSilero makes the Silero VAD (a 512-sample WindowedVAD) the
// detector; without it (nor WithVAD) the detector is the WebRTC VAD, and WithWebRTCVAD picks
// its mode; a file that is not a model is ErrBadModel; bad thresholds are ErrInvalidConfig.
func TestSileroModel(t *testing.T) {
	t.Parallel()
	m := sileroForTest(t)
	reply := func(context.Context, *fastrtc.Session, fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return nil
	}
	newVAD, which := NewReplyOnPause(reply, WithSilero(m, SileroOptions{})).detector()
	if !strings.HasPrefix(which, "Silero") {
		t.Errorf("WithSilero: detector %q, want Silero", which)
	}
	v, err := newVAD()
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := v.(WindowedVAD); !ok || w.WindowSamples() != 512 {
		t.Errorf("WithSilero's VAD %T is not Silero's", v)
	}
	_ = v.Close()
	for _, c := range []struct {
		name  string
		opts  []Option
		which string
	}{
		{"default", nil, "WebRTC VAD"},
		{"WithWebRTCVAD(2)", []Option{WithWebRTCVAD(2)}, "WebRTC VAD (mode 2)"},
		{"WithSilero then WithWebRTCVAD", []Option{WithSilero(m, SileroOptions{}), WithWebRTCVAD(1)}, "WebRTC VAD (mode 1)"},
	} {
		newVAD, which := NewReplyOnPause(reply, c.opts...).detector()
		if which != c.which {
			t.Errorf("%s: detector %q, want %q", c.name, which, c.which)
		}
		v, err := newVAD()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, ok := v.(webrtcVAD); !ok {
			t.Errorf("%s: VAD %T, want the WebRTC VAD", c.name, v)
		}
		if _, ok := v.(WindowedVAD); ok {
			t.Errorf("%s: the WebRTC VAD is windowed", c.name)
		}
		_ = v.Close()
	}
	if _, err := NewWebRTCVAD(4); err == nil {
		t.Errorf("WebRTC VAD mode 4: no error")
	}
	if _, err := NewReplyOnPause(reply, WithSilero(nil, SileroOptions{})).cfg.newVAD(); !errors.Is(err, fastrtc.ErrInvalidConfig) {
		t.Errorf("WithSilero(nil): %v, want ErrInvalidConfig", err)
	}
	bad := t.TempDir() + "/bad.onnx"
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSileroModelFile(bad); !errors.Is(err, ErrBadModel) {
		t.Errorf("LoadSileroModelFile: %v, want ErrBadModel", err)
	}
	if _, err := LoadSileroModel(bytes.NewReader([]byte("not a model"))); !errors.Is(err, ErrBadModel) {
		t.Errorf("LoadSileroModel: %v, want ErrBadModel", err)
	}
	if _, err := m.NewVAD(SileroOptions{Threshold: 1.5}); !errors.Is(err, fastrtc.ErrInvalidConfig) {
		t.Errorf("threshold 1.5: %v", err)
	}
	if _, err := m.NewVAD(SileroOptions{Threshold: 0.5, NegThreshold: 0.7}); !errors.Is(err, fastrtc.ErrInvalidConfig) {
		t.Errorf("negative threshold above threshold: %v", err)
	}
}
