package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// The routes a cluster forwards (fastrtc.Forwarded.Route), and the routes WithAuth names.
const (
	RouteOffer     = "offer"      // POST /webrtc/offer that a full or draining node hands to another
	RouteCandidate = "candidate"  // POST /webrtc/offer with type ice-candidate
	RouteInputHook = "input_hook" // POST /input_hook, and Stream.SetInput
	RouteOutputs   = "outputs"    // GET /outputs (Server-Sent Events), and Stream.Outputs
	RouteStats     = "stats"      // GET /stats, and Stream.Lookup
	RouteConfig    = "config"     // GET /webrtc/config
	RouteWebSocket = "websocket"  // GET /websocket/offer
	RouteTelephone = "telephone"  // POST /telephone/incoming and GET /telephone/handler
)

// The SSE event of GET /outputs: "event: output\ndata: <JSON>\n\n".
const OutputEvent = "output"

// The kinds of a ForwardReply's failure (Kind).
const (
	// KindUnknownConnection: no live session has the id (on the node that answered).
	KindUnknownConnection = "unknown_connection"
	// KindInvalidInput: a value for an additional input was refused (Field names it when
	// one field was at fault).
	KindInvalidInput = "invalid_input"
	// KindForwarding: the node that answered could not reach the one holding the session.
	KindForwarding = "forwarding"
	// KindFailed: any other failure (Error says what).
	KindFailed = "failed"
)

// ForwardReply is the typed answer of a forwarded request that asked for one
// (fastrtc.Forwarded.Typed): what the route would have answered, as a value instead of an
// HTTP response. RouteInputHook and RouteStats answer with one ForwardReply; RouteOutputs
// with a stream of them, one JSON value a line: the first with the Status, then one per
// output (Output set), until the session's outputs end.
type ForwardReply struct {
	// Status is the HTTP status the route answers with (http.StatusOK: it succeeded).
	Status int `json:"status"`
	// Kind says what failed (Kind*); "" on success.
	Kind string `json:"kind,omitempty"`
	// Error is the route's error message.
	Error string `json:"error,omitempty"`
	// Field is the input at fault (KindInvalidInput), and Reason why it was refused.
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Info is RouteStats's answer: the session's fastrtc.SessionInfo.
	Info json.RawMessage `json:"info,omitempty"`
	// Output is one additional output (RouteOutputs), as the session emitted it.
	Output json.RawMessage `json:"output,omitempty"`
}

// OK reports whether the reply is a success.
func (r ForwardReply) OK() bool { return r.Status == http.StatusOK }

// Body is the HTTP error body of a failed reply.
func (r ForwardReply) Body() ErrorBody { return ErrorBody{Error: r.Error, Field: r.Field} }

// EncodeReply returns the JSON of r and a newline: one value of a reply stream.
func EncodeReply(r ForwardReply) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("wire: forward reply: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeReply parses one ForwardReply.
func DecodeReply(b []byte) (ForwardReply, error) {
	var r ForwardReply
	if err := json.Unmarshal(b, &r); err != nil {
		return ForwardReply{}, fmt.Errorf("wire: forward reply: %w", err)
	}
	if r.Status == 0 {
		return ForwardReply{}, fmt.Errorf("wire: forward reply without a status: %.200q", b)
	}
	return r, nil
}
