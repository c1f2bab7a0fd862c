// Package wire is the one home of the wire protocol that the fastrtc server (the root
// package), its Go client (package client) and its cluster (package cluster) speak: the
// names and JSON shapes that Python FastRTC's frontends, its WebSocket clients and Twilio
// read and write, and the typed messages of the cluster seam between nodes.
//
// What it holds, by route (each as ../../../shared/PROTOCOL.md describes it):
//
//   - POST /webrtc/offer: OfferRequest in, Answer, Success or Failure out (HTTP 200 with
//     {"status":"failed","meta":{"error":CODE,...}} for a refusal; the Code* constants).
//     A trickled candidate is an OfferRequest of type TypeICECandidate carrying an
//     ICECandidate.
//   - The data channel, and the control messages of the WebSocket route: Message
//     ({"type":T,"data":D}, the Type* constants), Notice ({"type":"error"|"warning",
//     "message":M}) and, from the client, TextMessage ({"type":"text","data":S}).
//   - GET /websocket/offer (FastRTC's dialect, mu-law or PCM): Inbound messages (Start,
//     media, ping, stop; the Event* constants), Media out, EventPong.
//   - GET /telephone/handler (Twilio Media Streams): Inbound with TwilioStart, DTMF, Mark;
//     media and Clear out, both with the streamSid.
//   - POST /input_hook and the routes' error bodies: ErrorBody, Success.
//   - The cluster seam: the Route* names of forwarded requests and ForwardReply, the typed
//     answer a node gives to a forwarded request that asked for one.
//
// The constants are untyped: the public constants of package fastrtc and package client
// (client.CodeConcurrencyLimit, fastrtc.EncodingMulaw, fastrtc.RouteStats, ...) are defined
// from them and stay untyped string constants.
package wire

import (
	"encoding/json"
	"fmt"
)

// The types of control messages, {"type": T, ...}, on the data channel and the WebSocket.
const (
	// TypeSendInput asks the client for its additional inputs (data []): it POSTs
	// /input_hook.
	TypeSendInput = "send_input"
	// TypeFetchOutput says an additional output is ready (data []): clients read /outputs.
	TypeFetchOutput = "fetch_output"
	// TypeLog carries a log line (data: a string, e.g. LogStartedTalking).
	TypeLog = "log"
	// TypeStopword says a stop word was heard (data "").
	TypeStopword = "stopword"
	// TypeEndStream says the server ends the stream (data: a message, DefaultEndStream).
	TypeEndStream = "end_stream"
	// TypeUpdateConnection carries ConnectionClosed or ConnectionOpen.
	TypeUpdateConnection = "update_connection"
	// TypeError is a Notice: an error of the server or the handler.
	TypeError = "error"
	// TypeWarning is a Notice: a warning.
	TypeWarning = "warning"
	// TypeTranscript carries a transcript line (data {"role", "text"}); the built-in page
	// shows it.
	TypeTranscript = "transcript"
	// TypeTranscriptPartial carries a transcript line still being spoken (data {"role",
	// "text", "final"}); the built-in page shows it until the line's transcript arrives.
	TypeTranscriptPartial = "transcript_partial"
	// TypeText is a client's TextMessage: text for the handler.
	TypeText = "text"
)

// The data of TypeLog messages, and others the server sends.
const (
	LogStartedTalking   = "started_talking"   // pause detection: a turn started
	LogPauseDetected    = "pause_detected"    // pause detection: the turn ended
	LogResponseStarting = "response_starting" // pause detection: the reply begins
	// LogReceivedPrefix starts the log line that answers every client message on the
	// data channel: "Server received: <msg>".
	LogReceivedPrefix = "Server received: "
	// DefaultEndStream is the data of TypeEndStream when no message is given.
	DefaultEndStream = "Stream closed"
	ConnectionClosed = "closed" // data of TypeUpdateConnection
	ConnectionOpen   = "open"   // data of TypeUpdateConnection
)

// Message is a control message {"type": T, "data": D}.
type Message struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// Notice is the shape of errors and warnings: {"type": "error", "message": M}.
type Notice struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// TextMessage is text a client sends the handler on the data channel:
// {"type": "text", "data": S} (a plain string is text too).
type TextMessage struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// EncodeMessage returns the JSON of the control message {"type": typ, "data": data}.
func EncodeMessage(typ string, data any) ([]byte, error) {
	b, err := json.Marshal(Message{Type: typ, Data: data})
	if err != nil {
		return nil, fmt.Errorf("wire: message %s: %w", typ, err)
	}
	return b, nil
}

// EncodeNotice returns the JSON of {"type": typ, "message": msg} (TypeError, TypeWarning).
func EncodeNotice(typ, msg string) []byte {
	b, _ := json.Marshal(Notice{Type: typ, Message: msg}) // two strings: never fails
	return b
}

// DecodeText returns the text of a TextMessage; ok is false when b is not one.
func DecodeText(b []byte) (text string, ok bool) {
	var m TextMessage
	if json.Unmarshal(b, &m) != nil || m.Type != TypeText {
		return "", false
	}
	return m.Data, true
}

// The status of the offer route's (and /input_hook's) JSON answers.
const (
	StatusSuccess = "success"
	StatusFailed  = "failed"
)

// The failure codes of {"status":"failed","meta":{"error":CODE}}: clients switch on them.
const (
	CodeConcurrencyLimit  = "concurrency_limit_reached"
	CodeConnectionExists  = "connection_already_exists"
	CodeUnknownConnection = "unknown_connection"
	CodeInvalidCandidate  = "invalid_candidate_format"
	CodeConnectionClosed  = "connection_closed"
	CodeUnauthorized      = "unauthorized" // HTTP 401: no or bad credentials (WithAuth)
	CodeForbidden         = "forbidden"    // HTTP 403: credentials not allowed this (WithAuth)
)

// The reasons ("meta.reason") of a CodeConcurrencyLimit failure: whose limit it was.
const (
	ReasonNode          = "node"           // the node's own limit
	ReasonCluster       = "cluster"        // the cluster's limit
	ReasonDraining      = "draining"       // the node is draining
	ReasonPending       = "pending"        // too many offers pending
	ReasonPendingSource = "pending_source" // too many offers pending from one address
)

// Failure is the refusal {"status":"failed","meta":{...}} (HTTP 200 on the offer route; a
// text frame on the WebSocket route). Its fields are in the order FastRTC-Go always wrote
// them (alphabetical).
type Failure struct {
	Meta   FailureMeta `json:"meta"`
	Status string      `json:"status"` // StatusFailed
}

// FailureMeta is a Failure's "meta".
type FailureMeta struct {
	Detail string `json:"detail,omitempty"` // what was wrong (CodeInvalidCandidate)
	Error  string `json:"error"`            // the code, e.g. CodeConcurrencyLimit
	Limit  int    `json:"limit,omitempty"`  // the limit reached (CodeConcurrencyLimit)
	Reason string `json:"reason,omitempty"` // whose limit (Reason*)
}

// Failed returns the Failure with meta.
func Failed(meta FailureMeta) Failure { return Failure{Meta: meta, Status: StatusFailed} }

// DecodeFailure parses a Failure as a client reads it: the code and the whole meta object
// (JSON numbers as float64). ok is false when b is not a failure.
func DecodeFailure(b []byte) (code string, meta map[string]any, ok bool) {
	var f struct {
		Status string         `json:"status"`
		Meta   map[string]any `json:"meta"`
	}
	if json.Unmarshal(b, &f) != nil || f.Status != StatusFailed {
		return "", nil, false
	}
	code, _ = f.Meta["error"].(string)
	if f.Meta == nil {
		f.Meta = map[string]any{}
	}
	return code, f.Meta, true
}

// Success is {"status":"success"}: a trickled candidate or /input_hook was taken.
type Success struct {
	Status string `json:"status"` // StatusSuccess
}

// Succeeded returns {"status":"success"}.
func Succeeded() Success { return Success{Status: StatusSuccess} }

// FieldWebRTCID names a session: the field of /input_hook's body, and the query parameter
// of /outputs and /stats (for a WebSocket session, its websocket_id).
const FieldWebRTCID = "webrtc_id"

// ErrorBody is the body of an HTTP error status: {"error": M}, and for an invalid input
// {"error": M, "field": F}.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// The types of the offer route's requests and answers.
const (
	TypeOffer        = "offer"
	TypeAnswer       = "answer"
	TypeICECandidate = "ice-candidate"
)

// OfferRequest is the body of POST /webrtc/offer: an offer (SDP) or a trickled candidate.
type OfferRequest struct {
	SDP       string          `json:"sdp,omitempty"`
	Type      string          `json:"type"`
	WebRTCID  string          `json:"webrtc_id"`
	Candidate json.RawMessage `json:"candidate,omitempty"` // an ICECandidate
}

// ICECandidate is a trickled client candidate (the browser's RTCIceCandidateInit). A nil
// or empty Candidate is the end of candidates.
type ICECandidate struct {
	Candidate        *string `json:"candidate"`
	SDPMid           *string `json:"sdpMid"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
	UsernameFragment *string `json:"usernameFragment"`
}

// Answer is the offer route's answer: {"sdp": ..., "type": "answer"}.
type Answer struct {
	SDP  string `json:"sdp"`
	Type string `json:"type"`
}
