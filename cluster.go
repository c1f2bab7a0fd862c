package fastrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
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
	// node of Lookup's SessionInfo.
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
}

// The routes a Cluster forwards.
const (
	RouteOffer     = "offer"      // POST /webrtc/offer that a full or draining node hands to another
	RouteCandidate = "candidate"  // POST /webrtc/offer with type ice-candidate
	RouteInputHook = "input_hook" // POST /input_hook, and Stream.SetInput
	RouteOutputs   = "outputs"    // GET /outputs (Server-Sent Events), and Stream.Outputs
	RouteStats     = "stats"      // GET /stats, and Stream.Lookup
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
	if checkID(f.ID) != nil { // never a subject from an id that was not checked
		return false
	}
	if id, ok := identityOf(ctx); ok {
		f.Identity = &id
	}
	err := s.cfg.cluster.Forward(ctx, f, w)
	if err != nil && !errors.Is(err, ErrUnknownConnection) {
		s.log.Warn("cluster forward failed", "route", f.Route, "session", f.ID, "err", err)
		writeError(w, http.StatusBadGateway, "forwarding to the session's node: "+err.Error())
		return true
	}
	return err == nil
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
			writeError(w, http.StatusBadRequest, "forwarded input: "+err.Error())
			return
		}
		delete(values, "webrtc_id")
		writeInputResult(w, f.ID, s.setInput(ctx, f.ID, values))
	case RouteOutputs:
		s.streamOutputs(ctx, w, f.ID, 0)
	case RouteStats:
		s.writeStats(ctx, w, f.ID)
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown forwarded route %q", f.Route))
	}
}

// SessionInfo describes a live session, wherever in the cluster it is.
type SessionInfo struct {
	ID    string       `json:"id"`
	Node  string       `json:"node,omitempty"` // the node that holds it ("" without a Cluster)
	Stats SessionStats `json:"stats"`
}

// Lookup returns the live session id, from the node that holds it when a Cluster is set
// (Session returns only sessions held here). It returns an error wrapping
// ErrUnknownConnection when no node holds it.
func (s *Stream) Lookup(ctx context.Context, id string) (SessionInfo, error) {
	if sess, err := s.lookup(id); err == nil || !s.forwarding(ctx) {
		if err != nil {
			return SessionInfo{}, err
		}
		return SessionInfo{ID: id, Node: s.nodeID(), Stats: sess.Stats()}, nil
	}
	rec := httptest.NewRecorder()
	if !s.forward(ctx, Forwarded{Route: RouteStats, ID: id}, rec) {
		return SessionInfo{}, fmt.Errorf("%w: %q", ErrUnknownConnection, id)
	}
	var info SessionInfo
	if rec.Code != http.StatusOK {
		return SessionInfo{}, forwardedError(rec, id)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
		return SessionInfo{}, fmt.Errorf("fastrtc: session %q: forwarded stats: %w", id, err)
	}
	return info, nil
}

// nodeID is the cluster's name of this node, or "".
func (s *Stream) nodeID() string {
	if s.cfg.cluster == nil {
		return ""
	}
	return s.cfg.cluster.NodeID()
}

// forwardedError turns a forwarded route's error response back into this package's errors.
func forwardedError(rec *httptest.ResponseRecorder, id string) error {
	var body struct{ Error, Field string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	switch {
	case rec.Code == http.StatusNotFound:
		return fmt.Errorf("%w: %q", ErrUnknownConnection, id)
	case body.Field != "":
		return &InputError{Field: body.Field, Reason: strings.TrimPrefix(body.Error, fmt.Sprintf("fastrtc: invalid input %q: ", body.Field))}
	case rec.Code == http.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrInvalidInput, body.Error)
	case rec.Code >= 500:
		return fmt.Errorf("%w: session %q: %s", ErrForwarding, id, body.Error)
	}
	return fmt.Errorf("fastrtc: session %q: its node answered %d: %s", id, rec.Code, body.Error)
}

// writeStats is GET /stats for a session: this node's, or (when forwarding) the cluster's.
func (s *Stream) writeStats(ctx context.Context, w http.ResponseWriter, id string) {
	sess, err := s.lookup(id)
	if err != nil {
		if s.forwarding(ctx) && s.forward(ctx, Forwarded{Route: RouteStats, ID: id}, w) {
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown connection %q", id))
		return
	}
	if owns(ctx, sess) != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown connection %q", id))
		return
	}
	writeJSON(w, http.StatusOK, SessionInfo{ID: id, Node: s.nodeID(), Stats: sess.Stats()})
}

// serveStats is GET /stats?webrtc_id=ID: the session's SessionInfo as JSON.
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

// sseReader is the http.ResponseWriter a forwarded RouteOutputs writes to when Go code reads
// a remote session's outputs (Stream.Outputs): it reports the response's status on first,
// once, and parses the events of a 200 back into values it queues on out (it never blocks
// on the reader: the stream's end must be seen even when nobody reads).
type sseReader struct {
	out    *remoteOutputs
	first  chan<- int
	header http.Header
	status int
	buf    []byte
}

func (r *sseReader) Header() http.Header { return r.header }

func (r *sseReader) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		r.first <- code
	}
}

func (r *sseReader) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.status != http.StatusOK {
		return len(p), nil // an error body: not events
	}
	r.buf = append(r.buf, p...)
	for {
		i := bytes.Index(r.buf, []byte("\n\n"))
		if i < 0 {
			return len(p), nil
		}
		for line := range bytes.SplitSeq(r.buf[:i], []byte("\n")) {
			if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
				if err := r.out.push(json.RawMessage(bytes.Clone(data))); err != nil {
					return 0, err
				}
			}
		}
		r.buf = r.buf[i+2:]
	}
}

// Flush is a no-op: values are delivered as their events complete.
func (r *sseReader) Flush() {}
