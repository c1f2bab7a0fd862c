package voice

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
)

// TestWebSocketReplyOnPause: the two-utterance fixture over /websocket/offer gets two
// replies, with FastRTC's log messages.
func TestWebSocketReplyOnPause(t *testing.T) {
	t.Parallel()
	rec := &replyRecorder{replyLen: 500 * time.Millisecond}
	s, srv := newTestStream(t, NewReplyOnPause(rec.reply), fastrtc.Audio, fastrtc.SendReceive)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// FastRTC's own protocol: mu-law, 48 kHz up (the handler's input rate), 24 kHz down.
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{ID: "rop", PaceAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = c.Close()
		wg.Wait()
	})
	var (
		mu      sync.Mutex
		out     []int16
		lastPkt time.Time
		logs    []string
	)
	wg.Add(2)
	go func() { // the server's audio
		defer wg.Done()
		for {
			f, err := c.ReadAudio(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			out = append(out, f.Samples...)
			lastPkt = time.Now()
			mu.Unlock()
		}
	}()
	go func() { // its control messages
		defer wg.Done()
		for {
			m, err := c.Message(ctx)
			if err != nil {
				return
			}
			if m.Type == "log" {
				mu.Lock()
				logs = append(logs, m.Text())
				mu.Unlock()
			}
		}
	}()
	pcm, truth := speechFixture(t)
	// Paced in real time by the client: 20 ms of audio per message.
	if err := c.SendAudio(ctx, fastrtc.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm}); err != nil {
		t.Fatal(err)
	}
	heard(t, s, pcmDuration(len(pcm)))
	// Both replies generated, their log messages sent, their audio arrived.
	eventually(10*time.Second, func() bool {
		_, finished, _ := rec.snapshot()
		mu.Lock()
		defer mu.Unlock()
		return finished >= 2 && len(logs) >= 6 && time.Since(lastPkt) >= 300*time.Millisecond
	})
	utts, finished, _ := rec.snapshot()
	if len(utts) != 2 {
		t.Fatalf("%d replies (utterances %v), want 2", len(utts), utts)
	}
	for i, u := range utts {
		if want := truth[i] + 0.2; math.Abs(u.Seconds()-want) > 0.3 { // plus 0.1 s padding each side
			t.Errorf("utterance %d: %.2f s, want %.2f ± 0.3", i, u.Seconds(), want)
		}
	}
	if finished != 2 {
		t.Errorf("%d replies finished", finished)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "started_talking pause_detected response_starting started_talking pause_detected response_starting"
	if got := strings.Join(logs, " "); got != want {
		t.Errorf("log messages %q, want %q", got, want)
	}
	if got := float64(len(out)) / 24000; math.Abs(got-1) > 0.1 {
		t.Errorf("received %.2f s of reply audio, want 1.0", got)
	}
	if len(out) < 10800 {
		t.Fatalf("%d samples of reply audio", len(out))
	}
	if f := zeroCrossFreq(out[1200:10800], 24000); math.Abs(f-300) > 6 {
		t.Errorf("reply tone at %.1f Hz, want 300", f)
	}
}
