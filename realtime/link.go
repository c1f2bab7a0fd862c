package realtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
)

// Link is one session's WebSocket to a model: it dials (Open sends the bridge's
// configuration), reads the model's messages on a goroutine of the session until the
// session ends, reopens a dropped connection once, and serializes writes. A Handle error
// wrapping ErrModel ends the session with it, as does a close frame that refuses the
// request (1007 invalid argument, 1008 policy: the Live API's errors); a second drop ends it
// with ErrConnection.
//
// Set the fields, then call Start from the handler's Start. Send is safe for concurrent use.
type Link struct {
	// Session is the session the link serves.
	Session *fastrtc.Session
	// Open dials the model and sends the configuration.
	Open func(ctx context.Context) (*websocket.Conn, error)
	// Handle handles one message of the model.
	Handle func(data []byte) error
	// Reopened, if set, is called after a dropped connection was reopened.
	Reopened func()

	mu         sync.Mutex
	conn       *websocket.Conn
	reconnects int
}

// Start opens the connection and starts reading.
func (l *Link) Start() error {
	conn, err := l.Open(l.Session.Context())
	if err != nil {
		return err
	}
	l.conn = conn
	s := l.Session
	s.Go(func() { // the end of the session closes the connection: the reader returns
		<-s.Context().Done()
		l.mu.Lock()
		defer l.mu.Unlock()
		_ = l.conn.Close()
	})
	s.Go(l.read)
	return nil
}

// Send writes v as one JSON message.
func (l *Link) Send(v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return WriteJSON(l.conn, v)
}

// WriteJSON writes v to conn with a 10 s deadline (the caller serializes writes).
func WriteJSON(conn *websocket.Conn, v any) error {
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return conn.WriteJSON(v)
}

func (l *Link) read() {
	s := l.Session
	for {
		l.mu.Lock()
		conn := l.conn
		l.mu.Unlock()
		err := l.readConn(conn)
		if s.Context().Err() != nil {
			return
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && (ce.Code == websocket.CloseInvalidFramePayloadData || ce.Code == websocket.ClosePolicyViolation) {
			err = fmt.Errorf("%w: %s (close %d)", ErrModel, ce.Text, ce.Code) // a refused request: reopening would not help
		}
		if errors.Is(err, ErrModel) {
			s.Fail(err)
			return
		}
		l.reconnects++
		if l.reconnects > 1 {
			s.Fail(fmt.Errorf("%w: %w", ErrConnection, err))
			return
		}
		s.Logger().Warn("realtime: connection to the model lost, reopening it once", "err", err)
		next, derr := l.Open(s.Context())
		if derr != nil {
			s.Fail(derr)
			return
		}
		l.mu.Lock()
		_ = l.conn.Close()
		l.conn = next
		l.mu.Unlock()
		if l.Reopened != nil {
			l.Reopened()
		}
		_ = s.Warn("the model's connection dropped and was reopened: it does not remember the conversation")
	}
}

func (l *Link) readConn(conn *websocket.Conn) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		if err := l.Handle(data); err != nil {
			return err
		}
	}
}

// Dial opens a WebSocket to endpoint with header. Its errors wrap ErrConnection and name
// the endpoint without its query (where a key may ride) and the HTTP status of a refusal.
func Dial(ctx context.Context, d *websocket.Dialer, endpoint string, header http.Header) (*websocket.Conn, error) {
	if d == nil {
		dd := *websocket.DefaultDialer
		dd.HandshakeTimeout = 10 * time.Second
		d = &dd
	}
	conn, res, err := d.DialContext(ctx, endpoint, header)
	if res != nil && res.Body != nil {
		_ = res.Body.Close()
	}
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("%w: %s: HTTP %d", ErrConnection, Redact(endpoint), res.StatusCode)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrConnection, Redact(endpoint), err)
	}
	conn.SetReadLimit(16 << 20)
	return conn, nil
}

// Redact returns endpoint without its query, for messages (a key may ride in it).
func Redact(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "the model endpoint"
	}
	u.RawQuery = ""
	return u.String()
}
