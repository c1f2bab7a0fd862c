package fastrtc

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"iter"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc/internal/mulaw"
)

// wsMsg is a message a test client received.
type wsMsg struct {
	at  time.Time
	raw []byte
	m   map[string]any // nil if not a JSON object
}

func (m wsMsg) str(key string) string { s, _ := m.m[key].(string); return s }

// wsClient is a WebSocket client of the FastRTC or Twilio protocol. A reader goroutine
// queues everything the server sends (unbounded, so it never blocks) and records why the
// connection ended.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	queue  []wsMsg
	notify chan struct{}
	done   chan struct{}
	err    error // the read error, once done is closed
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// dialWS connects; with read false no reader runs, so pings are never answered.
func dialWS(t *testing.T, url string, hdr http.Header, read bool) *wsClient {
	t.Helper()
	conn, res, err := websocket.DefaultDialer.Dial(url, hdr)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	c := &wsClient{t: t, conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() {
		_ = conn.Close()
		if read {
			<-c.done
		}
	})
	if read {
		go c.readLoop()
	}
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		m := wsMsg{at: time.Now(), raw: b}
		_ = json.Unmarshal(b, &m.m)
		c.mu.Lock()
		c.queue = append(c.queue, m)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

func (c *wsClient) sendText(s string) {
	c.t.Helper()
	if err := c.trySend(s); err != nil {
		c.t.Errorf("send: %v", err)
	}
}

// trySend sends a text message, returning the error (the server may close first).
func (c *wsClient) trySend(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendText(string(b))
}

// next returns the next message, or false if none came within d or the connection ended.
func (c *wsClient) next(d time.Duration) (wsMsg, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			m := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return m, true
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-c.done:
			c.mu.Lock()
			n := len(c.queue)
			c.mu.Unlock()
			if n == 0 {
				return wsMsg{}, false
			}
		case <-deadline.C:
			return wsMsg{}, false
		}
	}
}

// waitFor returns the first message that matches, skipping others.
func (c *wsClient) waitFor(what string, d time.Duration, match func(wsMsg) bool) wsMsg {
	c.t.Helper()
	end := time.Now().Add(d)
	for {
		m, ok := c.next(time.Until(end))
		if !ok {
			c.t.Fatalf("no %s within %v (connection: %v)", what, d, c.readErr())
		}
		if match(m) {
			return m
		}
	}
}

func (c *wsClient) waitType(typ string, d time.Duration) wsMsg {
	c.t.Helper()
	return c.waitFor("message of type "+typ, d, func(m wsMsg) bool { return m.str("type") == typ })
}

// waitError waits for {"type":"error"} and checks that its message contains want.
func (c *wsClient) waitError(want string) {
	c.t.Helper()
	m := c.waitType("error", 5*time.Second)
	if msg := m.str("message"); !strings.Contains(msg, want) {
		c.t.Errorf("error message %q does not mention %q", msg, want)
	}
}

// pingPong checks the session (or the connection before start) still answers.
func (c *wsClient) pingPong() {
	c.t.Helper()
	c.send(map[string]string{"event": "ping"})
	c.waitFor("pong", 5*time.Second, func(m wsMsg) bool { return m.str("event") == "pong" })
}

func (c *wsClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// waitClosed waits until the server closed the connection and returns its close frame.
func (c *wsClient) waitClosed(d time.Duration) *websocket.CloseError {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.t.Fatalf("connection not closed within %v", d)
	}
	var ce *websocket.CloseError
	if !errors.As(c.readErr(), &ce) {
		c.t.Fatalf("connection ended with %v, want a close frame", c.readErr())
	}
	return ce
}

// streamAudio sends pcm (mono at rate) as 20 ms media messages, paced in real time, as
// mu-law or 16-bit PCM. extra, if set, builds each message from its payload (Twilio).
func (c *wsClient) streamAudio(ctx context.Context, pcm []int16, rate int, pcm16 bool, msg func(i int, payload string) any) <-chan struct{} {
	done := make(chan struct{})
	if msg == nil {
		msg = func(_ int, p string) any {
			return map[string]any{"event": "media", "media": map[string]string{"payload": p}}
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		n := rate / 50
		var raw []byte
		for i := 0; (i+1)*n <= len(pcm); i++ {
			frame := pcm[i*n : (i+1)*n]
			raw = raw[:0]
			if pcm16 {
				for _, v := range frame {
					raw = binary.LittleEndian.AppendUint16(raw, uint16(v))
				}
			} else {
				raw = mulaw.Encode(raw, frame)
			}
			b, _ := json.Marshal(msg(i, base64.StdEncoding.EncodeToString(raw)))
			c.wmu.Lock()
			err := c.conn.WriteMessage(websocket.TextMessage, b)
			c.wmu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return done
}

// mediaPCM decodes a media message's payload.
func mediaPCM(t *testing.T, m wsMsg, pcm16 bool) []int16 {
	t.Helper()
	media, _ := m.m["media"].(map[string]any)
	p, _ := media["payload"].(string)
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatalf("media payload: %v", err)
	}
	if !pcm16 {
		return mulaw.Decode(nil, raw)
	}
	out := make([]int16, len(raw)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
	}
	return out
}

// collectMedia gathers media messages until none came for quiet, returning them and the
// other messages.
func (c *wsClient) collectMedia(quiet time.Duration) (media, other []wsMsg) {
	for {
		m, ok := c.next(quiet)
		if !ok {
			return media, other
		}
		if m.str("event") == "media" {
			media = append(media, m)
		} else {
			other = append(other, m)
		}
	}
}

// waitSessions waits until the stream has n live sessions.
func waitSessions(t *testing.T, s *Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Sessions != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", s.Stats().Sessions, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWebSocketEchoTone: a tone sent over /websocket/offer comes back at its frequency and
// level, in FastRTC's default format (mu-law in at the handler's 48 kHz, out at 24 kHz) and
// in a declared one (16-bit PCM at 16 kHz both ways).
func TestWebSocketEchoTone(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		format  map[string]any
		inRate  int
		outRate int
		pcm16   bool
	}{
		{"mulaw default", nil, 48000, 24000, false},
		{"pcm_s16le 16k", map[string]any{"encoding": "pcm_s16le", "sample_rate": 16000}, 16000, 16000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, srv := newTestStream(t, echoFactory(), Audio, SendReceive)
			c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
			start := map[string]any{"event": "start", "websocket_id": "echo-" + strings.ReplaceAll(tc.name, " ", "-")}
			if tc.format != nil {
				start["format"] = tc.format
			}
			c.send(start)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src := tone(tc.inRate, 440, 0.5, tc.inRate*2, 0)
			done := c.streamAudio(ctx, src, tc.inRate, tc.pcm16, nil)
			<-done
			media, _ := c.collectMedia(500 * time.Millisecond)
			var out []int16
			for _, m := range media {
				pcm := mediaPCM(t, m, tc.pcm16)
				if len(pcm) != tc.outRate/50 {
					t.Fatalf("media message of %d samples, want 20 ms at %d Hz", len(pcm), tc.outRate)
				}
				out = append(out, pcm...)
			}
			if got := float64(len(out)) / float64(tc.outRate); got < 1.8 {
				t.Fatalf("received %.2f s of audio for 2 s sent", got)
			}
			body := out[tc.outRate/4 : len(out)-tc.outRate/4]
			if f := zeroCrossFreq(body, tc.outRate); math.Abs(f-440) > 440*0.01 {
				t.Errorf("echoed tone at %.1f Hz, want 440", f)
			}
			if db := 20 * math.Log10(rms(body)/rms(src)); math.Abs(db) > 1 {
				t.Errorf("echo level %+.2f dB from the source", db)
			}
			p := goertzelPower(body, tc.outRate, 440)
			if snr := 10 * math.Log10(p/(1-p)); snr < 25 {
				t.Errorf("SNR at 440 Hz: %.1f dB, want > 25", snr)
			}
		})
	}
}

// TestWebSocketPingPong: ping is answered before and after start; stop ends the session
// with a normal close.
func TestWebSocketPingPong(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.pingPong()
	c.send(map[string]any{"event": "start", "websocket_id": "pp"})
	c.pingPong()
	if st := s.Stats(); st.Sessions != 1 {
		t.Fatalf("%d sessions after start", st.Sessions)
	}
	sess, err := s.Session("pp")
	if err != nil {
		t.Fatal(err)
	}
	c.pingPong()
	c.send(map[string]any{"event": "stop"})
	if ce := c.waitClosed(5 * time.Second); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close code %d %q, want 1000", ce.Code, ce.Text)
	}
	<-sess.Done()
	if err := sess.Err(); err != nil {
		t.Errorf("session ended with %v", err)
	}
	waitSessions(t, s, 0)
	// stop before start closes the connection too.
	c2 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c2.pingPong()
	c2.send(map[string]any{"event": "stop"})
	if ce := c2.waitClosed(5 * time.Second); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close code %d %q, want 1000", ce.Code, ce.Text)
	}
}

// TestWebSocketBadInput sends every kind of bad message, before and after start: each gets
// an error message and the connection goes on, except an oversized message, which closes
// its own connection (1009) and nothing else.
func TestWebSocketBadInput(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive, WithWebSocket(WebSocketOptions{MaxMessageBytes: 64 << 10}))
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	binary := func(c *wsClient) {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if err := c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	before := []struct{ name, msg, want string }{
		{"not JSON", `{"event": "start"`, "not JSON"},
		{"garbage", `hello`, "not JSON"},
		{"not an object", `[1, 2]`, "JSON object"},
		{"no event", `{}`, `no "event"`},
		{"wrong field type", `{"event": 5}`, `field "event"`},
		{"unknown event", `{"event":"dance"}`, `unknown event "dance"`},
		{"media before start", `{"event":"media","media":{"payload":"AAAA"}}`, "before start"},
		{"start without id", `{"event":"start"}`, "websocket_id"},
		{"bad encoding", `{"event":"start","websocket_id":"b1","format":{"encoding":"opus"}}`, "encoding"},
		{"bad rate", `{"event":"start","websocket_id":"b1","format":{"sample_rate":12345}}`, "sample_rate"},
		{"bad channels", `{"event":"start","websocket_id":"b1","format":{"channels":3}}`, "channels"},
		{"id with newline", `{"event":"start","websocket_id":"b\nb"}`, "websocket_id"},
		{"id too long", `{"event":"start","websocket_id":"` + strings.Repeat("b", 200) + `"}`, "at most 128"},
	}
	for _, tc := range before {
		t.Run("before start/"+tc.name, func(t *testing.T) {
			c.sendText(tc.msg)
			c.waitError(tc.want)
			c.pingPong()
		})
	}
	t.Run("before start/binary", func(t *testing.T) {
		binary(c)
		c.waitError("binary")
		c.pingPong()
	})
	if n := s.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions after refused starts", n)
	}
	c.send(map[string]any{"event": "start", "websocket_id": "b1"})
	c.pingPong()
	after := []struct{ name, msg, want string }{
		{"not JSON", `{"event":"media",`, "not JSON"},
		{"bad base64", `{"event":"media","media":{"payload":"!!not base64!!"}}`, "base64"},
		{"media without media", `{"event":"media"}`, `missing "media"`},
		{"wrong payload type", `{"event":"media","media":{"payload":7}}`, `field "media.payload"`},
		{"unknown event", `{"event":"dance"}`, `unknown event "dance"`},
		{"twilio event", `{"event":"dtmf","dtmf":{"digit":"1"}}`, `unknown event "dtmf"`},
		{"second start", `{"event":"start","websocket_id":"b2"}`, "already started"},
	}
	for _, tc := range after {
		t.Run("after start/"+tc.name, func(t *testing.T) {
			c.sendText(tc.msg)
			c.waitError(tc.want)
			c.pingPong()
		})
	}
	t.Run("after start/binary", func(t *testing.T) {
		binary(c)
		c.waitError("binary")
		c.pingPong()
	})
	big := `{"event":"media","media":{"payload":"` + strings.Repeat("A", 70<<10) + `"}}`
	t.Run("oversized before start", func(t *testing.T) {
		// Before start the bound is 64 KiB at most, whatever MaxMessageBytes.
		c2 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
		_ = c2.trySend(big) // the server may close before the whole message is written
		c2.waitError("larger than 65536 bytes before start")
		if ce := c2.waitClosed(5 * time.Second); ce.Code != websocket.CloseMessageTooBig {
			t.Errorf("close %d %q, want 1009", ce.Code, ce.Text)
		}
	})
	t.Run("oversized after start", func(t *testing.T) {
		c3 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
		c3.send(map[string]any{"event": "start", "websocket_id": "big"})
		c3.pingPong()
		_ = c3.trySend(big)
		c3.waitError("larger than 65536 bytes")
		if ce := c3.waitClosed(5 * time.Second); ce.Code != websocket.CloseMessageTooBig || ce.Text != "message too big" {
			t.Errorf("close %d %q, want 1009 \"message too big\"", ce.Code, ce.Text)
		}
		waitSessions(t, s, 1)
	})
	// The first session was not affected: it still answers and echoes.
	c.pingPong()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-c.streamAudio(ctx, tone(48000, 440, 0.5, 48000/2, 0), 48000, false, nil)
	if media, _ := c.collectMedia(500 * time.Millisecond); len(media) < 15 {
		t.Errorf("%d media messages echoed for 25 sent", len(media))
	}
}

// TestWebSocketConcurrencyLimit: the limit counts WebRTC, WebSocket and telephone sessions
// together, and a slot is free again as soon as a session ends.
func TestWebSocketConcurrencyLimit(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive, WithConcurrencyLimit(2))
	rtc := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	rtc.connect()
	ws1 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	ws1.send(map[string]any{"event": "start", "websocket_id": "ws1"})
	ws1.pingPong()
	waitSessions(t, s, 2)

	t.Run("websocket over the limit", func(t *testing.T) {
		ws2 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
		ws2.send(map[string]any{"event": "start", "websocket_id": "ws2"})
		m := ws2.waitFor("failure", 5*time.Second, func(m wsMsg) bool { return m.str("status") == "failed" })
		meta, _ := m.m["meta"].(map[string]any)
		if meta["error"] != "concurrency_limit_reached" || meta["limit"] != float64(2) {
			t.Errorf("failure %s, want concurrency_limit_reached with limit 2", m.raw)
		}
		if ce := ws2.waitClosed(5 * time.Second); ce.Code != websocket.CloseNormalClosure {
			t.Errorf("close %d %q, want a normal close", ce.Code, ce.Text)
		}
	})
	t.Run("telephone over the limit", func(t *testing.T) {
		ph := dialWS(t, wsURL(srv, "/telephone/handler"), nil, true)
		ph.send(map[string]any{"event": "connected", "protocol": "Call", "version": "1.0.0"})
		ph.send(map[string]any{"event": "start", "streamSid": "MZover", "start": map[string]any{"streamSid": "MZover", "callSid": "CAover"}})
		ce := ph.waitClosed(5 * time.Second)
		if ce.Text != "concurrency_limit_reached" {
			t.Errorf("close %d %q, want the reason concurrency_limit_reached", ce.Code, ce.Text)
		}
		if m, ok := ph.next(0); ok {
			t.Errorf("Twilio was sent %s; it accepts only media, mark and clear", m.raw)
		}
	})
	t.Run("webrtc over the limit", func(t *testing.T) {
		c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
		r := c.offer()
		meta, _ := r["meta"].(map[string]any)
		if r["status"] != "failed" || meta["error"] != "concurrency_limit_reached" {
			t.Errorf("offer reply %v, want concurrency_limit_reached", r)
		}
	})
	t.Run("duplicate id", func(t *testing.T) {
		dup := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
		dup.send(map[string]any{"event": "start", "websocket_id": "ws1"})
		m := dup.waitFor("failure", 5*time.Second, func(m wsMsg) bool { return m.str("status") == "failed" })
		if meta, _ := m.m["meta"].(map[string]any); meta["error"] != "connection_already_exists" {
			t.Errorf("failure %s, want connection_already_exists", m.raw)
		}
		dup.waitClosed(5 * time.Second)
	})
	waitSessions(t, s, 2)
	ws1.send(map[string]any{"event": "stop"})
	ws1.waitClosed(5 * time.Second)
	waitSessions(t, s, 1)
	ws3 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	ws3.send(map[string]any{"event": "start", "websocket_id": "ws3"})
	ws3.pingPong()
	waitSessions(t, s, 2)
}

// emitOnce is a handler that queues one second of tone at once, then closes the stream.
type emitOnce struct{ n atomic.Int32 }

func (h *emitOnce) Receive(*Session, AudioFrame) error { return nil }
func (h *emitOnce) Emit(ctx context.Context, s *Session) (AudioFrame, error) {
	if h.n.Add(1) == 1 {
		return AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone(16000, 500, 0.4, 16000, 0)}, nil
	}
	s.End("bye")
	<-ctx.Done()
	return AudioFrame{}, ctx.Err()
}

// TestWebSocketCloseStream: End from the handler ends the session after the queued
// audio was sent: all of it arrives, then a normal close.
func TestWebSocketCloseStream(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, AudioHandlerFactory(func() AudioHandler { return &emitOnce{} }), Audio, SendReceive)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "cs"})
	ce := c.waitClosed(10 * time.Second)
	if ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close %d %q, want 1000", ce.Code, ce.Text)
	}
	media, other := c.collectMedia(0)
	if len(media) != 50 {
		t.Errorf("%d media messages before the close, want 50 (1 s)", len(media))
	}
	ended := false
	for _, m := range other {
		if m.str("type") == "end_stream" && m.str("data") == "bye" {
			ended = true
		}
	}
	if !ended {
		t.Errorf("no end_stream \"bye\" among %d messages", len(other))
	}
	waitSessions(t, s, 0)
}

// TestWebSocketPacing: a receive-mode source that produces 3 s at once is sent in real time
// (150 messages over 3 s ± 5%), then the session ends normally.
func TestWebSocketPacing(t *testing.T) {
	t.Parallel()
	src := AudioSource(func(s *Session) iter.Seq2[AudioFrame, error] {
		return func(yield func(AudioFrame, error) bool) {
			yield(AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone(16000, 500, 0.5, 16000*3, 0)}, nil)
		}
	})
	_, srv := newTestStream(t, src, Audio, Receive)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "pace"})
	c.waitClosed(10 * time.Second)
	media, _ := c.collectMedia(0)
	if len(media) < 149 || len(media) > 151 {
		t.Fatalf("%d media messages, want 150", len(media))
	}
	span := media[len(media)-1].at.Sub(media[0].at) + frameDuration
	if d := span.Seconds(); math.Abs(d-3) > 3*0.05 {
		t.Errorf("3 s of audio took %.2f s", d)
	}
}

// TestWebSocketInputsOutputs: the websocket_id works with /input_hook and /outputs, and the
// client gets send_input and fetch_output.
func TestWebSocketInputsOutputs(t *testing.T) {
	t.Parallel()
	var emitted atomic.Bool
	h := AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) {
		if x := s.Inputs().Float("x"); x != 0.5 && !emitted.Swap(true) {
			if err := s.Emit(map[string]float64{"x": x}); err != nil {
				return AudioFrame{}, err
			}
		}
		return AudioFrame{}, nil
	})
	_, srv := newTestStream(t, h, Audio, SendReceive, WithInputs(Slider("x", 0, 1, 0.1, 0.5)))
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "io"})
	c.waitType("send_input", 5*time.Second)
	if r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": "io", "x": 0.8}); r.status != http.StatusOK {
		t.Fatalf("input_hook: HTTP %d %s", r.status, r.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.streamAudio(ctx, make([]int16, 48000*5), 48000, false, nil)
	c.waitType("fetch_output", 5*time.Second)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/outputs?webrtc_id=io", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if line != `{"x":0.8}` {
				t.Errorf("output %s, want {\"x\":0.8}", line)
			}
			break
		}
	}
	c.send(map[string]any{"event": "stop"})
	c.waitClosed(5 * time.Second)
}

// shutdownEcho is an echo handler that reports its shutdown.
type shutdownEcho struct {
	AudioHandler
	down chan struct{}
}

func (h *shutdownEcho) Shutdown(*Session) { close(h.down) }

// TestWebSocketClientVanishes: clients that disappear without "stop" (the TCP connection
// drops, or the peer goes silent and stops answering pings) free their session, handler
// and slot; TestMain then finds no goroutine left.
func TestWebSocketClientVanishes(t *testing.T) {
	t.Parallel()
	downs := make(chan chan struct{}, 8)
	factory := AudioHandlerFactory(func() AudioHandler {
		h := &shutdownEcho{AudioHandler: echoFactory()(), down: make(chan struct{})}
		downs <- h.down
		return h
	})
	cases := []struct {
		name  string
		path  string
		start map[string]any
		read  bool
		drop  bool // drop TCP, else go silent
	}{
		{"websocket drops", "/websocket/offer", map[string]any{"event": "start", "websocket_id": "v1"}, true, true},
		{"websocket goes silent", "/websocket/offer", map[string]any{"event": "start", "websocket_id": "v2"}, false, false},
		{"telephone drops", "/telephone/handler", map[string]any{"event": "start", "streamSid": "MZv", "start": map[string]any{"streamSid": "MZv"}}, true, true},
		{"telephone goes silent", "/telephone/handler", map[string]any{"event": "start", "streamSid": "MZs", "start": map[string]any{"streamSid": "MZs"}}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newTestStream(t, factory, Audio, SendReceive, WithWebSocket(WebSocketOptions{PingInterval: 100 * time.Millisecond}))
			c := dialWS(t, wsURL(srv, tc.path), nil, tc.read)
			c.send(tc.start)
			ctx, cancel := context.WithCancel(context.Background())
			<-c.streamAudio(ctx, tone(48000, 440, 0.3, 48000/5, 0), 48000, false, nil)
			cancel()
			waitSessions(t, s, 1)
			down := <-downs
			if tc.drop {
				_ = c.conn.NetConn().Close()
			}
			select {
			case <-down:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler was not shut down")
			}
			waitSessions(t, s, 0)
			if st := s.Stats(); st.CodecContexts != 0 {
				t.Errorf("%d codec contexts left", st.CodecContexts)
			}
		})
	}
}

// TestWebSocketStreamClose: Stream.Close ends WebSocket sessions with a close frame.
func TestWebSocketStreamClose(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "sc"})
	c.pingPong()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ce := c.waitClosed(5 * time.Second); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close %d %q", ce.Code, ce.Text)
	}
	// A start after Close is refused.
	c2 := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	// The server may close it before the start goes out (Close already began): either way
	// it ends with 1001.
	_ = c2.trySend(`{"event":"start","websocket_id":"late"}`)
	if ce := c2.waitClosed(5 * time.Second); ce.Code != websocket.CloseGoingAway {
		t.Errorf("close %d %q, want 1001", ce.Code, ce.Text)
	}
}

// TestWebSocketRoutesOnlyForAudio: video streams have no WebSocket or telephone routes.
func TestWebSocketRoutesOnlyForAudio(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithoutUI())
	for _, path := range []string{"/websocket/offer", "/telephone/incoming", "/telephone/handler"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on a video stream: HTTP %d, want 404", path, res.StatusCode)
		}
	}
}

// TestWebSocketPreStartBounds: handshakes that have not started a session are bounded
// (WithPendingLimit: 200 idle ones held 520 MB), and the default origin check refuses pages
// of other sites, as the POST routes do.
func TestWebSocketPreStartBounds(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, echoFactory(), Audio, SendReceive, WithPendingLimit(3, 0))
	var idle []*wsClient
	for range 3 {
		idle = append(idle, dialWS(t, wsURL(srv, "/websocket/offer"), nil, true))
	}
	_, res, err := websocket.DefaultDialer.Dial(wsURL(srv, "/websocket/offer"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a 4th idle handshake: %v, want HTTP 503", err)
	}
	res.Body.Close()
	// One starts: its slot is free again.
	idle[0].send(map[string]any{"event": "start", "websocket_id": "prestart-0"})
	idle[0].pingPong()
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	_ = c.conn.Close()
	// The origin check, on a stream of its own (closed connections give their slots back
	// asynchronously).
	_, osrv := newTestStream(t, echoFactory(), Audio, SendReceive, WithCORS("https://app.example"))
	for _, o := range []struct {
		origin string
		ok     bool
	}{{"http://evil.example", false}, {"https://app.example", true}, {osrv.URL, true}} {
		conn, res, err := websocket.DefaultDialer.Dial(wsURL(osrv, "/websocket/offer"), http.Header{"Origin": {o.origin}})
		if o.ok && err != nil {
			t.Errorf("origin %s: %v, want accepted", o.origin, err)
		}
		if !o.ok && (err == nil || res == nil || res.StatusCode != http.StatusForbidden) {
			t.Errorf("origin %s: %v, want HTTP 403", o.origin, err)
		}
		if conn != nil {
			conn.Close()
		}
		if res != nil {
			res.Body.Close()
		}
	}
}
