package client

import (
	"github.com/fastrtc-go/fastrtc/internal/pcm"

	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc/internal/mulaw"
	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/fastrtc-go/fastrtc/media"
)

// The audio encodings of the WebSocket route.
const (
	// EncodingMulaw is 8-bit G.711 mu-law, FastRTC's only WebSocket encoding.
	EncodingMulaw = wire.EncodingMulaw
	// EncodingPCM16 is 16-bit signed little-endian PCM (interleaved for stereo), an
	// extension of the Go server.
	EncodingPCM16 = wire.EncodingPCM16
)

// WebSocketOptions configures DialWebSocket. A nil *WebSocketOptions means the defaults:
// FastRTC's own protocol (mono mu-law, no declared format, 48 kHz up and 24 kHz down).
// Options are copied by DialWebSocket.
type WebSocketOptions struct {
	// ID is the websocket_id (default: 16 random hex digits); it is also the webrtc_id of
	// POST /input_hook and GET /outputs.
	ID string
	// Encoding, SampleRate and Channels declare the audio format in the start message (the
	// Go server's extension; it then applies to both directions). When all three are zero
	// no format is sent, as FastRTC's clients do: the audio is mono mu-law at
	// ServerInputRate up and ServerOutputRate down. Encoding is EncodingMulaw or
	// EncodingPCM16 (default mu-law); SampleRate a multiple of 50 in 8000..48000; Channels 1
	// or 2.
	Encoding   string
	SampleRate int
	Channels   int
	// ServerInputRate and ServerOutputRate are the rates the server takes and sends when
	// SampleRate is not declared: the handler's input rate (default 48000) and the stream's
	// output rate (default 24000).
	ServerInputRate, ServerOutputRate int
	// PaceAudio makes SendAudio sleep until each 20 ms message is due (real time); without
	// it the caller paces.
	PaceAudio bool
	// Dialer dials the WebSocket (default websocket.DefaultDialer); Header is sent with the
	// handshake.
	Dialer *websocket.Dialer
	Header http.Header
	// HTTPClient makes SetInput's and Outputs' requests (default http.DefaultClient).
	HTTPClient *http.Client
	// Logger receives debug logs (default: discarded).
	Logger *slog.Logger
	// MessageBuffer is how many control messages are kept for Message (default 256), and
	// AudioBuffer how many received audio messages are kept for ReadAudio (default 500:
	// 10 s); when full, the oldest is dropped.
	MessageBuffer, AudioBuffer int
}

// wsStart is the start message.
type wsStart = wire.Start

// wsFormat is the format a start message declares.
type wsFormat = wire.Format

func (o *WebSocketOptions) validate() (*wsFormat, error) {
	if o.ID == "" {
		o.ID = randomID()
	}
	var f *wsFormat
	if o.Encoding != "" || o.SampleRate != 0 || o.Channels != 0 {
		f = &wsFormat{Encoding: o.Encoding, SampleRate: o.SampleRate, Channels: o.Channels}
	}
	switch o.Encoding {
	case "", EncodingMulaw, EncodingPCM16:
	default:
		return nil, fmt.Errorf("client: WebSocketOptions.Encoding %q: want %q or %q", o.Encoding, EncodingMulaw, EncodingPCM16)
	}
	if o.SampleRate != 0 && (o.SampleRate < 8000 || o.SampleRate > 48000 || o.SampleRate%50 != 0) {
		return nil, fmt.Errorf("client: WebSocketOptions.SampleRate %d: want a multiple of 50 in 8000..48000", o.SampleRate)
	}
	switch o.Channels {
	case 0:
		o.Channels = 1
	case 1, 2:
	default:
		return nil, fmt.Errorf("client: WebSocketOptions.Channels %d: want 1 or 2", o.Channels)
	}
	for _, r := range []*int{&o.ServerInputRate, &o.ServerOutputRate} {
		if *r != 0 && (*r < 8000 || *r > 48000 || *r%50 != 0) {
			return nil, fmt.Errorf("client: WebSocketOptions server rate %d: want a multiple of 50 in 8000..48000", *r)
		}
	}
	if o.ServerInputRate == 0 {
		o.ServerInputRate = 48000
	}
	if o.ServerOutputRate == 0 {
		o.ServerOutputRate = 24000
	}
	if o.SampleRate != 0 {
		o.ServerInputRate, o.ServerOutputRate = o.SampleRate, o.SampleRate
	}
	if o.MessageBuffer < 0 || o.AudioBuffer < 0 {
		return nil, errors.New("client: WebSocketOptions buffer sizes must not be negative")
	}
	if o.MessageBuffer == 0 {
		o.MessageBuffer = 256
	}
	if o.AudioBuffer == 0 {
		o.AudioBuffer = 500
	}
	if o.Dialer == nil {
		o.Dialer = websocket.DefaultDialer
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// WebSocketConn is an audio session over GET {base}/websocket/offer.
//
// Concurrency: safe for concurrent use. SendAudio calls are serialised; ReadAudio and
// Message may be called from any goroutine (each item goes to one caller). A reader
// goroutine, started by DialWebSocket and ended by Close, receives everything.
type WebSocketConn struct {
	opts   WebSocketOptions
	log    *slog.Logger
	routes routes
	conn   *websocket.Conn
	pcm    bool

	wmu       sync.Mutex // serialises writes
	closeSent bool

	msgs  *queue[Message]
	audio *queue[media.AudioFrame]
	pong  chan struct{}

	readerDone chan struct{}
	errMu      sync.Mutex
	err        error // why the connection ended
	refused    *RefusedError

	smu     sync.Mutex // guards the send state
	rs      *resample.Resampler
	rsRate  int
	mixed   []int16
	pending []int16
	raw     []byte
	msg     []byte
	clock   pacer // real-time pacing (PaceAudio)

	closeOnce sync.Once
}

// DialWebSocket opens an audio session on the FastRTC server at baseURL (http(s)://... or
// ws(s)://..., with the stream's path prefix): it connects to {base}/websocket/offer, sends
// the start message and waits for the server to answer a ping, so that a refusal (a
// *RefusedError, errors.Is(err, ErrConcurrencyLimit) when the server is full) is returned
// here. The server runs the handler's start-up hook before answering, so Dial waits for it.
func DialWebSocket(ctx context.Context, baseURL string, opts *WebSocketOptions) (*WebSocketConn, error) {
	var o WebSocketOptions
	if opts != nil {
		o = *opts
	}
	format, err := o.validate()
	if err != nil {
		return nil, err
	}
	b, err := wsBase(baseURL)
	if err != nil {
		return nil, err
	}
	httpBase := "http" + strings.TrimPrefix(b, "ws")
	conn, res, err := o.Dialer.DialContext(ctx, b+"/websocket/offer", o.Header)
	if res != nil && res.Body != nil {
		_ = res.Body.Close() // the handshake's response: nothing to read (the status is kept)
	}
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("client: websocket: HTTP %d: %w", res.StatusCode, err)
		}
		return nil, fmt.Errorf("client: websocket: %w", err)
	}
	c := &WebSocketConn{
		opts: o, log: o.Logger.With("websocket_id", o.ID), routes: routes{base: httpBase, id: o.ID, hc: o.HTTPClient, hdr: o.Header},
		conn: conn, pcm: o.Encoding == EncodingPCM16,
		msgs: newQueue[Message](o.MessageBuffer), audio: newQueue[media.AudioFrame](o.AudioBuffer),
		pong: make(chan struct{}, 1), readerDone: make(chan struct{}),
	}
	go c.readLoop()
	err = c.writeJSON(ctx, wsStart{Event: wire.EventStart, WebSocketID: o.ID, Format: format})
	if err == nil {
		err = c.writeJSON(ctx, wire.EventMessage{Event: wire.EventPing})
	}
	if err != nil {
		// A server that refuses closes at once, perhaps before the ping: its reason
		// arrives on the reader.
		t := time.NewTimer(time.Second)
		select {
		case <-c.readerDone:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		_ = c.Close()
		if r := c.refusal(); r != nil {
			return nil, r
		}
		return nil, err
	}
	select {
	case <-c.pong:
		return c, nil
	case <-c.readerDone:
		_ = c.Close()
		if r := c.refusal(); r != nil {
			return nil, r
		}
		return nil, fmt.Errorf("client: websocket start: %w", c.Err())
	case <-ctx.Done():
		_ = c.Close()
		return nil, fmt.Errorf("client: websocket start: %w", ctx.Err())
	}
}

// wsBase converts a base URL to ws(s)://.
func wsBase(raw string) (string, error) {
	b, err := parseBase(raw, "http", "https")
	if err != nil {
		if b2, err2 := parseBase(raw, "ws", "wss"); err2 == nil {
			return b2, nil
		}
		return "", err
	}
	return "ws" + strings.TrimPrefix(b, "http"), nil
}

func (c *WebSocketConn) refusal() *RefusedError {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.refused
}

func (c *WebSocketConn) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Err returns why the session ended (ErrClosed for a normal end, an error with the close
// reason otherwise), or nil while it is live.
func (c *WebSocketConn) Err() error {
	select {
	case <-c.readerDone:
	default:
		return nil
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.refused != nil {
		return c.refused
	}
	return c.err
}

// Done returns a channel closed when the session has ended.
func (c *WebSocketConn) Done() <-chan struct{} { return c.readerDone }

// ID returns the websocket_id.
func (c *WebSocketConn) ID() string { return c.opts.ID }

// readLoop receives every message until the connection ends.
func (c *WebSocketConn) readLoop() {
	defer close(c.readerDone)
	defer c.msgs.close()
	defer c.audio.close()
	ch := c.opts.Channels
	rate := c.opts.ServerOutputRate
	var m struct {
		Event  string `json:"event"`
		Type   string `json:"type"`
		Status string `json:"status"`
		Media  *struct {
			Payload string `json:"payload"`
		} `json:"media"`
	}
	var dec []byte
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway):
				c.setErr(ErrClosed)
			case errors.As(err, &ce):
				c.setErr(fmt.Errorf("client: websocket closed by the server: %d %s: %w", ce.Code, ce.Text, ErrClosed))
			default:
				c.setErr(fmt.Errorf("client: websocket: %w: %w", ErrClosed, err))
			}
			return
		}
		m.Event, m.Type, m.Status, m.Media = "", "", "", nil
		if json.Unmarshal(b, &m) != nil {
			c.log.Debug("websocket: not JSON", "data", string(b))
			continue
		}
		switch {
		case m.Event == wire.EventMedia && m.Media != nil:
			dec, err = base64.StdEncoding.AppendDecode(dec[:0], []byte(m.Media.Payload))
			if err != nil {
				c.log.Debug("websocket: bad payload", "err", err)
				continue
			}
			var s []int16
			if c.pcm {
				s = make([]int16, len(dec)/2)
				for i := range s {
					s[i] = int16(binary.LittleEndian.Uint16(dec[2*i:]))
				}
			} else {
				s = mulaw.Decode(make([]int16, 0, len(dec)), dec)
			}
			s = s[:len(s)/ch*ch]
			c.audio.push(media.AudioFrame{SampleRate: rate, Channels: ch, Samples: s})
		case m.Event == wire.EventPong:
			select {
			case c.pong <- struct{}{}:
			default:
			}
		case m.Status == wire.StatusFailed:
			if f := failure(b); f != nil {
				c.errMu.Lock()
				c.refused = f
				c.errMu.Unlock()
			}
		case m.Type != "":
			if msg, ok := parseMessage(b); ok {
				c.msgs.push(msg)
			}
		default:
			c.log.Debug("websocket: unknown message", "data", string(b))
		}
	}
}

// write sends one text message, with ctx's deadline (at most 10 s).
func (c *WebSocketConn) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	dl := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = c.conn.SetWriteDeadline(dl)
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("client: websocket write: %w", ctx.Err())
		}
		return fmt.Errorf("client: websocket write: %w", err)
	}
	return nil
}

func (c *WebSocketConn) writeJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: websocket: %w", err)
	}
	return c.write(ctx, b)
}

// Send sends one raw JSON message (an object with an "event"), for events the client has
// no method for.
func (c *WebSocketConn) Send(ctx context.Context, v any) error { return c.writeJSON(ctx, v) }

// SendAudio sends PCM audio: converted to the wire format (the declared or the server's
// input rate and channel count, mu-law or 16-bit PCM) and sent as one media message per
// 20 ms; a remainder shorter than 20 ms waits for the next call. Without
// WebSocketOptions.PaceAudio the caller paces; with it SendAudio sleeps until each message
// is due.
func (c *WebSocketConn) SendAudio(ctx context.Context, f media.AudioFrame) error {
	if f.SampleRate <= 0 || (f.Channels != 1 && f.Channels != 2) || len(f.Samples)%f.Channels != 0 {
		return fmt.Errorf("client: send audio: invalid frame: %d Hz, %d channels, %d samples", f.SampleRate, f.Channels, len(f.Samples))
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	ch, rate := c.opts.Channels, c.opts.ServerInputRate
	c.mixed = pcm.AppendChannels(c.mixed[:0], f.Samples, f.Channels, ch)
	if f.SampleRate != rate {
		if c.rs == nil || c.rsRate != f.SampleRate {
			rs, err := resample.New(f.SampleRate, rate, ch)
			if err != nil {
				return fmt.Errorf("client: send audio: resample %d -> %d Hz: %w", f.SampleRate, rate, err)
			}
			c.rs, c.rsRate = rs, f.SampleRate
		}
		c.pending = c.rs.Process(c.pending, c.mixed)
	} else {
		c.pending = append(c.pending, c.mixed...)
	}
	step := rate / 50 * ch
	i := 0
	defer func() { c.pending = c.pending[:copy(c.pending, c.pending[i:])] }()
	for ; i+step <= len(c.pending); i += step {
		if c.opts.PaceAudio {
			if _, err := c.clock.wait(ctx); err != nil {
				return err
			}
		}
		frame := c.pending[i : i+step]
		c.raw = c.raw[:0]
		if c.pcm {
			for _, v := range frame {
				c.raw = binary.LittleEndian.AppendUint16(c.raw, uint16(v))
			}
		} else {
			c.raw = mulaw.Encode(c.raw, frame)
		}
		c.msg = wire.AppendMediaPrefix(c.msg[:0], "")
		c.msg = base64.StdEncoding.AppendEncode(c.msg, c.raw)
		c.msg = append(c.msg, wire.MediaSuffix...)
		if err := c.write(ctx, c.msg); err != nil {
			return err
		}
		c.clock.sentOne()
	}
	return nil
}

// ReadAudio returns the next audio message from the server, decoded to PCM at the wire's
// output rate (the declared rate, else ServerOutputRate) and channel count; the caller owns
// the Samples. After the session ends, queued audio is still returned, then the end's
// error.
func (c *WebSocketConn) ReadAudio(ctx context.Context) (media.AudioFrame, error) {
	return c.audio.pop(ctx, "read audio", c.endErr)
}

// Message returns the next control message ({"type":...}) from the server.
func (c *WebSocketConn) Message(ctx context.Context) (Message, error) {
	return c.msgs.pop(ctx, "message", c.endErr)
}

func (c *WebSocketConn) endErr() error {
	if err := c.Err(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return ErrClosed
}

// DroppedAudio returns how many received audio messages were dropped because AudioBuffer
// of them were waiting unread.
func (c *WebSocketConn) DroppedAudio() int { return c.audio.droppedCount() }

// SetInput sets the session's additional inputs (POST /input_hook with the websocket_id).
func (c *WebSocketConn) SetInput(ctx context.Context, inputs map[string]any) error {
	return c.routes.setInput(ctx, inputs)
}

// Outputs reads the session's additional outputs (GET /outputs); see Conn.Outputs.
func (c *WebSocketConn) Outputs(ctx context.Context) iter.Seq2[json.RawMessage, error] {
	return c.routes.outputs(ctx)
}

// Close ends the session: it sends {"event":"stop"} and a close frame, waits (up to 1 s)
// for the server's close, closes the connection and waits for the reader goroutine. It is
// idempotent.
func (c *WebSocketConn) Close() error {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.writeJSON(ctx, wire.EventMessage{Event: wire.EventStop})
		cancel()
		c.wmu.Lock()
		if !c.closeSent {
			c.closeSent = true
			_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		c.wmu.Unlock()
		t := time.NewTimer(time.Second)
		select {
		case <-c.readerDone:
		case <-t.C:
		}
		t.Stop()
		_ = c.conn.Close()
		<-c.readerDone
		c.setErr(ErrClosed)
	})
	return nil
}
