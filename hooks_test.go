package fastrtc_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
)

// turnTaker is a turn-taking handler written outside the package, on the public hooks only,
// doing what voice.ReplyOnPause does with them: it answers every burst of loud input followed
// by quiet (logging LogStartedTalking and LogPauseDetected) with a 600 Hz tone, after asking
// the client for its inputs (RequestInputs) and getting them (InputReceiver); it answers text
// from the data channel (TextReceiver) with a transcript and the tone; it replies at once on
// Session.TriggerReply (ReplyTrigger), records each turn's latency (ReplyStarted), registers
// a detector the session closes at its end (CloseOnEnd), logs with the session's logger,
// reports input changes in a log message (InputsChanged, Session.Go), and fails its session
// when the "fail" input is set.
type turnTaker struct {
	mu       sync.Mutex
	loud     int       // loud frames in the current turn
	quiet    int       // quiet frames since the last loud one
	pausedAt time.Time // when the current turn ended
	awaiting bool      // the client was asked for its inputs: reply once they are posted
	out      chan fastrtc.AudioFrame
	closes   *atomic.Int32 // detectors closed, over every session of the test
}

// detector stands for a VAD or a codec a handler opens per session.
type detector struct{ closes *atomic.Int32 }

func (d detector) Close() error { d.closes.Add(1); return nil }

func (h *turnTaker) AudioLayout() fastrtc.AudioLayout {
	return fastrtc.AudioLayout{InputRate: 16000, OutputRate: 16000}
}

func (h *turnTaker) Start(s *fastrtc.Session) error {
	s.CloseOnEnd(detector{h.closes})
	s.Logger().Debug("turn taker started")
	s.Go(func() { // owned by the session: its end waits for this goroutine
		changed := s.InputsChanged()
		for {
			select {
			case <-changed:
			case <-s.Context().Done():
				return
			}
			changed = s.InputsChanged() // before reading: a change from now on closes it
			in := s.Inputs()
			_ = s.Log("inputs " + in.String())
			if in.Bool("fail") {
				s.Fail(errors.New("asked to fail"))
				return
			}
		}
	})
	return nil
}

func (h *turnTaker) Receive(s *fastrtc.Session, f fastrtc.AudioFrame) error {
	var sum float64
	for _, v := range f.Samples {
		sum += float64(v) * float64(v)
	}
	rms := math.Sqrt(sum / float64(len(f.Samples)))
	h.mu.Lock()
	defer h.mu.Unlock()
	if rms > 1000 {
		if h.loud == 0 {
			_ = s.Log(fastrtc.LogStartedTalking)
		}
		h.loud, h.quiet = h.loud+1, 0
		return nil
	}
	h.quiet++
	if h.loud >= 5 && h.quiet >= 10 && !h.awaiting { // a pause after speech: take the turn
		h.loud, h.quiet = 0, 0
		_ = s.Log(fastrtc.LogPauseDetected)
		h.pausedAt, h.awaiting = time.Now(), true
		return s.RequestInputs() // the reply starts when they are posted
	}
	return nil
}

// InputsPosted implements fastrtc.InputReceiver: the client answered RequestInputs.
func (h *turnTaker) InputsPosted(s *fastrtc.Session, names []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.awaiting {
		h.awaiting = false
		_ = s.Log("posted " + strings.Join(names, ","))
		h.replyLocked(s)
	}
}

// ReceiveText implements fastrtc.TextReceiver: typed text is a turn of its own.
func (h *turnTaker) ReceiveText(s *fastrtc.Session, text string) {
	_ = s.Transcript(fastrtc.RoleUser, text)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pausedAt = time.Now()
	h.replyLocked(s)
}

// TriggerReply implements fastrtc.ReplyTrigger.
func (h *turnTaker) TriggerReply(s *fastrtc.Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pausedAt = time.Now()
	h.replyLocked(s)
	return nil
}

func (h *turnTaker) replyLocked(s *fastrtc.Session) {
	s.ClearAudio()
	_ = s.Log("replying")
	pausedAt := h.pausedAt
	s.Go(func() {
		tone := make([]int16, 16000/5) // 200 ms of 600 Hz
		for i := range tone {
			tone[i] = int16(8000 * math.Sin(2*math.Pi*600*float64(i)/16000))
		}
		select {
		case h.out <- fastrtc.AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone}:
			s.ReplyStarted(pausedAt)
			_ = s.Log(fastrtc.LogResponseStarting)
		case <-s.Context().Done():
		}
	})
}

func (h *turnTaker) Emit(ctx context.Context, s *fastrtc.Session) (fastrtc.AudioFrame, error) {
	select {
	case f := <-h.out:
		return f, nil
	case <-ctx.Done():
		return fastrtc.AudioFrame{}, ctx.Err()
	}
}

// wsAudioClient speaks the WebSocket audio route with 16 kHz PCM.
type wsAudioClient struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan map[string]any
	pcm  chan []int16
	done chan struct{}
}

func dialAudio(t *testing.T, srv *httptest.Server, id string) *wsAudioClient {
	t.Helper()
	conn, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/websocket/offer", nil)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &wsAudioClient{t: t, conn: conn, msgs: make(chan map[string]any, 64), pcm: make(chan []int16, 512), done: make(chan struct{})}
	t.Cleanup(func() { _ = conn.Close(); <-c.done })
	start := map[string]any{"event": "start", "websocket_id": id, "format": map[string]any{"encoding": "pcm_s16le", "sample_rate": 16000}}
	if err := conn.WriteJSON(start); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		for {
			var m map[string]any
			if err := conn.ReadJSON(&m); err != nil {
				close(c.msgs)
				return
			}
			if m["event"] == "media" {
				b, _ := base64.StdEncoding.DecodeString(m["media"].(map[string]any)["payload"].(string))
				s := make([]int16, len(b)/2)
				for i := range s {
					s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
				}
				select {
				case c.pcm <- s:
				default:
				}
				continue
			}
			c.msgs <- m
		}
	}()
	return c
}

// send sends n 20 ms frames of a loud 300 Hz tone (loud) or silence.
func (c *wsAudioClient) send(n int, loud bool) {
	for i := 0; i < n; i++ {
		b := make([]byte, 640)
		for j := 0; j < 320; j++ {
			v := 0.0
			if loud {
				v = 10000 * math.Sin(2*math.Pi*300*float64(i*320+j)/16000)
			}
			binary.LittleEndian.PutUint16(b[2*j:], uint16(int16(v)))
		}
		msg := map[string]any{"event": "media", "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(b)}}
		if err := c.conn.WriteJSON(msg); err != nil {
			c.t.Fatal(err)
		}
	}
}

// waitLog waits for a log message starting with prefix, an error (prefix "error"), or a
// message of type prefix.
func (c *wsAudioClient) waitLog(prefix string) map[string]any {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("connection closed before log %q", prefix)
			}
			if d, _ := m["data"].(string); m["type"] == "log" && strings.HasPrefix(d, prefix) {
				return m
			}
			if m["type"] == prefix {
				return m
			}
		case <-timeout:
			c.t.Fatalf("no log %q", prefix)
		}
	}
}

// toneEnergyAt returns the share of the signal's energy at freq (Goertzel).
func toneEnergyAt(s []int16, freq, rate float64) float64 {
	var total, s1, s2 float64
	k := 2 * math.Cos(2*math.Pi*freq/rate)
	for _, v := range s {
		x := float64(v)
		total += x * x
		s0 := x + k*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - k*s1*s2
	if total == 0 {
		return 0
	}
	return 2 * power / (float64(len(s)) * total)
}

// waitTone collects the server's audio until it holds 100 ms of a 600 Hz tone.
func (c *wsAudioClient) waitTone() {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-c.pcm:
			if len(s) >= 320 && toneEnergyAt(s, 600, 16000) > 0.8 {
				return
			}
		case <-timeout:
			c.t.Fatal("no 600 Hz reply")
		}
	}
}

// TestSiblingTurnTaker: a turn-taking handler outside the package, built on the public
// hooks, takes turns, is triggered, sees input changes and fails only its own session.
func TestSiblingTurnTaker(t *testing.T) {
	t.Parallel()
	var closes atomic.Int32
	factory := func() fastrtc.AudioHandler {
		return &turnTaker{out: make(chan fastrtc.AudioFrame, 8), closes: &closes}
	}
	stream, err := fastrtc.New(fastrtc.AudioHandlerFactory(factory), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Checkbox("fail", false), fastrtc.Text("name", "")))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stream.Handler())
	defer func() {
		srv.Close()
		_ = stream.Close()
		if st := stream.Stats(); st.Sessions != 0 || st.CodecContexts != 0 || closes.Load() != 2 {
			t.Errorf("after Close: %d sessions, %d contexts; %d of 2 detectors closed", st.Sessions, st.CodecContexts, closes.Load())
		}
	}()
	a, b := dialAudio(t, srv, "a"), dialAudio(t, srv, "b")
	a.waitLog(fastrtc.MessageSendInput) // the stream asks a new session for its inputs
	b.waitLog(fastrtc.MessageSendInput)

	// A turn: speech, then a pause; the client is asked for its inputs, posts them, and
	// the reply's tone follows.
	a.send(10, true)
	a.waitLog(fastrtc.LogStartedTalking)
	a.send(15, false)
	a.waitLog(fastrtc.LogPauseDetected)
	a.waitLog(fastrtc.MessageSendInput)
	if err := stream.SetInput("a", map[string]any{"name": "ada"}); err != nil { // as /input_hook
		t.Fatal(err)
	}
	if m := a.waitLog("posted "); m["data"] != "posted name" {
		t.Errorf("InputsPosted: %v", m)
	}
	a.waitLog("replying")
	a.waitLog(fastrtc.LogResponseStarting)
	a.waitTone()
	if n := stream.Stats().Turn.Count; n != 1 {
		t.Errorf("turn latency observations after one reply: %d", n)
	}
	if st := stream.Stats(); st.CodecContexts < 2 {
		t.Errorf("the sessions' detectors are not counted: %d contexts", st.CodecContexts)
	}

	// TriggerReply reaches the handler through ReplyTrigger.
	sess, err := stream.Session("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.TriggerReply(); err != nil {
		t.Fatal(err)
	}
	a.waitLog("replying")
	a.waitTone()

	// An input change wakes the handler's goroutine.
	if err := stream.SetInput("a", map[string]any{"name": "bob"}); err != nil {
		t.Fatal(err)
	}
	if m := a.waitLog("inputs "); !strings.Contains(m["data"].(string), `"name":"bob"`) {
		t.Fatalf("inputs log %v", m)
	}

	// Fail ends session a only: its client is told, its detector is closed, b goes on.
	if err := stream.SetInput("a", map[string]any{"fail": true}); err != nil {
		t.Fatal(err)
	}
	if m := a.waitLog("error"); !strings.Contains(m["message"].(string), "asked to fail") {
		t.Fatalf("error message %v", m)
	}
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("failed session did not end")
	}
	if !strings.Contains(sess.Err().Error(), "asked to fail") {
		t.Fatalf("Err %v", sess.Err())
	}
	if n := closes.Load(); n != 1 {
		t.Errorf("detectors closed after session a ended: %d, want 1", n)
	}
	b.send(10, true)
	b.send(15, false)
	b.waitLog(fastrtc.MessageSendInput)
	if err := stream.SetInput("b", map[string]any{"name": "cy"}); err != nil {
		t.Fatal(err)
	}
	b.waitLog("replying")
	b.waitTone()
	if ids := stream.Sessions(); len(ids) != 1 || ids[0] != "b" {
		t.Fatalf("sessions %v, want [b]", ids)
	}
}

// TestSiblingTextReceiver: text a WebRTC client sends on the data channel reaches the outside
// handler (TextReceiver), which answers with a transcript line and its tone.
func TestSiblingTextReceiver(t *testing.T) {
	t.Parallel()
	var closes atomic.Int32
	factory := func() fastrtc.AudioHandler {
		return &turnTaker{out: make(chan fastrtc.AudioFrame, 8), closes: &closes}
	}
	stream, err := fastrtc.New(fastrtc.AudioHandlerFactory(factory), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithSettingEngine(loopbackOnly))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stream.Handler())
	defer func() {
		srv.Close()
		_ = stream.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL, &client.Options{SendAudio: true, ReceiveAudio: true, SettingEngine: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMessage(ctx, `{"type": "text", "data": "what time is it"}`); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.Message(ctx)
		if err != nil {
			t.Fatalf("no transcript: %v", err)
		}
		if m.Type == fastrtc.MessageTranscript {
			if !strings.Contains(string(m.Data), `"text":"what time is it"`) || !strings.Contains(string(m.Data), `"role":"user"`) {
				t.Errorf("transcript %s", m.Data)
			}
			break
		}
	}
	var got []int16 // the reply, decoded from Opus: 600 Hz
	for len(got) < 48000/10 {
		f, err := c.ReadAudio(ctx)
		if err != nil {
			t.Fatalf("after %d samples of reply: %v", len(got), err)
		}
		if len(f.Samples) > 0 && toneEnergyAt(f.Samples, 600, float64(f.SampleRate)) > 0.5 {
			got = append(got, f.Samples...)
		}
	}
}

// loopbackOnly restricts a SettingEngine to 127.0.0.1, so tests never touch other networks.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// TestChatOutputs: with WithChatOutputs, Session.Transcript's output is FastRTC's chat
// message ({"message": {"role", "content"}}), the data channel still gets the transcript line,
// and PartialTranscript reaches the data channel only.
func TestChatOutputs(t *testing.T) {
	t.Parallel()
	talker := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		return fastrtc.AudioFrame{}, nil
	})
	stream, err := fastrtc.New(talker, fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithSettingEngine(loopbackOnly), fastrtc.WithChatOutputs())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stream.Handler())
	defer func() { srv.Close(); _ = stream.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL, &client.Options{SendAudio: true, ReceiveAudio: true, SettingEngine: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := stream.Session(c.ID())
	if err != nil {
		t.Fatal(err)
	}
	outs, err := stream.Outputs(ctx, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.PartialTranscript(fastrtc.RoleUser, "what is", false); err != nil {
		t.Fatal(err)
	}
	if err := sess.Transcript(fastrtc.RoleUser, "what is the weather"); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-outs:
		if string(o) != `{"message":{"content":"what is the weather","role":"user"}}` {
			t.Errorf("output %s, want FastRTC's chat message", o)
		}
	case <-ctx.Done():
		t.Fatal("no output")
	}
	var types []string
	for len(types) < 2 {
		m, err := c.Message(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case fastrtc.MessageTranscriptPartial:
			if !strings.Contains(string(m.Data), `"text":"what is"`) || !strings.Contains(string(m.Data), `"final":false`) {
				t.Errorf("partial %s", m.Data)
			}
			types = append(types, m.Type)
		case fastrtc.MessageTranscript:
			types = append(types, m.Type)
		}
	}
	if types[0] != fastrtc.MessageTranscriptPartial || types[1] != fastrtc.MessageTranscript {
		t.Errorf("data channel messages %v: want the partial, then the line", types)
	}
}
