package fastrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/gorilla/websocket"
)

// This file is the WebSocket connection layer shared by the WebSocket audio route and the
// telephone route: reading with a size limit, serialised writes, keepalive, the close
// handshake, and the one event dispatch of both. What differs between the two protocols is
// a wsDialect (websocket.go: FastRTC's; telephone.go: Twilio's).

const (
	wsWriteTimeout = 10 * time.Second
	wsCloseWait    = time.Second // how long a closing side waits for the peer's close frame
)

// Errors of the WebSocket transports (internal: they reach clients as messages or close
// reasons).
var (
	errWSTooBig = errors.New("fastrtc: websocket message too big")
	errWSBinary = errors.New("fastrtc: binary websocket messages are not supported; send JSON text")
)

// wsDialect is what differs between the protocols spoken over a wsConn.
type wsDialect struct {
	// name is the log prefix ("websocket", "telephone").
	name string
	// controls says whether control messages (Session.Send, errors, notices of bad
	// messages, pongs, refusal JSON) go to the client; without, they are only logged.
	controls bool
	// start reads a start message: the session's id, metadata and media format. On a bad
	// start it reports the problem itself (and may close the connection) and returns false.
	start func(t *wsConn, m *wsMessage) (id string, meta map[string]string, f wsFormat, ok bool)
	// events are the dialect's own events: run once the session started, ignored before.
	events map[string]func(t *wsConn, m *wsMessage)
	// unknownHint ends the notice of an unknown event.
	unknownHint string
	// mediaPrefix is an outgoing media message up to its payload.
	mediaPrefix func(t *wsConn) []byte
	// inboundOnly drops media messages of a track other than "inbound".
	inboundOnly bool
	// onClear, if set, runs after the session's queued audio was cleared.
	onClear func(t *wsConn)
}

// wsMessage is any message a client of the WebSocket or telephone route sends.
type wsMessage = wire.Inbound

// wsConn is one WebSocket connection of the WebSocket or telephone route, and the transport
// of its session.
//
// Concurrency: one goroutine reads (the HTTP handler's before start, then the session's
// reader); any goroutine writes, through write, which serialises writes with wmu.
type wsConn struct {
	s       *Stream
	conn    *websocket.Conn
	d       *wsDialect
	log     *slog.Logger
	max     int64
	rbuf    bytes.Buffer
	live    bool        // a session started on this connection (reader's state)
	closing atomic.Bool // close began: read deadlines are no longer extended

	wmu       sync.Mutex
	closeSent bool

	sess      *Session
	format    wsFormat
	streamSID string  // telephone
	identity  *string // WithAuth's identity for the handshake (nil: no WithAuth)
	in        *audioIn
	dec       []byte  // decoded payload
	pcm       []int16 // its samples
}

func newWSConn(s *Stream, conn *websocket.Conn, d *wsDialect) *wsConn {
	t := &wsConn{s: s, conn: conn, d: d, max: s.cfg.ws.MaxMessageBytes, log: s.log}
	conn.SetCloseHandler(func(code int, text string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		t.writeClose(code, "") // echo the client's close
		return nil
	})
	return t
}

// upgrader returns the WebSocket upgrader of the stream's routes. Its buffers are small (1
// KiB; gorilla grows a message's read as it comes): a connection that never starts holds
// little.
func (s *Stream) upgrader(checkOrigin func(*http.Request) bool) *websocket.Upgrader {
	if checkOrigin == nil {
		checkOrigin = s.sameOrigin
	}
	return &websocket.Upgrader{HandshakeTimeout: 10 * time.Second, CheckOrigin: checkOrigin,
		ReadBufferSize: 1024, WriteBufferSize: 1024}
}

// sameOrigin is the default WebSocket origin check, as the POST routes have it: a handshake
// without an Origin (not a browser), from the page's own origin, or from one WithCORS allows.
func (s *Stream) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.originAllowed(origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	_, host := s.externalOrigin(r)
	return strings.EqualFold(u.Host, r.Host) || host != "" && strings.EqualFold(u.Host, host)
}

// maxWSStartMessage bounds a message before the session started (a start message is small):
// a connection that never starts must not make the server buffer MaxMessageBytes.
const maxWSStartMessage = 64 << 10

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

// send implements transport: control messages go to clients as text frames, if the dialect
// has them.
func (t *wsConn) send(b []byte) error {
	if !t.d.controls {
		t.log.Debug(t.d.name+": control message not sent", "msg", string(b))
		return nil
	}
	return t.write(b)
}

// stats implements transport: a WebSocket has only the media counts.
func (t *wsConn) stats(out *SessionStats) { out.Transport = t.d.name }

func (t *wsConn) kind() string { return t.d.name }

// flush implements transport: writes are synchronous, so nothing waits.
func (t *wsConn) flush(time.Duration) {}

// close implements transport: the close frame (its code says why the session ended), then
// a short wait for the client's.
func (t *wsConn) close(cause error) {
	t.closing.Store(true)
	code, reason := closeCodeFor(cause)
	t.writeClose(code, reason)
	_ = t.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
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

// extendReadDeadline sets the read deadline d from now, unless the connection is closing.
func (t *wsConn) extendReadDeadline(d time.Duration) error {
	if t.closing.Load() {
		return nil
	}
	err := t.conn.SetReadDeadline(time.Now().Add(d))
	if t.closing.Load() { // close ran meanwhile: keep its short deadline
		_ = t.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	}
	return err
}

// notice reports a bad message to the client ({"type":"error","message":...}), or, in a
// dialect without control messages, to the log only.
func (t *wsConn) notice(msg string) {
	if !t.d.controls {
		t.log.Warn(t.d.name+": bad message", "err", msg)
		return
	}
	if err := t.write(wire.EncodeNotice(wire.TypeError, msg)); err != nil {
		t.log.Debug("websocket error message", "err", err)
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
	limit := t.max
	if !t.live {
		limit = min(limit, maxWSStartMessage)
	}
	n, err := t.rbuf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errWSTooBig
	}
	if mt != websocket.TextMessage {
		return nil, errWSBinary
	}
	return t.rbuf.Bytes(), nil
}

// next reads and decodes the next message, reporting refused and malformed messages. It
// returns false when the connection is done (closed, failed, or closed for a too big message).
func (t *wsConn) next() (*wsMessage, bool) {
	for {
		b, err := t.read()
		switch {
		case errors.Is(err, errWSTooBig):
			if t.live {
				if t.sess.ctx.Err() == nil {
					t.notice(fmt.Sprintf("message larger than %d bytes", t.max))
					t.sess.end(errWSTooBig, "")
				}
			} else {
				t.notice(fmt.Sprintf("message larger than %d bytes before start", min(t.max, maxWSStartMessage)))
				t.closeAndDrain(websocket.CloseMessageTooBig, "message too big")
			}
			return nil, false
		case errors.Is(err, errWSBinary):
			t.notice(errWSBinary.Error())
			continue
		case err != nil:
			var ne interface{ Timeout() bool }
			switch {
			case !t.live:
				t.log.Debug("websocket closed before start", "err", err)
			case errors.As(err, &ne) && ne.Timeout() && !t.closing.Load():
				t.log.Info("websocket client unresponsive: ending the session", "idle", 2*t.s.cfg.ws.PingInterval)
			default:
				t.log.Debug("websocket closed", "err", err)
			}
			return nil, false
		}
		if t.live && t.sess.ctx.Err() != nil {
			continue // ending: wait for the close handshake
		}
		m := &wsMessage{}
		if err := json.Unmarshal(b, m); err != nil {
			t.notice(describeJSONError(err))
			continue
		}
		return m, true
	}
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

// dispatch handles one message, before or after the session started (t.live).
func (t *wsConn) dispatch(m *wsMessage) {
	switch m.Event {
	case wire.EventStart:
		if t.live {
			t.notice("invalid start: the session has already started")
			return
		}
		t.open(m)
	case wire.EventMedia:
		if !t.live {
			t.notice(`media before start: send {"event":"start","websocket_id":"<id>"} first`)
			return
		}
		if m.Media == nil {
			t.notice(`invalid media message: missing "media"`)
			return
		}
		if t.d.inboundOnly && m.Media.Track != "" && m.Media.Track != wire.TrackInbound {
			return
		}
		t.receive(m.Media.Payload)
	case wire.EventPing:
		if t.d.controls {
			_ = t.writeJSON(wire.EventMessage{Event: wire.EventPong})
		}
	case wire.EventStop:
		if t.live {
			t.sess.end(nil, "")
		} else {
			t.closeAndDrain(websocket.CloseNormalClosure, "")
		}
	case "":
		t.notice(`invalid message: no "event" field`)
	default:
		if h, ok := t.d.events[m.Event]; ok {
			if t.live {
				h(t, m)
			}
			return
		}
		t.notice(fmt.Sprintf("unknown event %q%s", m.Event, t.d.unknownHint))
	}
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

// isClosing reports whether this side sent its close frame.
func (t *wsConn) isClosing() bool {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.closeSent
}

// serveWS runs one upgraded connection on the HTTP handler's goroutine: it reads until a
// start message opens a session, then hands reading to a goroutine of the session, starts
// it, and waits for it to end.
func (s *Stream) serveWS(reqCtx context.Context, conn *websocket.Conn, d *wsDialect, release func()) {
	t := newWSConn(s, conn, d)
	if id, ok := identityOf(reqCtx); ok {
		t.identity = &id
	}
	defer func() { _ = conn.Close() }()
	defer release() // idempotent: given back at start, or here
	// Stream.Close ends a connection that has not started a session yet.
	stop := context.AfterFunc(s.closeCtx, func() {
		t.writeClose(websocket.CloseGoingAway, "stream closed")
		_ = conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	})
	defer stop()
	// Before start, the connection must start within the start timeout.
	if err := conn.SetReadDeadline(time.Now().Add(min(s.cfg.connectTimeout, wsStartTimeout))); err != nil {
		return
	}
	for !t.live {
		m, ok := t.next()
		if !ok {
			return
		}
		t.dispatch(m)
		if !t.live && t.isClosing() {
			return // refused, or stopped before start
		}
	}
	release() // started: no longer pending
	sess := t.sess
	if !stop() { // Stream.Close began: it ends the session itself, with 1000
		_ = conn.SetReadDeadline(time.Time{})
	}
	sess.goFn(func() {
		// The handler's start-up hook runs before its first Receive; meanwhile the
		// client's messages wait in the connection.
		select {
		case <-sess.started:
		case <-sess.ctx.Done():
			return
		}
		t.readLoop()
	})
	sess.goFn(t.keepalive)
	s.startSession(sess)
	<-sess.done
}

// open handles a start message: it opens the session on this connection (refusals are told
// and closed) and sets up its audio in the format the dialect resolved.
func (t *wsConn) open(m *wsMessage) {
	s := t.s
	id, meta, f, ok := t.d.start(t, m)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(s.closeCtx, admitTimeout)
	if t.identity != nil {
		ctx = withIdentity(ctx, *t.identity)
	}
	sess, err := s.openSession(ctx, id, meta, func(sess *Session) transport {
		t.sess, t.log = sess, sess.log
		return t
	})
	cancel()
	if err != nil {
		t.refuse(err)
		return
	}
	if !f.rateFixed {
		f.inRate, f.outRate = sess.layout.InputRate, sess.layout.OutputRate
	}
	t.format = f
	if s.mode.clientReceives() {
		out := newAudioOut(f.outRate, f.channels, t.audioSink())
		if t.d.onClear != nil {
			out.onClear = func() { t.d.onClear(t) }
		}
		out.sent = &sess.counters.audioOut
		sess.audioOut = out
	}
	if sess.handler != nil && s.mode.clientSends() {
		t.in = &audioIn{sess: sess, h: sess.handler, rate: sess.layout.InputRate, ch: sess.layout.InputChannels}
	}
	t.live = true
}

// refuse tells a client why its session cannot start and closes the connection.
func (t *wsConn) refuse(err error) {
	code := websocket.CloseNormalClosure
	var reason string
	fail, meta := t.s.refusal(err)
	switch {
	case fail != "":
		reason = fail
		if t.d.controls {
			_ = t.writeJSON(wire.Failed(meta))
		}
	case errors.Is(err, ErrStreamClosed):
		code, reason = websocket.CloseGoingAway, "stream closed"
	default: // the handler factory failed; the session has told the client and closed
		code, reason = websocket.CloseInternalServerErr, "handler failed"
	}
	t.log.Info(t.d.name+" session refused", "err", err)
	t.closeAndDrain(code, reason)
}

// keepalive pings the client and so lets the read deadline detect a vanished client.
func (t *wsConn) keepalive() {
	tick := time.NewTicker(t.s.cfg.ws.PingInterval)
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
// until the connection fails or closes; then the session ends.
func (t *wsConn) readLoop() {
	idle := 2 * t.s.cfg.ws.PingInterval
	t.conn.SetPongHandler(func(string) error { return t.extendReadDeadline(idle) })
	defer t.sess.end(nil, "")
	for {
		if err := t.extendReadDeadline(idle); err != nil {
			return
		}
		m, ok := t.next()
		if !ok {
			return
		}
		t.dispatch(m)
	}
}
