package fastrtc

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these where it applies; test
// with errors.Is.
var (
	// ErrInvalidConfig is returned by New when the handler, modality, mode or an option is
	// invalid.
	ErrInvalidConfig = errors.New("fastrtc: invalid configuration")
	// ErrUnknownConnection means no live session has the given id.
	ErrUnknownConnection = errors.New("fastrtc: unknown connection")
	// ErrConnectionExists means a session with the given id already exists.
	ErrConnectionExists = errors.New("fastrtc: connection already exists")
	// ErrConcurrencyLimit means the Stream already runs its maximum number of sessions.
	ErrConcurrencyLimit = errors.New("fastrtc: concurrency limit reached")
	// ErrInvalidInput means a value given for an additional input has the wrong type, is out
	// of range, or names no declared input. It wraps an *InputError.
	ErrInvalidInput = errors.New("fastrtc: invalid input")
	// ErrInvalidID means a connection id (webrtc_id, websocket_id, a Twilio streamSid) is
	// empty, longer than MaxIDLength, or holds a character other than ASCII letters, digits
	// and "-_.:~+=@": ids go into SDP and logs verbatim, so nothing else is accepted.
	ErrInvalidID = errors.New("fastrtc: invalid connection id")
	// ErrSessionClosed is returned by Session methods after the session ended.
	ErrSessionClosed = errors.New("fastrtc: session closed")
	// ErrStreamClosed is returned after Stream.Close.
	ErrStreamClosed = errors.New("fastrtc: stream closed")
	// ErrHandlerPanic wraps the value of a handler's panic; the session that ran it ends.
	ErrHandlerPanic = errors.New("fastrtc: handler panicked")
	// ErrNoReplyTrigger is returned by Session.TriggerReply on a session whose handler does
	// not implement ReplyTrigger (package voice's ReplyOnPause does).
	ErrNoReplyTrigger = errors.New("fastrtc: the session's handler takes no reply trigger")
)

// ErrForwarding is returned (and answered with HTTP 502) when a Cluster could not reach the
// node that holds a session.
var ErrForwarding = errors.New("fastrtc: forwarding to the session's node failed")

// ErrDraining is the refusal of a new session by a Stream that is draining (Stream.Drain);
// clients get FastRTC's concurrency_limit_reached failure with "reason": "draining".
var ErrDraining = errors.New("fastrtc: draining: not taking new sessions")

// LimitError is a refusal under a concurrency limit. It wraps ErrConcurrencyLimit; Scope
// says whose limit it was: "node" (WithConcurrencyLimit) or "cluster" (a Cluster's).
type LimitError struct {
	Limit int    // the limit that was reached
	Scope string // "node", "cluster", or "pending" / "pending_source" (WithPendingLimit)
}

// Error says which limit was reached.
func (e *LimitError) Error() string {
	return fmt.Sprintf("fastrtc: %s concurrency limit reached (%d)", e.Scope, e.Limit)
}

// Unwrap returns ErrConcurrencyLimit.
func (e *LimitError) Unwrap() error { return ErrConcurrencyLimit }
