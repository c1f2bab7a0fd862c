package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrRefused is matched by every *RefusedError: the server answered the offer (or the
	// WebSocket start) with {"status":"failed",...}.
	ErrRefused = errors.New("client: refused by the server")
	// ErrConcurrencyLimit is matched by a *RefusedError whose code is
	// "concurrency_limit_reached": the server is full; try again later.
	ErrConcurrencyLimit = errors.New("client: server concurrency limit reached")
	// ErrClosed is returned by methods called on (or blocked in when) a connection that was
	// closed, by either side.
	ErrClosed = errors.New("client: connection closed")
	// ErrNoTrack is returned by media methods for a direction the connection was not set up
	// for (for example ReadVideo without Options.ReceiveVideo).
	ErrNoTrack = errors.New("client: no such media track on this connection")
)

// The failure codes a FastRTC server sends in {"status":"failed","meta":{"error":CODE}}.
const (
	CodeConcurrencyLimit  = wire.CodeConcurrencyLimit
	CodeConnectionExists  = wire.CodeConnectionExists
	CodeUnknownConnection = wire.CodeUnknownConnection
	CodeInvalidCandidate  = wire.CodeInvalidCandidate
	CodeConnectionClosed  = wire.CodeConnectionClosed
	CodeUnauthorized      = wire.CodeUnauthorized // HTTP 401 from a server with auth
	CodeForbidden         = wire.CodeForbidden    // HTTP 403 from a server with auth
)

// RefusedError is the server's failure answer {"status":"failed","meta":{"error":CODE,...}}.
// It matches ErrRefused, and ErrConcurrencyLimit when Code is CodeConcurrencyLimit.
type RefusedError struct {
	// Code is meta.error, for example CodeConcurrencyLimit.
	Code string
	// Meta is the whole meta object as received (it includes "error", and "limit" for a
	// concurrency refusal; JSON numbers are float64).
	Meta map[string]any
}

// Error implements error.
func (e *RefusedError) Error() string {
	if lim, ok := e.Meta["limit"]; ok {
		return fmt.Sprintf("client: refused by the server: %s (limit %v)", e.Code, lim)
	}
	return "client: refused by the server: " + e.Code
}

// Is reports whether target is ErrRefused, or ErrConcurrencyLimit for that code.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || (target == ErrConcurrencyLimit && e.Code == CodeConcurrencyLimit)
}

// HTTPError is an HTTP error status from one of the server's routes, with the server's
// message ({"error": "..."} bodies are unwrapped; other bodies are kept as text).
type HTTPError struct {
	// Route is the request path, such as "/input_hook".
	Route string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the server's error message.
	Message string
}

// Error implements error.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("client: %s: HTTP %d: %s", e.Route, e.StatusCode, e.Message)
}

// errorMessage extracts the message of an error body.
func errorMessage(body []byte) string {
	var v struct {
		Error  any    `json:"error"`
		Detail any    `json:"detail"`
		Field  string `json:"field"`
	}
	if jsonUnmarshal(body, &v) == nil {
		switch {
		case v.Error != nil:
			return fmt.Sprint(v.Error)
		case v.Detail != nil:
			return fmt.Sprint(v.Detail) // FastAPI (Python FastRTC) errors
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}
