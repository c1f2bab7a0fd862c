package fastrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// Output declares one additional output, so that a UI can show it. The handler emits values
// with Session.Emit; clients read them from GET /outputs or Stream.Outputs.
type Output struct {
	Name  string `json:"name"`
	Label string `json:"label,omitempty"`
}

// maxQueuedOutputs bounds a session's unread outputs; when full, the oldest is dropped.
const maxQueuedOutputs = 1024

// outputQueue holds a session's emitted outputs until a reader takes them. Safe for
// concurrent use.
type outputQueue struct {
	mu      sync.Mutex
	items   []json.RawMessage
	notify  chan struct{} // cap 1: signalled when an item is added
	dropped int
	latest  json.RawMessage
}

// latestValue is the last item pushed.
func (q *outputQueue) latestValue() json.RawMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.latest
}

func newOutputQueue() *outputQueue { return &outputQueue{notify: make(chan struct{}, 1)} }

// push appends v and reports whether an older item had to be dropped.
func (q *outputQueue) push(v json.RawMessage) (dropped bool) {
	q.mu.Lock()
	if len(q.items) >= maxQueuedOutputs {
		q.items = q.items[1:]
		q.dropped++
		dropped = true
	}
	q.items = append(q.items, v)
	q.latest = v
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped
}

// take removes and returns all queued items.
func (q *outputQueue) take() []json.RawMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// Outputs returns a channel of the additional outputs of session id, as JSON, in the order
// they were emitted (including those emitted before the call). The channel is closed when the
// session ends (after its last outputs have been delivered, or 5 s after it ended if nobody
// reads them) or ctx is done. Several readers of one session share its outputs: each output
// goes to one reader. Cancel ctx when you stop reading early.
//
// With a Cluster, the outputs of a session held by another node come from there.
func (s *Stream) Outputs(ctx context.Context, id string) (<-chan json.RawMessage, error) {
	sess, err := s.lookup(id)
	if err == nil {
		return s.outputsOf(ctx, sess), nil
	}
	if errors.Is(err, ErrInvalidID) || !s.forwarding(ctx) {
		return nil, err
	}
	out := &remoteOutputs{more: make(chan struct{}, 1), ended: make(chan struct{})}
	first := make(chan int, 1)
	go func() {
		defer out.finish()
		r := &replyStream{out: out, first: first, header: http.Header{}}
		if !s.forwardTyped(ctx, Forwarded{Route: RouteOutputs, ID: id}, r) {
			r.report(http.StatusNotFound)
		}
		r.report(http.StatusBadGateway) // ended without a first answer (if it had one: no-op)
	}()
	switch status := <-first; {
	case status == http.StatusOK:
		ch := make(chan json.RawMessage)
		go out.deliver(ctx, ch)
		return ch, nil
	case status >= http.StatusInternalServerError: // its node did not answer
		return nil, fmt.Errorf("%w: outputs of %q: status %d", ErrForwarding, id, status)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownConnection, id)
}

// outputsOf is Outputs for a session in hand.
func (s *Stream) outputsOf(ctx context.Context, sess *Session) <-chan json.RawMessage {
	ch := make(chan json.RawMessage)
	go func() {
		defer close(ch)
		q := sess.outputs
		// Once the session ended, its last outputs are offered for 5 s more, then dropped:
		// a reader that stalls never pins this goroutine (nor the session) for longer.
		sessDone := sess.ctx.Done()
		var giveUp <-chan time.Time
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		ended := func() {
			timer = time.NewTimer(outputsGrace)
			giveUp, sessDone = timer.C, nil
		}
		send := func(items []json.RawMessage) bool {
			for _, it := range items {
				for sent := false; !sent; {
					select {
					case ch <- it:
						sent = true
					case <-ctx.Done():
						return false
					case <-sessDone:
						ended()
					case <-giveUp:
						return false
					}
				}
			}
			return true
		}
		for {
			if !send(q.take()) {
				return
			}
			if sessDone == nil { // ended, and everything queued was delivered
				send(q.take())
				return
			}
			select {
			case <-q.notify:
			case <-sessDone:
				ended()
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// remoteOutputs queues the outputs of a session held by another node between the forwarded
// stream (push, finish) and the reader (deliver), so that the stream's end is seen whether
// or not the reader reads: as for a local session, the channel closes when the outputs are
// delivered, or outputsGrace after the end if nobody reads them.
type remoteOutputs struct {
	mu    sync.Mutex
	items []json.RawMessage
	bytes int
	more  chan struct{} // capacity 1: something was pushed
	ended chan struct{} // closed by finish
}

// maxRemoteOutputBytes bounds what remoteOutputs holds for a reader that does not read.
const maxRemoteOutputBytes = 16 << 20

func (o *remoteOutputs) push(v json.RawMessage) error {
	o.mu.Lock()
	if o.bytes+len(v) > maxRemoteOutputBytes {
		o.mu.Unlock()
		return fmt.Errorf("fastrtc: outputs reader: more than %d bytes unread", maxRemoteOutputBytes)
	}
	o.items = append(o.items, v)
	o.bytes += len(v)
	o.mu.Unlock()
	select {
	case o.more <- struct{}{}:
	default:
	}
	return nil
}

func (o *remoteOutputs) take() []json.RawMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	items := o.items
	o.items, o.bytes = nil, 0
	return items
}

func (o *remoteOutputs) finish() { close(o.ended) }

// deliver sends the queued outputs on ch, in order, and closes ch when the stream ended and
// all were delivered, outputsGrace after the end, or when ctx is done.
func (o *remoteOutputs) deliver(ctx context.Context, ch chan<- json.RawMessage) {
	defer close(ch)
	ended := o.ended
	var giveUp <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm := func() { // the stream ended: what is left waits outputsGrace for the reader
		timer = time.NewTimer(outputsGrace)
		giveUp, ended = timer.C, nil
	}
	for {
		items := o.take()
		if len(items) == 0 {
			if ended == nil { // ended, and everything was delivered
				return
			}
			select {
			case <-o.more:
			case <-ctx.Done():
				return
			case <-ended:
				arm() // every push came before the end: the next take has the last ones
			}
			continue
		}
		for _, it := range items {
			for sent := false; !sent; {
				select {
				case ch <- it:
					sent = true
				case <-ctx.Done():
					return
				case <-ended:
					arm()
				case <-giveUp:
					return
				}
			}
		}
	}
}

// outputsGrace is how long the outputs of an ended session wait for a reader.
const outputsGrace = 5 * time.Second

// sseWriteTimeout bounds one write of GET /outputs: a client that stops reading is dropped.
const sseWriteTimeout = 10 * time.Second

// serveOutputs is GET /outputs?webrtc_id=ID: Server-Sent Events, one `event: output` per
// emitted value, until the session ends. An id that is not live yet is waited for
// (WithOutputsWait, 5 s) before the answer is 404.
func (s *Stream) serveOutputs(w http.ResponseWriter, r *http.Request) {
	id, ok := getSessionID(w, r)
	if !ok {
		return
	}
	if r = s.authorize(w, r, RouteOutputs, id); r == nil {
		return
	}
	s.streamOutputs(r.Context(), w, id, s.cfg.outputsWait)
}

// streamOutputs answers GET /outputs for session id, waiting up to wait for it to appear
// (here, or with a Cluster anywhere).
func (s *Stream) streamOutputs(ctx context.Context, w http.ResponseWriter, id string, wait time.Duration) {
	var sess *Session
	var err error
	if s.forwarding(ctx) {
		// Here now, or anywhere (this node too) within the wait: the cluster routes it.
		if sess, err = s.lookup(id); err != nil {
			if s.forward(ctx, Forwarded{Route: RouteOutputs, ID: id, Wait: wait}, w) {
				return
			}
		}
	} else {
		// The page may open its EventSource before it starts the connection: wait a little.
		sess, err = s.waitSession(ctx, id, wait)
	}
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown connection %q", id))
		return
	}
	if owns(ctx, sess) != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown connection %q", id))
		return
	}
	ch := s.outputsOf(ctx, sess)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for v := range ch {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", wire.OutputEvent, v); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// streamOutputsTyped answers a forwarded typed RouteOutputs for session id, held here: a
// stream of wire.ForwardReply lines, the first with the status, then one per output (see
// Forwarded.Typed).
func (s *Stream) streamOutputsTyped(ctx context.Context, w http.ResponseWriter, id string) {
	sess, err := s.lookup(id)
	if err != nil || owns(ctx, sess) != nil {
		writeJSON(w, http.StatusOK, unknownReply(id))
		return
	}
	ch := s.outputsOf(ctx, sess)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(rep wire.ForwardReply) bool {
		b, err := wire.EncodeReply(rep)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(wire.ForwardReply{Status: http.StatusOK}) {
		return
	}
	for v := range ch {
		if !send(wire.ForwardReply{Status: http.StatusOK, Output: v}) {
			return
		}
	}
}
