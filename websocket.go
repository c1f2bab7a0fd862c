package fastrtc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc/internal/mulaw"
)

// The encodings a WebSocketFormat may declare.
const (
	// EncodingMulaw is 8-bit G.711 mu-law, FastRTC's only WebSocket encoding.
	EncodingMulaw = "mulaw"
	// EncodingPCM16 is 16-bit signed little-endian linear PCM (interleaved for stereo).
	EncodingPCM16 = "pcm_s16le"
)

// WebSocketFormat is the audio format a client of GET /websocket/offer may declare in its
// start message. It is an extension of FastRTC's protocol; clients that do not send it get
// FastRTC's behaviour.
//
// # The WebSocket audio protocol
//
// Every message is a JSON text frame. The client opens GET /websocket/offer and sends
//
//	{"event":"start","websocket_id":"<id>"}
//
// which starts a session with that id (the id that POST /input_hook and GET /outputs take as
// webrtc_id). The concurrency limit is checked here, shared with the other transports: over
// it the server sends {"status":"failed","meta":{"error":"concurrency_limit_reached",
// "limit":N}} and closes the connection normally; a live session with the same id gets
// {"status":"failed","meta":{"error":"connection_already_exists"}}.
//
// Then both sides send {"event":"media","media":{"payload":"<base64>"}}. Without a declared
// format the client sends mono mu-law at the handler's input rate (AudioLayout.InputRate,
// 48000 Hz unless the handler says otherwise) and the server sends mono mu-law at the
// output rate (AudioLayout.OutputRate, else WithAudioOutputRate, default 24000 Hz), one
// message per 20 ms, paced in real time. {"event":"ping"} is answered with
// {"event":"pong"}; {"event":"stop"} ends the session. Control messages reach the client in the data-channel shapes
// ({"type":"log","data":...}, {"type":"send_input","data":[]}, {"type":"error",
// "message":...}, ...). A session that ends is closed with a close frame: 1000 for a normal
// end, 1009 after an oversized message, 1011 (with the error in the reason) after a failure.
//
// A bad message (not JSON, an unknown event, media before start, bad base64, a binary frame)
// is answered with {"type":"error","message":"..."} and otherwise ignored: the session goes
// on. A message larger than the limit (WithWebSocketMaxMessage) is answered the same way,
// then the connection is closed with code 1009.
//
// The server pings the connection (WithWebSocketPingInterval) and ends the session of a
// client that stops answering. A connection that has not sent start within the connect
// timeout (WithConnectTimeout) is closed.
//
// # The format extension
//
// A start message may carry a format, which then applies to both directions:
//
//	{"event":"start","websocket_id":"x","format":{"encoding":"pcm_s16le","sample_rate":16000,"channels":1}}
//
// Any field may be left out: encoding defaults to "mulaw", sample_rate to the rates above
// (a declared rate is used both ways), channels to 1. The server resamples between the
// declared format and the handler's own. An invalid format is answered with an error
// message and no session starts.
type WebSocketFormat struct {
	// Encoding is EncodingMulaw (also accepted: "audio/x-mulaw", "ulaw") or EncodingPCM16
	// (also accepted: "pcm", "s16le").
	Encoding string `json:"encoding,omitempty"`
	// SampleRate in Hz: a multiple of 50 in 8000..48000.
	SampleRate int `json:"sample_rate,omitempty"`
	// Channels is 1 or 2.
	Channels int `json:"channels,omitempty"`
}

// wsFormat is a resolved transport format.
type wsFormat struct {
	pcm       bool // 16-bit PCM, else mu-law
	inRate    int  // rate of the client's audio
	outRate   int  // rate of the server's audio
	channels  int
	rateFixed bool // the rates are set (declared, or the telephone's)
}

// resolve validates a declared format and fills in what it can.
func (f *WebSocketFormat) resolve() (wsFormat, error) {
	out := wsFormat{channels: 1}
	switch strings.ToLower(f.Encoding) {
	case "", EncodingMulaw, "audio/x-mulaw", "ulaw", "mu-law", "pcmu":
	case EncodingPCM16, "pcm", "s16le", "pcm16":
		out.pcm = true
	default:
		return out, fmt.Errorf("unknown encoding %q (want %q or %q)", f.Encoding, EncodingMulaw, EncodingPCM16)
	}
	if f.SampleRate != 0 {
		if f.SampleRate < 8000 || f.SampleRate > 48000 || f.SampleRate%50 != 0 {
			return out, fmt.Errorf("sample_rate %d must be a multiple of 50 in 8000..48000", f.SampleRate)
		}
		out.inRate, out.outRate, out.rateFixed = f.SampleRate, f.SampleRate, true
	}
	switch f.Channels {
	case 0, 1:
	case 2:
		out.channels = 2
	default:
		return out, fmt.Errorf("channels %d must be 1 or 2", f.Channels)
	}
	return out, nil
}

// wsOptions are the WebSocket and telephone settings of a Stream.
type wsOptions struct {
	maxMessage   int64
	pingInterval time.Duration
	checkOrigin  func(r *http.Request) bool
	twilioToken  string
	dtmf         func(s *Session, digit string)
}

const (
	defaultWSMaxMessage   = 1 << 20
	defaultWSPingInterval = 10 * time.Second
	wsWriteTimeout        = 10 * time.Second
	wsCloseWait           = time.Second // how long a closing side waits for the peer's close frame
)

func (o wsOptions) maxMsg() int64 {
	if o.maxMessage <= 0 {
		return defaultWSMaxMessage
	}
	return o.maxMessage
}

func (o wsOptions) ping() time.Duration {
	if o.pingInterval <= 0 {
		return defaultWSPingInterval
	}
	return o.pingInterval
}

// WithWebSocketMaxMessage limits the size of a message a client of the WebSocket and
// telephone routes may send (default 1 MiB; n <= 0 means the default). A larger message is
// answered with an error message and the connection is closed with code 1009.
func WithWebSocketMaxMessage(n int64) Option { return func(c *config) { c.ws.maxMessage = n } }

// WithWebSocketPingInterval sets how often the WebSocket and telephone routes send a
// WebSocket ping (default 10 s; d <= 0 means the default). A connection from which nothing
// (no message, no pong) arrived for twice that time is considered gone and its session ends,
// so clients that vanish without "stop" free their slot.
func WithWebSocketPingInterval(d time.Duration) Option {
	return func(c *config) { c.ws.pingInterval = d }
}

// WithWebSocketOriginCheck sets the function that accepts or refuses a handshake of GET
// /websocket/offer by its request (for example by its Origin header). The default accepts
// every origin, as FastRTC does; pass a check when browsers of other sites must not
// connect. The telephone route is not affected (Twilio sends no Origin; see
// WithTwilioAuthToken).
func WithWebSocketOriginCheck(fn func(r *http.Request) bool) Option {
	return func(c *config) { c.ws.checkOrigin = fn }
}

// audioRoutes are the audio-only transports' routes: the WebSocket audio route and the
// telephone routes. Only Audio streams have them.
func (s *Stream) audioRoutes() []route {
	if s.modality != Audio {
		return nil
	}
	return []route{
		{"/websocket/offer", http.HandlerFunc(s.serveWebSocket)},
		{"/telephone/incoming", http.HandlerFunc(s.serveTelephoneIncoming)},
		{"/telephone/handler", http.HandlerFunc(s.serveTelephoneHandler)},
	}
}

// upgrader returns the WebSocket upgrader of the stream's routes.
func (s *Stream) upgrader() *websocket.Upgrader {
	check := s.cfg.ws.checkOrigin
	if check == nil {
		check = func(*http.Request) bool { return true }
	}
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      check,
	}
}

// serveWebSocket is GET /websocket/offer: FastRTC's WebSocket audio protocol.
func (s *Stream) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader().Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("websocket upgrade", "err", err) // the upgrader wrote the HTTP error
		return
	}
	s.runWS(newWSConn(s, conn, false))
}

// Errors of the WebSocket transports (internal: they reach clients as messages or close
// reasons).
var (
	errWSTooBig = errors.New("fastrtc: websocket message too big")
	errWSBinary = errors.New("fastrtc: binary websocket messages are not supported; send JSON text")
)

// wsConn is one WebSocket connection of the WebSocket or telephone route, and the messenger
// of its session.
//
// Concurrency: one goroutine reads (the HTTP handler's before start, then the session's
// reader); any goroutine writes, through write, which serialises writes with wmu.
type wsConn struct {
	s     *Stream
	conn  *websocket.Conn
	phone bool // Twilio Media Streams dialect
	log   *slog.Logger
	max   int64
	rbuf  bytes.Buffer

	wmu       sync.Mutex
	closeSent bool

	sess        *Session
	out         atomic.Pointer[audioOut]
	format      wsFormat
	streamSID   string
	mediaPrefix []byte // the output media message up to the payload
	in          *audioIn
	dec         []byte  // decoded payload
	pcm         []int16 // its samples
}

func newWSConn(s *Stream, conn *websocket.Conn, phone bool) *wsConn {
	t := &wsConn{s: s, conn: conn, phone: phone, max: s.cfg.ws.maxMsg(), log: s.log}
	conn.SetCloseHandler(func(code int, text string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		t.writeClose(code, "") // echo the client's close
		return nil
	})
	return t
}

// write sends one text message.
func (t *wsConn) write(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.closeSent {
		return ErrSessionClosed
	}
	if err := t.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout)); err != nil {
		return fmt.Errorf("fastrtc: websocket write: %w", err)
	}
	if err := t.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("fastrtc: websocket write: %w", err)
	}
	return nil
}

func (t *wsConn) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("fastrtc: websocket: %w", err)
	}
	return t.write(b)
}

// writeClose sends a close frame once; nothing is written after it.
func (t *wsConn) writeClose(code int, reason string) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.closeSent {
		return
	}
	t.closeSent = true
	err := t.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, truncateReason(reason)),
		time.Now().Add(wsCloseWait))
	if err != nil {
		t.log.Debug("websocket close frame", "err", err)
	}
}

// truncateReason keeps a close reason within the 123 bytes a close frame allows.
func truncateReason(s string) string {
	const limit = 123
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// ping sends a WebSocket ping.
func (t *wsConn) ping() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.closeSent {
		return ErrSessionClosed
	}
	if err := t.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout)); err != nil {
		return fmt.Errorf("fastrtc: websocket ping: %w", err)
	}
	return nil
}

// sendMessage implements messenger: control messages go to FastRTC clients as text frames.
// Twilio accepts only media, mark and clear messages (anything else is a protocol error
// that may end the call), so on the telephone route they are dropped.
func (t *wsConn) sendMessage(b []byte) error {
	if t.phone {
		t.log.Debug("telephone: control message not sent", "msg", string(b))
		return nil
	}
	return t.write(b)
}

// notice reports a bad message to the client ({"type":"error","message":...}), or, on the
// telephone route, to the log only.
func (t *wsConn) notice(msg string) {
	if t.phone {
		t.log.Warn("telephone: bad message from Twilio", "err", msg)
		return
	}
	b, _ := json.Marshal(notice{Type: "error", Message: msg})
	if err := t.write(b); err != nil {
		t.log.Debug("websocket error message", "err", err)
	}
}

// flush waits until the queued output audio has been sent: the session's flushFn.
func (t *wsConn) flush(d time.Duration) {
	if out := t.out.Load(); out != nil {
		out.waitDrained(t.sess.ctx, d+out.queued())
	}
}

// read returns the next message (valid until the next call). It returns errWSTooBig or
// errWSBinary for messages it refuses, and the connection's error otherwise.
func (t *wsConn) read() ([]byte, error) {
	mt, r, err := t.conn.NextReader()
	if err != nil {
		return nil, err
	}
	t.rbuf.Reset()
	n, err := t.rbuf.ReadFrom(io.LimitReader(r, t.max+1))
	if err != nil {
		return nil, err
	}
	if n > t.max {
		return nil, errWSTooBig
	}
	if mt != websocket.TextMessage {
		return nil, errWSBinary
	}
	return t.rbuf.Bytes(), nil
}

// wsMessage is any message a client of the WebSocket or telephone route sends.
type wsMessage struct {
	Event       string           `json:"event"`
	WebSocketID string           `json:"websocket_id"`
	StreamSID   string           `json:"streamSid"`
	Format      *WebSocketFormat `json:"format"`
	Media       *struct {
		Payload string `json:"payload"`
		Track   string `json:"track"`
	} `json:"media"`
	Start *twilioStart `json:"start"`
	DTMF  *struct {
		Digit string `json:"digit"`
	} `json:"dtmf"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark"`
}

// describeJSONError says what is wrong with a message that is not valid JSON of the right shape.
func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid message: not JSON (at byte %d: %v)", se.Offset, err)
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("invalid message: want a JSON object, got JSON %s", te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("invalid message: field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return "invalid message: " + err.Error()
}

// runWS serves one connection on the handler's goroutine: it reads until a start message
// opens a session, then hands reading to the session and waits for it to end.
func (s *Stream) runWS(t *wsConn) {
	defer func() { _ = t.conn.Close() }()
	// Stream.Close ends a connection that has not started a session yet.
	stop := context.AfterFunc(s.closeCtx, func() {
		t.writeClose(websocket.CloseGoingAway, "stream closed")
		_ = t.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	})
	defer stop()
	// Before start, the connection must start within the connect timeout.
	if err := t.conn.SetReadDeadline(time.Now().Add(s.cfg.connectTimeout)); err != nil {
		return
	}
	for {
		b, err := t.read()
		switch {
		case errors.Is(err, errWSTooBig):
			t.notice(fmt.Sprintf("message larger than %d bytes", t.max))
			t.closeAndDrain(websocket.CloseMessageTooBig, "message too big")
			return
		case errors.Is(err, errWSBinary):
			t.notice(errWSBinary.Error())
			continue
		case err != nil:
			t.log.Debug("websocket closed before start", "err", err)
			return
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.notice(describeJSONError(err))
			continue
		}
		switch m.Event {
		case "start":
			sess, ok := s.startWS(t, &m)
			if sess != nil {
				if !stop() { // Stream.Close began: it closes the session itself, with 1000
					_ = t.conn.SetReadDeadline(time.Time{})
				}
				s.runWSSession(t, sess)
				return
			}
			if !ok {
				return // refused and closed
			}
		case "ping":
			if !t.phone {
				_ = t.writeJSON(map[string]string{"event": "pong"})
			}
		case "stop":
			t.closeAndDrain(websocket.CloseNormalClosure, "")
			return
		case "media":
			if t.phone {
				t.log.Warn("telephone: media before start")
			} else {
				t.notice(`media before start: send {"event":"start","websocket_id":"<id>"} first`)
			}
		case "connected", "mark", "dtmf":
			if !t.phone {
				t.notice(fmt.Sprintf("unknown event %q (want start, media, ping or stop)", m.Event))
			}
		case "":
			t.notice(`invalid message: no "event" field`)
		default:
			t.notice(unknownEvent(t.phone, m.Event))
		}
	}
}

func unknownEvent(phone bool, ev string) string {
	if phone {
		return fmt.Sprintf("unknown event %q", ev)
	}
	return fmt.Sprintf("unknown event %q (want start, media, ping or stop)", ev)
}

// closeAndDrain closes the connection from the reading goroutine: close frame, then read
// until the peer's close frame arrives (briefly).
func (t *wsConn) closeAndDrain(code int, reason string) {
	t.writeClose(code, reason)
	_ = t.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	for {
		if _, _, err := t.conn.NextReader(); err != nil {
			return
		}
	}
}

// startWS handles a start message: it checks it, reserves the session and starts its
// audio. It returns the session, or nil and whether the connection is still open (a bad
// start is only reported; a refused one is closed).
func (s *Stream) startWS(t *wsConn, m *wsMessage) (*Session, bool) {
	var (
		id   string
		meta map[string]string
		f    wsFormat
	)
	if t.phone {
		st := m.Start
		if st == nil {
			st = &twilioStart{}
		}
		id = st.StreamSID
		if id == "" {
			id = m.StreamSID
		}
		if id == "" {
			t.log.Warn("telephone: start without streamSid")
			t.closeAndDrain(websocket.ClosePolicyViolation, "start without streamSid")
			return nil, false
		}
		meta = st.metadata(id)
		f = wsFormat{inRate: 8000, outRate: 8000, channels: 1, rateFixed: true}
		t.streamSID = id
	} else {
		id = m.WebSocketID
		if id == "" {
			t.notice(`invalid start: missing field "websocket_id"`)
			return nil, true
		}
		if m.Format != nil {
			var err error
			if f, err = m.Format.resolve(); err != nil {
				t.notice("invalid start: format: " + err.Error())
				return nil, true
			}
		} else {
			f = wsFormat{channels: 1}
		}
	}
	sess := s.newSession(id)
	sess.meta = meta
	sess.msgs = t
	sess.flushFn = t.flush
	t.sess, t.log = sess, sess.log
	if err := s.reserve(sess); err != nil {
		sess.cancel(err)
		s.refuseWS(t, err)
		return nil, false
	}
	if err := s.bindSessionHandler(sess); err != nil {
		sess.fail(err)
		<-sess.done
		t.closeAndDrain(websocket.CloseInternalServerErr, "handler failed")
		return nil, false
	}
	if !f.rateFixed {
		f.inRate, f.outRate = sess.layout.InputRate, sess.layout.OutputRate
		if f.outRate == 0 {
			f.outRate = s.cfg.audioOpts.outputRate
		}
	}
	t.format = f
	if s.mode.clientReceives() {
		out := newAudioOut(f.outRate, f.channels, t.audioSink())
		if t.phone {
			out.onClear = t.sendClear
		}
		sess.audioOut = out
		t.out.Store(out)
	}
	if sess.handler != nil && s.mode.clientSends() {
		t.in = &audioIn{sess: sess, h: sess.handler, rate: sess.layout.InputRate, ch: sess.layout.InputChannels}
	}
	return sess, true
}

// refuseWS tells a client why its session cannot start and closes the connection.
func (s *Stream) refuseWS(t *wsConn, err error) {
	code, reason := websocket.CloseNormalClosure, ""
	var fail map[string]any
	switch {
	case errors.Is(err, ErrConcurrencyLimit):
		reason = failConcurrency
		fail = map[string]any{"status": "failed", "meta": map[string]any{"error": failConcurrency, "limit": s.cfg.concurrency}}
	case errors.Is(err, ErrConnectionExists):
		reason = failExists
		fail = map[string]any{"status": "failed", "meta": map[string]any{"error": failExists}}
	default: // the stream is closed
		code, reason = websocket.CloseGoingAway, "stream closed"
	}
	t.log.Info("websocket session refused", "err", err)
	if fail != nil && !t.phone {
		_ = t.writeJSON(fail)
	}
	t.closeAndDrain(code, reason)
}

// runWSSession runs a started session until it ends, on the HTTP handler's goroutine: the
// session's reader and keepalive run on session goroutines; this one closes the connection
// once the session's context is done (after queued audio was flushed), so that the reader
// returns and the session can finish.
func (s *Stream) runWSSession(t *wsConn, sess *Session) {
	readerDone, started := make(chan struct{}), make(chan struct{})
	sess.goFn(func() {
		defer close(readerDone)
		// The handler's start-up hook runs before its first Receive; meanwhile the
		// client's messages wait in the connection.
		select {
		case <-started:
		case <-sess.ctx.Done():
		}
		t.readLoop()
	})
	sess.goFn(func() { t.keepalive() })
	sess.markConnected()
	if len(s.cfg.inputs) > 0 {
		_ = sess.Send("send_input", []any{})
	}
	if s.startAudio(sess) {
		close(started)
	}

	<-sess.ctx.Done()
	code, reason := closeCodeFor(context.Cause(sess.ctx))
	t.writeClose(code, reason)
	wait := time.NewTimer(wsCloseWait)
	select {
	case <-readerDone:
	case <-wait.C:
	}
	wait.Stop()
	_ = t.conn.Close()
	<-sess.done
}

// closeCodeFor maps why a session ended to a WebSocket close code and reason.
func closeCodeFor(cause error) (int, string) {
	switch {
	case cause == nil || errors.Is(cause, ErrSessionClosed):
		return websocket.CloseNormalClosure, ""
	case errors.Is(cause, errWSTooBig):
		return websocket.CloseMessageTooBig, "message too big"
	default:
		return websocket.CloseInternalServerErr, cause.Error()
	}
}

// keepalive pings the client and so lets the read deadline detect a vanished client.
func (t *wsConn) keepalive() {
	tick := time.NewTicker(t.s.cfg.ws.ping())
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := t.ping(); err != nil {
				return
			}
		case <-t.sess.ctx.Done():
			return
		}
	}
}

// readLoop reads the client's messages for a started session, on a session goroutine,
// until the connection fails or closes.
func (t *wsConn) readLoop() {
	sess := t.sess
	idle := 2 * t.s.cfg.ws.ping()
	t.conn.SetPongHandler(func(string) error { return t.conn.SetReadDeadline(time.Now().Add(idle)) })
	for {
		if err := t.conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
			sess.end(nil, "")
			return
		}
		b, err := t.read()
		switch {
		case errors.Is(err, errWSTooBig):
			if sess.ctx.Err() == nil {
				t.notice(fmt.Sprintf("message larger than %d bytes", t.max))
				sess.end(errWSTooBig, "")
			}
			return
		case errors.Is(err, errWSBinary):
			t.notice(errWSBinary.Error())
			continue
		case err != nil:
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && sess.ctx.Err() == nil {
				t.log.Info("websocket client unresponsive: ending the session", "idle", idle)
			} else {
				t.log.Debug("websocket closed", "err", err)
			}
			sess.end(nil, "")
			return
		}
		if sess.ctx.Err() != nil {
			continue // ending: wait for the close handshake
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.notice(describeJSONError(err))
			continue
		}
		t.handle(&m)
	}
}

// handle processes one message of a started session.
func (t *wsConn) handle(m *wsMessage) {
	sess := t.sess
	switch m.Event {
	case "media":
		if m.Media == nil {
			t.notice(`invalid media message: missing "media"`)
			return
		}
		if t.phone && m.Media.Track != "" && m.Media.Track != "inbound" {
			return
		}
		t.receive(m.Media.Payload)
	case "ping":
		if !t.phone {
			_ = t.writeJSON(map[string]string{"event": "pong"})
		}
	case "stop":
		sess.end(nil, "")
	case "start":
		if !t.phone {
			t.notice("invalid start: the session has already started")
		}
	case "dtmf":
		if !t.phone {
			t.notice(unknownEvent(false, m.Event))
			return
		}
		if m.DTMF != nil && m.DTMF.Digit != "" {
			t.s.deliverDTMF(sess, m.DTMF.Digit)
		}
	case "mark":
		if !t.phone {
			t.notice(unknownEvent(false, m.Event))
			return
		}
		if m.Mark != nil {
			t.log.Debug("telephone: mark", "name", m.Mark.Name)
		}
	case "connected":
		if !t.phone {
			t.notice(unknownEvent(false, m.Event))
		}
	case "":
		t.notice(`invalid message: no "event" field`)
	default:
		t.notice(unknownEvent(t.phone, m.Event))
	}
}

// receive decodes a media payload and gives it to the handler in 20 ms pieces.
func (t *wsConn) receive(payload string) {
	sess := t.sess
	var err error
	t.dec, err = base64.StdEncoding.AppendDecode(t.dec[:0], []byte(payload))
	if err != nil {
		t.notice(fmt.Sprintf("invalid media payload: not base64: %v", err))
		return
	}
	if t.in == nil || len(t.dec) == 0 {
		return // the stream takes no audio from clients
	}
	f := t.format
	if f.pcm {
		if len(t.dec)%(2*f.channels) != 0 {
			t.notice(fmt.Sprintf("invalid media payload: %d bytes is not a whole number of %d-channel 16-bit samples", len(t.dec), f.channels))
			return
		}
		t.pcm = t.pcm[:0]
		for i := 0; i+1 < len(t.dec); i += 2 {
			t.pcm = append(t.pcm, int16(binary.LittleEndian.Uint16(t.dec[i:])))
		}
	} else {
		if len(t.dec)%f.channels != 0 {
			t.notice(fmt.Sprintf("invalid media payload: %d bytes is not a whole number of %d-channel samples", len(t.dec), f.channels))
			return
		}
		t.pcm = mulaw.Decode(t.pcm[:0], t.dec)
	}
	step := f.inRate / 50 * f.channels
	for i := 0; i < len(t.pcm); i += step {
		end := min(i+step, len(t.pcm))
		if err := t.in.receive(t.pcm[i:end], f.inRate, f.channels); err != nil {
			sess.fail(err)
			return
		}
	}
}

// audioSink returns the sink of the session's paced output: each 20 ms frame becomes one
// media message.
func (t *wsConn) audioSink() func([]int16, bool) error {
	if t.phone {
		sid, _ := json.Marshal(t.streamSID)
		t.mediaPrefix = fmt.Appendf(nil, `{"event":"media","streamSid":%s,"media":{"payload":"`, sid)
	} else {
		t.mediaPrefix = []byte(`{"event":"media","media":{"payload":"`)
	}
	var raw, msg []byte
	return func(frame []int16, _ bool) error {
		raw = raw[:0]
		if t.format.pcm {
			for _, v := range frame {
				raw = binary.LittleEndian.AppendUint16(raw, uint16(v))
			}
		} else {
			raw = mulaw.Encode(raw, frame)
		}
		msg = append(msg[:0], t.mediaPrefix...)
		msg = base64.StdEncoding.AppendEncode(msg, raw)
		msg = append(msg, `"}}`...)
		if err := t.write(msg); err != nil {
			// The client is gone (or the connection is closing): end normally.
			if t.sess.ctx.Err() == nil {
				t.log.Debug("websocket audio write", "err", err)
				t.sess.end(nil, "")
			}
		}
		return nil
	}
}
