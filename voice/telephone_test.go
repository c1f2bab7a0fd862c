package voice

import (
	"context"
	"fmt"
	"iter"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/resample"
)

// TestTelephoneCall emulates Twilio: connected, start (with streamSid and custom parameters),
// the two-utterance fixture as 8 kHz mu-law media every 20 ms, a mark and a DTMF digit, then
// stop. The first reply (4 s) is interrupted by the second utterance: the server sends
// "clear". The second reply (2 s) arrives whole, as 8 kHz mu-law paced in real time.
func TestTelephoneCall(t *testing.T) {
	t.Parallel()
	type replyInfo struct {
		meta map[string]string
		id   string
	}
	var (
		mu      sync.Mutex
		replies []replyInfo
		digits  []string
	)
	freqs := []float64{400, 1000}
	lens := []time.Duration{4 * time.Second, 2 * time.Second}
	reply := func(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		mu.Lock()
		n := len(replies)
		replies = append(replies, replyInfo{meta: s.Metadata(), id: s.ID()})
		mu.Unlock()
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			if n >= len(freqs) {
				return
			}
			for i := 0; i < int(lens[n]/(20*time.Millisecond)); i++ {
				if !yield(fastrtc.AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, freqs[n], 0.3, 480, i*480)}, nil) {
					return
				}
			}
		}
	}
	s, srv := newTestStream(t, NewReplyOnPause(reply), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithTelephone(fastrtc.TelephoneOptions{DTMF: func(s *fastrtc.Session, d string) {
			mu.Lock()
			digits = append(digits, s.ID()+":"+d)
			mu.Unlock()
		}}))
	c := dialWS(t, wsURL(srv, "/telephone/handler"))
	const sid = "MZ00000000000000000000000000000001"
	c.send(map[string]any{"event": "connected", "protocol": "Call", "version": "1.0.0"})
	c.send(map[string]any{"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": map[string]any{
		"accountSid": "AC123", "streamSid": sid, "callSid": "CA123", "tracks": []string{"inbound"},
		"mediaFormat":      map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
		"customParameters": map[string]string{"From": "+15550001", "To": "+15550002"},
	}})

	pcm48, _ := speechFixture(t)
	res, err := resample.New(48000, 8000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := res.Process(nil, pcm48)
	pcm = append(pcm, make([]int16, 8000*3/2)...) // Twilio keeps streaming after the caller stops
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seq := 1
	done := c.streamAudio(ctx, pcm, 8000, func(i int, payload string) any {
		seq++
		return map[string]any{"event": "media", "sequenceNumber": strconv.Itoa(seq), "streamSid": sid,
			"media": map[string]string{"track": "inbound", "chunk": strconv.Itoa(i + 1),
				"timestamp": strconv.Itoa(i * 20), "payload": payload}}
	})
	time.Sleep(time.Second) // a second into the call (test input)
	c.send(map[string]any{"event": "mark", "sequenceNumber": "900", "streamSid": sid, "mark": map[string]string{"name": "m1"}})
	c.send(map[string]any{"event": "dtmf", "sequenceNumber": "901", "streamSid": sid, "dtmf": map[string]string{"track": "inbound_track", "digit": "5"}})
	<-done
	c.send(map[string]any{"event": "stop", "sequenceNumber": "999", "streamSid": sid,
		"stop": map[string]string{"accountSid": "AC123", "callSid": "CA123"}})
	if ce := c.waitClosed(5 * time.Second); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close %d %q", ce.Code, ce.Text)
	}
	waitSessions(t, s, 0)

	// Classify what Twilio received.
	type frame struct {
		at    time.Time
		reply int // 0, 1, or -1 (neither)
	}
	var frames []frame
	var clears []time.Time
	for {
		m, ok := c.next(0)
		if !ok {
			break
		}
		if m.str("streamSid") != sid {
			t.Errorf("message without streamSid %s: %s", sid, m.raw)
		}
		switch m.str("event") {
		case "media":
			p := mediaPCM(t, m)
			if len(p) != 160 {
				t.Fatalf("media of %d samples, want 160 (20 ms at 8 kHz)", len(p))
			}
			f := frame{at: m.at, reply: -1}
			for i, hz := range freqs {
				if goertzelPower(p, 8000, hz) > 0.5 {
					f.reply = i
				}
			}
			frames = append(frames, f)
		case "clear":
			if len(m.m) != 2 {
				t.Errorf("clear message %s", m.raw)
			}
			clears = append(clears, m.at)
		default:
			t.Errorf("Twilio was sent %s; it accepts only media, mark and clear", m.raw)
		}
	}
	var first, second []time.Time
	for _, f := range frames {
		switch f.reply {
		case 0:
			first = append(first, f.at)
		case 1:
			second = append(second, f.at)
		}
	}
	if len(first) < 10 || len(first) > 150 {
		t.Errorf("%d frames of the first reply, want it cut well before its 200", len(first))
	}
	if n := len(second); n < 97 || n > 101 {
		t.Fatalf("%d frames of the second reply, want 100", n)
	}
	span := second[len(second)-1].Sub(second[0]) + frameDuration
	t.Logf("frames: %d of reply 1, %d of reply 2 over %.3f s, %d other; %d clears", len(first), len(second), span.Seconds(), len(frames)-len(first)-len(second), len(clears))
	if math.Abs(span.Seconds()-2) > 2*0.05 {
		t.Errorf("2 s of reply took %.3f s to arrive, want 2 s ± 5%%", span.Seconds())
	}
	// Barge-in: a clear after the first reply began and before the second; the first
	// reply's audio stops there.
	var barge time.Time
	for _, at := range clears {
		if len(first) > 0 && at.After(first[0]) && at.Before(second[0]) {
			barge = at
		}
	}
	if barge.IsZero() {
		t.Fatalf("no clear between the replies (clears at %v)", clears)
	}
	late := 0
	for _, at := range first {
		if at.After(barge) {
			late++
		}
	}
	if late > 1 {
		t.Errorf("%d frames of the interrupted reply after the clear", late)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(replies) != 2 {
		t.Fatalf("%d replies, want 2", len(replies))
	}
	want := map[string]string{fastrtc.MetaStreamSID: sid, fastrtc.MetaCallSID: "CA123", fastrtc.MetaAccountSID: "AC123", "From": "+15550001", "To": "+15550002"}
	if got := fmt.Sprint(replies[0].meta); got != fmt.Sprint(want) || replies[0].id != sid {
		t.Errorf("session %s metadata %v, want id %s and %v", replies[0].id, got, sid, want)
	}
	if len(digits) != 1 || digits[0] != sid+":5" {
		t.Errorf("DTMF %v, want [%s:5]", digits, sid)
	}
}
