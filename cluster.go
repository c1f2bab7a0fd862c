package fastrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// Cluster joins a Stream to the other nodes that serve the same stream, so that a load
// balancer may send every request but a session's media to any node. Package
// github.com/fastrtc-go/fastrtc/cluster implements it over NATS; WithCluster installs one.
//
// A session lives on the node that answered its offer (its media flows there). The
// requests that name a session by id (trickled candidates, /input_hook, /outputs, /stats,
// and SetInput, Outputs and Lookup in Go) are served locally when the session is here and
// are otherwise handed to Forward, which serves them from the node that holds it.
//
// Implementations must be safe for concurrent use.
type Cluster interface {
	// NodeID names this node: the X-Fastrtc-Node header of the answers it gives, and the
	// Node of the SessionStats that Lookup returns.
	NodeID() string
	// Attach is called once, by New, with the stream this node serves; the cluster serves
	// the requests other nodes forward here with s.ServeForwarded.
	Attach(s *Stream) error
	// Admit takes a cluster-wide slot for session id, about to open on this node, and
	// routes the cluster's requests for id here until leave is called (once, when the
	// session has ended). A refusal wraps ErrConcurrencyLimit (a *LimitError says whose)
	// or ErrDraining.
	Admit(ctx context.Context, id string) (leave func(), err error)
	// Forward serves f, a request for a session this node does not hold, from the node
	// that holds it (for RouteOffer: from any node that takes new sessions), writing that node's response (status, headers and body, streamed as
	// it comes for RouteOutputs) to w. When no node holds f.ID, after waiting up to f.Wait
	// for one to, it writes nothing and returns an error wrapping ErrUnknownConnection.
	// A request with f.Typed set is carried the same way: only its response's body is a
	// typed answer (see Forwarded.Typed) rather than the route's HTTP body.
	Forward(ctx context.Context, f Forwarded, w http.ResponseWriter) error
}

// OfferTimeout bounds the answer to an offer (ICE gathering included): past it the offer gets
// 504. A Cluster that hands an offer to another node waits at least this long for its answer.
const OfferTimeout = 15 * time.Second

// Forwarded is a request for a session held by another node, as a Cluster carries it.
type Forwarded struct {
	Route string          // RouteCandidate, RouteInputHook, RouteOutputs or RouteStats
	ID    string          // the session's id
	Body  json.RawMessage `json:",omitempty"` // the request's JSON body, for POST routes
	// Wait is how long the session may take to appear anywhere (a page may open
	// /outputs, or trickle a candidate, before its offer reached a node).
	Wait time.Duration `json:",omitempty"`
	// Identity is the identity WithAuth gave the request on the node it reached (nil
	// without WithAuth): the session's node checks that it owns the session.
	Identity *string `json:",omitempty"`
	// Typed asks for a typed answer instead of the route's HTTP response: ServeForwarded
	// then writes HTTP 200 and the JSON of the route's answer as a value (one value for
	// RouteInputHook and RouteStats; for RouteOutputs a stream of them, one a line,
	// flushed as they come). The Go calls (SetInput, Lookup, Outputs) ask for it; a
	// Cluster carries it as it carries any response.
	Typed bool `json:",omitempty"`
}

// The routes a Cluster forwards.
const (
	RouteOffer     = wire.RouteOffer     // POST /webrtc/offer that a full or draining node hands to another
	RouteCandidate = wire.RouteCandidate // POST /webrtc/offer with type ice-candidate
	RouteInputHook = wire.RouteInputHook // POST /input_hook, and Stream.SetInput
	RouteOutputs   = wire.RouteOutputs   // GET /outputs (Server-Sent Events), and Stream.Outputs
	RouteStats     = wire.RouteStats     // GET /stats, and Stream.Lookup
)

// candidateWait is how long a trickled candidate for a session no node holds yet waits for
// it to appear in the cluster (its offer may still be on its way to another node).
const candidateWait = 2 * time.Second

// NodeHeader is the response header that names the node (Cluster.NodeID) that answered an
// offer or served a forwarded request.
const NodeHeader = "X-Fastrtc-Node"

// admitTimeout bounds a Cluster's Admit where no request context does.
const admitTimeout = 5 * time.Second

// forwardedKey marks the context of a request a Cluster forwarded here: it is answered
// here, never forwarded again.
type forwardedKey struct{}

// forwarding reports whether a request for a session this node lacks goes to the cluster.
func (s *Stream) forwarding(ctx context.Context) bool {
	return s.cfg.cluster != nil && ctx.Value(forwardedKey{}) == nil
}

// forward hands f to the cluster; it reports false (having written nothing) when no node
// holds the session.
func (s *Stream) forward(ctx context.Context, f Forwarded, w http.ResponseWriter) bool {
	held, err := s.sendForward(ctx, f, w)
	if err != nil {
		writeError(w, http.StatusBadGateway, "forwarding to the session's node: "+err.Error())
	}
	return held
}

// validID reports whether id passes checkID.
func validID(id string) bool { return checkID(id) == nil }

// sendForward hands f to the cluster with the caller's identity. It reports whether a node
// holds the session, and the cluster's own failure (logged) if it could not carry f.
func (s *Stream) sendForward(ctx context.Context, f Forwarded, w http.ResponseWriter) (bool, error) {
	if !validID(f.ID) { // never a subject from an id that was not checked: no node holds it
		return false, nil
	}
	if id, ok := identityOf(ctx); ok {
		f.Identity = &id
	}
	err := s.cfg.cluster.Forward(ctx, f, w)
	if err != nil && !errors.Is(err, ErrUnknownConnection) {
		s.log.Warn("cluster forward failed", "route", f.Route, "session", f.ID, "err", err)
		return true, err
	}
	return err == nil, nil
}

// ServeForwarded answers f, which another node's Cluster forwarded here, as the route would
// answer it for a session held here (and as if unknown otherwise: it never forwards again).
// Cluster implementations call it; r supplies the context (cancel it when the requester
// goes away) and its headers are ignored.
func (s *Stream) ServeForwarded(w http.ResponseWriter, r *http.Request, f Forwarded) {
	ctx := context.WithValue(r.Context(), forwardedKey{}, true)
	if f.Identity != nil {
		ctx = withIdentity(ctx, *f.Identity)
	}
	switch f.Route {
	case RouteOffer:
		var req offerRequest
		if err := json.Unmarshal(f.Body, &req); err != nil || req.SDP == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("forwarded offer: %v", err))
			return
		}
		req.WebRTCID = f.ID
		s.handleOffer(w, r.WithContext(ctx), req)
	case RouteCandidate:
		var req offerRequest
		if err := json.Unmarshal(f.Body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "forwarded candidate: "+err.Error())
			return
		}
		req.WebRTCID = f.ID
		s.handleCandidate(ctx, w, req)
	case RouteInputHook:
		var values map[string]any
		dec := json.NewDecoder(bytes.NewReader(f.Body))
		dec.UseNumber()
		if err := dec.Decode(&values); err != nil {
			writeReply(w, f.Typed, wire.ForwardReply{Status: http.StatusBadRequest, Kind: wire.KindFailed, Error: "forwarded input: " + err.Error()})
			return
		}
		delete(values, wire.FieldWebRTCID)
		writeInputResult(w, f.Typed, inputReply(f.ID, s.setInput(ctx, f.ID, values)))
	case RouteOutputs:
		if f.Typed {
			s.streamOutputsTyped(ctx, w, f.ID)
			return
		}
		s.streamOutputs(ctx, w, f.ID, 0)
	case RouteStats:
		writeReply(w, f.Typed, s.statsReply(ctx, f.ID))
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown forwarded route %q", f.Route))
	}
}

// statsBody is the JSON of GET /stats and of a forwarded RouteStats answer:
// {"id": ID, "node": NODE, "stats": {SessionStats}}.
type statsBody struct {
	ID    string       `json:"id"`
	Node  string       `json:"node,omitempty"`
	Stats SessionStats `json:"stats"`
}

// Lookup returns the figures of live session id (its SessionStats, with the node that holds
// it), from that node when a Cluster is set (Session returns only sessions held here). It
// returns an error wrapping ErrUnknownConnection when no node holds it.
func (s *Stream) Lookup(ctx context.Context, id string) (SessionStats, error) {
	if sess, err := s.lookup(id); err == nil || !s.forwarding(ctx) {
		if err != nil {
			return SessionStats{}, err
		}
		return sess.Stats(), nil
	}
	rep, err := s.call(ctx, Forwarded{Route: RouteStats, ID: id})
	if err != nil {
		return SessionStats{}, err
	}
	if !rep.OK() {
		return SessionStats{}, replyError(rep, id)
	}
	var body statsBody
	if err := json.Unmarshal(rep.Info, &body); err != nil {
		return SessionStats{}, fmt.Errorf("fastrtc: session %q: forwarded stats: %w", id, err)
	}
	st := body.Stats
	st.ID, st.Node = body.ID, body.Node
	return st, nil
}

// nodeID is the cluster's name of this node, or "".
func (s *Stream) nodeID() string {
	if s.cfg.cluster == nil {
		return ""
	}
	return s.cfg.cluster.NodeID()
}

// call serves f, a request for a session this node lacks, from the node that holds it, and
// returns that node's typed answer (Forwarded.Typed): the Go calls' side of the cluster seam.
// It returns an error wrapping ErrUnknownConnection when no node holds the session, and
// one wrapping ErrForwarding when the cluster could not carry the request.
func (s *Stream) call(ctx context.Context, f Forwarded) (wire.ForwardReply, error) {
	buf := &replyBuffer{header: http.Header{}}
	if !s.forwardTyped(ctx, f, buf) {
		return wire.ForwardReply{}, fmt.Errorf("%w: %q", ErrUnknownConnection, f.ID)
	}
	if buf.err != nil {
		return wire.ForwardReply{}, buf.err
	}
	if buf.status != http.StatusOK {
		return wire.ForwardReply{}, fmt.Errorf("%w: session %q: its node answered %d: %.200s", ErrForwarding, f.ID, buf.status, bytes.TrimSpace(buf.body))
	}
	rep, err := wire.DecodeReply(buf.body)
	if err != nil {
		return wire.ForwardReply{}, fmt.Errorf("%w: session %q: %w", ErrForwarding, f.ID, err)
	}
	return rep, nil
}

// forwardTyped is forward for the Go calls: it asks for a typed answer, and a failure of the
// cluster is w's err rather than an HTTP error response.
func (s *Stream) forwardTyped(ctx context.Context, f Forwarded, w typedWriter) bool {
	f.Typed = true
	held, err := s.sendForward(ctx, f, w)
	if err != nil {
		w.fail(fmt.Errorf("%w: session %q: forwarding to the session's node: %w", ErrForwarding, f.ID, err))
	}
	return held
}

// typedWriter is the http.ResponseWriter a typed answer is carried to (replyBuffer, and
// replyStream for outputs); fail records a failure of the cluster itself.
type typedWriter interface {
	http.ResponseWriter
	fail(err error)
}

// replyBuffer holds the one typed answer of a forwarded RouteInputHook or RouteStats.
type replyBuffer struct {
	header http.Header
	status int
	body   []byte
	err    error
}

func (b *replyBuffer) Header() http.Header { return b.header }

func (b *replyBuffer) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *replyBuffer) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	b.body = append(b.body, p...)
	return len(p), nil
}

func (b *replyBuffer) fail(err error) { b.err = err }

// replyError turns a failed typed answer back into this package's errors.
func replyError(rep wire.ForwardReply, id string) error {
	switch rep.Kind {
	case wire.KindUnknownConnection:
		return fmt.Errorf("%w: %q", ErrUnknownConnection, id)
	case wire.KindInvalidInput:
		if rep.Field != "" {
			return &InputError{Field: rep.Field, Reason: rep.Reason}
		}
		return fmt.Errorf("%w: %s", ErrInvalidInput, rep.Error)
	case wire.KindForwarding:
		return fmt.Errorf("%w: session %q: %s", ErrForwarding, id, rep.Error)
	}
	if rep.Status == http.StatusBadRequest {
		return fmt.Errorf("%w: %s", ErrInvalidInput, rep.Error)
	}
	return fmt.Errorf("fastrtc: session %q: its node answered %d: %s", id, rep.Status, rep.Error)
}

// writeReply writes a typed answer: as itself (typed, for another node's Go call) or as the
// route's HTTP response (a success is its Info, an error an ErrorBody).
func writeReply(w http.ResponseWriter, typed bool, rep wire.ForwardReply) {
	switch {
	case typed:
		writeJSON(w, http.StatusOK, rep)
	case rep.OK():
		writeJSON(w, http.StatusOK, rep.Info)
	default:
		writeJSON(w, rep.Status, rep.Body())
	}
}

// statsReply is the answer of GET /stats for session id held here.
func (s *Stream) statsReply(ctx context.Context, id string) wire.ForwardReply {
	sess, err := s.lookup(id)
	if err == nil && owns(ctx, sess) == nil {
		b, err := json.Marshal(statsBody{ID: id, Node: s.nodeID(), Stats: sess.Stats()})
		if err != nil {
			return wire.ForwardReply{Status: http.StatusInternalServerError, Kind: wire.KindFailed, Error: err.Error()}
		}
		return wire.ForwardReply{Status: http.StatusOK, Info: b}
	}
	return unknownReply(id)
}

// unknownReply is the answer for a session that is not here.
func unknownReply(id string) wire.ForwardReply {
	return wire.ForwardReply{Status: http.StatusNotFound, Kind: wire.KindUnknownConnection, Error: fmt.Sprintf("unknown connection %q", id)}
}

// writeStats is GET /stats for a session: this node's, or (when forwarding) the cluster's.
func (s *Stream) writeStats(ctx context.Context, w http.ResponseWriter, id string) {
	if _, err := s.lookup(id); err != nil && s.forwarding(ctx) && s.forward(ctx, Forwarded{Route: RouteStats, ID: id}, w) {
		return
	}
	writeReply(w, false, s.statsReply(ctx, id))
}

// serveStats is GET /stats?webrtc_id=ID: the session's statsBody as JSON.
func (s *Stream) serveStats(w http.ResponseWriter, r *http.Request) {
	id, ok := getSessionID(w, r)
	if !ok {
		return
	}
	if r = s.authorize(w, r, RouteStats, id); r == nil {
		return
	}
	s.writeStats(r.Context(), w, id)
}

// replyStream is the http.ResponseWriter a forwarded typed RouteOutputs writes to when Go
// code reads a remote session's outputs (Stream.Outputs): it reports the status of the
// first typed answer on first, once, and queues the outputs of the following ones on out
// (it never blocks on the reader: the stream's end must be seen even when nobody reads).
type replyStream struct {
	out    *remoteOutputs
	first  chan<- int
	header http.Header
	status int // of the first answer; 0 before it
	buf    []byte
}

func (r *replyStream) Header() http.Header { return r.header }

// WriteHeader reports a failed HTTP status (the cluster's own failure) as the first status.
func (r *replyStream) WriteHeader(code int) {
	if r.status == 0 && code != http.StatusOK {
		r.report(code)
	}
}

// report sends the first status, once.
func (r *replyStream) report(code int) {
	if r.status == 0 {
		r.status = code
		r.first <- code
	}
}

func (r *replyStream) fail(error) { r.report(http.StatusBadGateway) }

func (r *replyStream) Write(p []byte) (int, error) {
	if r.status != 0 && r.status != http.StatusOK {
		return len(p), nil // an error: no outputs
	}
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := r.buf[:i]
		r.buf = r.buf[i+1:]
		rep, err := wire.DecodeReply(line)
		if err != nil {
			r.report(http.StatusBadGateway)
			return 0, err
		}
		if r.status == 0 {
			r.report(rep.Status)
			continue
		}
		if rep.Output != nil {
			if err := r.out.push(bytes.Clone(rep.Output)); err != nil {
				return 0, err
			}
		}
	}
}

// Flush is a no-op: outputs are delivered as their lines complete.
func (r *replyStream) Flush() {}
