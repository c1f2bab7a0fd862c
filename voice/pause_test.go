package voice

import (
	"context"
	"encoding/json"
	"iter"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

func TestReplyOnPauseTwoUtterances(t *testing.T) {
	t.Parallel()
	for _, loss := range []bool{false, true} {
		name := "clean"
		if loss {
			name = "10% loss"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := &replyRecorder{replyLen: 500 * time.Millisecond}
			s, srv := newTestStream(t, NewReplyOnPause(rec.reply), fastrtc.Audio, fastrtc.SendReceive)
			c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
			c.connect()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			defer func() { // the metrics timed both turns
				if m := s.Stats(); m.Turn.Count != 2 || m.Turn.Sum <= 0 || m.Turn.Sum > 2*time.Second {
					t.Errorf("turn latency histogram: %d turns, %v in all; want 2 (replies start at once)", m.Turn.Count, m.Turn.Sum)
				}
			}()
			logs := c.collectLogs(ctx)
			pcm, truth := speechFixture(t)
			var drop func(int) bool
			sent := pcmDuration(len(pcm))
			if loss {
				drop = func(i int) bool { return i%10 == 5 }
			}
			done := c.sendAudio(ctx, pcm, drop)
			capt := c.receiveAudio(5 * time.Second)
			<-done
			heard(t, s, sent) // lost packets count too: the server conceals them
			// Both replies generated, their log messages sent, their audio arrived.
			eventually(10*time.Second, func() bool {
				_, finished, _ := rec.snapshot()
				return finished >= 2 && len(logs()) >= 6 && capt.quiet(300*time.Millisecond)
			})
			utts, finished, _ := rec.snapshot()
			if len(utts) != 2 {
				t.Fatalf("%d replies (utterances %v), want 2", len(utts), utts)
			}
			for i, u := range utts {
				// The speech plus the default padding (0.1 s on each side).
				if want := truth[i] + 0.2; math.Abs(u.Seconds()-want) > 0.3 {
					t.Errorf("utterance %d: %.2f s, want %.2f ± 0.3", i, u.Seconds(), want)
				}
			}
			if finished != 2 {
				t.Errorf("%d replies finished", finished)
			}
			want := []string{"started_talking", "pause_detected", "response_starting", "started_talking", "pause_detected", "response_starting"}
			if got := logs(); len(got) != len(want) || got[2] != want[2] || got[5] != want[5] || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("log messages %v, want %v", got, want)
			}
			out, _, _ := capt.snapshot()
			if got := float64(len(out)) / 48000; got < 0.9 {
				t.Errorf("received %.2f s of reply audio, want ~1.0", got)
			}
			if f := zeroCrossFreq(out[2400:21600], 48000); math.Abs(f-300) > 6 {
				t.Errorf("reply tone at %.1f Hz, want 300", f)
			}
		})
	}
}

// TestReplyOnPauseInterrupt: the first utterance's reply is long (6 s); the second
// utterance starts 1.5 s after the first ends, during the reply.
func TestReplyOnPauseInterrupt(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "on-at-pause", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			canInterrupt := mode != "off"
			rec := &replyRecorder{replyLen: 6 * time.Second}
			s, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithCanInterrupt(canInterrupt),
				WithInterruptOnSpeechStart(mode == "on")), fastrtc.Audio, fastrtc.SendReceive)
			c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
			c.connect()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pcm, _ := speechFixture(t)
			done := c.sendAudio(ctx, pcm, nil)
			capt := c.receiveAudio(5 * time.Second)
			<-done
			heard(t, s, pcmDuration(len(pcm)))
			// Every reply started has ended (finished or cut), and its audio arrived.
			replies := 1
			if canInterrupt {
				replies = 2
			}
			eventually(15*time.Second, func() bool {
				utts, finished, cancelled := rec.snapshot()
				return len(utts) >= replies && finished+cancelled == len(utts) && capt.quiet(300*time.Millisecond)
			})
			utts, _, cancelled := rec.snapshot()
			out, _, _ := capt.snapshot()
			got := float64(len(out)) / 48000
			if canInterrupt {
				if len(utts) != 2 || cancelled != 1 {
					t.Errorf("replies %d, cancelled %d; want 2 replies, the first cancelled", len(utts), cancelled)
				}
				// The first reply is cut when the second utterance starts (~1.2 s in) or, at
				// pause, when it ends (~2.4 s in); the second reply plays its 6 s.
				lo, hi := 6.6, 7.8
				if mode == "on-at-pause" {
					lo, hi = 8.2, 9.6
				}
				if got < lo || got > hi {
					t.Errorf("received %.2f s of audio, want %.1f-%.1f", got, lo, hi)
				}
			} else {
				if len(utts) != 1 || cancelled != 0 {
					t.Errorf("replies %d, cancelled %d; want 1 reply, not cancelled", len(utts), cancelled)
				}
				if math.Abs(got-6) > 0.3 {
					t.Errorf("received %.2f s of audio, want the whole 6 s reply", got)
				}
			}
		})
	}
}

// TestReplyOnPauseStartupTriggerAndInputs: a start-up reply is spoken first; TriggerReply
// answers at once; with WithReplyInputs the client is asked for its inputs first and the
// reply sees them.
func TestReplyOnPauseStartupTriggerAndInputs(t *testing.T) {
	t.Parallel()
	gotVoice := make(chan string, 1)
	reply := func(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		select {
		case gotVoice <- s.Inputs().Text("voice"):
		default:
		}
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			yield(fastrtc.AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, 500, 0.3, 24000/2, 0)}, nil)
		}
	}
	startup := func(ctx context.Context, s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			yield(fastrtc.AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone(16000, 250, 0.3, 16000/2, 0)}, nil)
		}
	}
	s, srv := newTestStream(t, NewReplyOnPause(reply, WithStartup(startup), WithReplyInputs()), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Dropdown("voice", []string{"alto", "bass"}, "alto")))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	capt := c.receiveAudio(5 * time.Second)
	// The start-up audio (0.5 s) arrives: the part measured below.
	eventually(5*time.Second, func() bool { pcm, _, _ := capt.snapshot(); return len(pcm) >= 19200 })
	pcm, _, _ := capt.snapshot()
	if f := zeroCrossFreq(pcm[min(len(pcm), 2400):min(len(pcm), 19200)], 48000); math.Abs(f-250) > 5 {
		t.Fatalf("start-up audio at %.1f Hz, want 250 (%d samples)", f, len(pcm))
	}
	c.waitMsg("send_input", 2*time.Second) // on open, for the declared inputs
	// Trigger a reply; the stream asks for inputs first, the client answers with "bass".
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendAudio(ctx, make([]int16, 48000), nil)
	heard(t, s, 200*time.Millisecond) // the handler has some of it
	sess, err := s.Session(c.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.TriggerReply(); err != nil {
		t.Fatal(err)
	}
	c.waitMsg("send_input", 2*time.Second)
	postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "voice": "bass"})
	select {
	case v := <-gotVoice:
		if v != "bass" {
			t.Errorf("reply saw voice %v, want the client's posted \"bass\"", v)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("no reply within 3 s of the posted inputs")
	}
}

// speechFixture loads the two-utterance fixture and its truth.
func speechFixture(t testing.TB) ([]int16, []float64) {
	t.Helper()
	pcm, rate, ch, err := wav.ReadFile("../testdata/audio/two_utterances48k.wav")
	if err != nil || rate != 48000 || ch != 1 {
		t.Fatalf("fixture: %v (%d Hz, %d ch)", err, rate, ch)
	}
	b, err := os.ReadFile("../testdata/audio/two_utterances.json")
	if err != nil {
		t.Fatal(err)
	}
	var truth struct {
		Utterances []struct {
			StartMS float64 `json:"start_ms"`
			EndMS   float64 `json:"end_ms"`
		} `json:"utterances"`
	}
	if err := json.Unmarshal(b, &truth); err != nil || len(truth.Utterances) != 2 {
		t.Fatalf("fixture truth: %v", err)
	}
	var lens []float64
	for _, u := range truth.Utterances {
		lens = append(lens, (u.EndMS-u.StartMS)/1000)
	}
	return pcm, lens
}

// replyRecorder is a ReplyFunc that records utterances and answers with a tone of the given
// length.
type replyRecorder struct {
	mu         sync.Mutex
	utterances []time.Duration
	finished   int
	cancelled  int
	replyLen   time.Duration
}

func (r *replyRecorder) reply(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	r.mu.Lock()
	r.utterances = append(r.utterances, u.Duration())
	r.mu.Unlock()
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		n := int(r.replyLen / (20 * time.Millisecond))
		for i := 0; i < n; i++ {
			if !yield(fastrtc.AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, 300, 0.3, 480, i*480)}, nil) {
				r.mu.Lock()
				r.cancelled++
				r.mu.Unlock()
				return
			}
		}
		r.mu.Lock()
		r.finished++
		r.mu.Unlock()
	}
}

func (r *replyRecorder) snapshot() ([]time.Duration, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.utterances...), r.finished, r.cancelled
}

// collectLogs gathers the pause-detection log messages of a client.
func (c *testClient) collectLogs(ctx context.Context) func() []string {
	var mu sync.Mutex
	var logs []string
	go func() {
		for {
			select {
			case m := <-c.msgs:
				if m["type"] == "log" {
					if d, _ := m["data"].(string); d == "started_talking" || d == "pause_detected" || d == "response_starting" {
						mu.Lock()
						logs = append(logs, d)
						mu.Unlock()
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), logs...)
	}
}
