package openai_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc/realtime"
)

// modelServer is a local stand-in for OpenAI's Realtime endpoint: it speaks the GA
// protocol's events as the API reference describes them (names, fields, base64 PCM16 at
// 24 kHz), and hands each connection to the test, which plays the model's side.
type modelServer struct {
	srv   *httptest.Server
	conns chan *modelConn
}

// modelConn is one bridge connection as the model sees it.
type modelConn struct {
	t      testing.TB
	ws     *websocket.Conn
	header http.Header
	query  string
	events chan clientEvent // every client event but input_audio_buffer.append
	mu     sync.Mutex
	audio  []int16 // the appended audio, decoded (24 kHz)
	closed chan struct{}
	wmu    sync.Mutex
}

// clientEvent is a client event as received.
type clientEvent struct {
	Type string
	Raw  map[string]any
	At   time.Time
}

func newModelServer(t testing.TB) *modelServer {
	m := &modelServer{conns: make(chan *modelConn, 4)}
	up := websocket.Upgrader{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/realtime" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &modelConn{t: t, ws: ws, header: r.Header.Clone(), query: r.URL.RawQuery, events: make(chan clientEvent, 256), closed: make(chan struct{})}
		go c.readLoop()
		c.send(map[string]any{"type": "session.created", "event_id": "ev_0", "session": map[string]any{"type": "realtime", "id": "sess_1"}})
		m.conns <- c
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// url is the endpoint for Options.BaseURL.
func (m *modelServer) url() string {
	return "ws" + strings.TrimPrefix(m.srv.URL, "http") + "/v1/realtime"
}

// accept waits for the bridge's next connection.
func (m *modelServer) accept(ctx context.Context) *modelConn {
	select {
	case c := <-m.conns:
		return c
	case <-ctx.Done():
		panic("no connection from the bridge")
	}
}

func (c *modelConn) readLoop() {
	defer close(c.closed)
	defer close(c.events)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var raw map[string]any
		if err := json.Unmarshal(data, &raw); err != nil {
			c.t.Errorf("model: a client event that is not JSON: %q", data)
			return
		}
		typ, _ := raw["type"].(string)
		if typ == "input_audio_buffer.append" {
			pcm, err := realtime.DecodePCM(nil, raw["audio"].(string))
			if err != nil {
				c.t.Errorf("model: append: %v", err)
			}
			c.mu.Lock()
			c.audio = append(c.audio, pcm...)
			c.mu.Unlock()
			continue
		}
		c.events <- clientEvent{Type: typ, Raw: raw, At: time.Now()}
	}
}

// send writes one server event.
func (c *modelConn) send(v any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Logf("model: send: %v", err)
	}
}

// next waits for the next client event of type typ (others are skipped and returned in
// skipped order only through the log).
func (c *modelConn) next(ctx context.Context, typ string) clientEvent {
	c.t.Helper()
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				c.t.Fatalf("model: connection closed while waiting for %s", typ)
			}
			if ev.Type == typ {
				return ev
			}
			c.t.Logf("model: skipped %s while waiting for %s", ev.Type, typ)
		case <-ctx.Done():
			c.t.Fatalf("model: no %s", typ)
		}
	}
}

// appended returns the audio appended so far.
func (c *modelConn) appended() []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.audio...)
}

// audioDeltas sends d of a tone at freq as response.output_audio.delta events of 100 ms,
// all at once (faster than real time, as the service does).
func (c *modelConn) audioDeltas(resp, item string, freq float64, d time.Duration) {
	n := int(d / (100 * time.Millisecond))
	for i := 0; i < n; i++ {
		pcm := make([]int16, 2400)
		for j := range pcm {
			pcm[j] = int16(8000 * sin(freq, i*2400+j, 24000))
		}
		c.send(map[string]any{"type": "response.output_audio.delta", "event_id": "ev_d", "response_id": resp,
			"item_id": item, "output_index": 0, "content_index": 0, "delta": realtime.EncodePCM(pcm)})
	}
}
