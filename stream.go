package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"

	"encoding/json"
	"net"
	"net/netip"
	"time"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/pion/webrtc/v4"
)

// Stream serves one handler to many connections over WebRTC (and, for audio, WebSocket and
// telephone routes). Build it with New, expose it with Mount or Handler, and Close it when
// done. All methods are safe for concurrent use.
type Stream struct {
	modality   Modality
	mode       Mode
	cfg        config
	log        *slog.Logger
	api        *webrtc.API
	estimators *rtcmedia.Estimators // the bandwidth estimators of new peer connections (video the client receives)

	videoFn  VideoFunc
	videoSrc VideoSource
	audio    *audioConfig // audio-side handler and formats (audio.go)

	mu       sync.Mutex
	sessions map[string]*Session
	arrived  chan struct{} // closed when a session registers (waitSession); guarded by mu
	closed   bool
	draining bool
	wg       sync.WaitGroup // one per live session

	codecs      atomic.Int64 // open codec contexts, for leak checks (Stats)
	videoQueued atomic.Int64 // bytes in the sessions' video decode queues (Stats)

	udpConn     net.PacketConn // the UDP socket every session shares (WithUDPPort), or nil
	tcpListener net.Listener   // the ICE-TCP listener (WithICETCP), or nil
	turn        *turnServer    // the embedded TURN server (WithTURN), or nil
	media       mediaPorts     // the live sessions' own ports (the TURN peer policy)
	netOnce     sync.Once
	netErr      error

	metrics streamMetrics // counters and histograms (Stats)

	pendingMu sync.Mutex
	pending   int                // offers answered, not connected yet (WithPendingLimit)
	pendingBy map[netip.Addr]int // the same by client address

	closeCtx    context.Context // done when Close begins: ends connections without a session yet
	closeCancel context.CancelFunc
}

// New builds a Stream that runs handler for each connection. The handler's type must fit the
// modality and mode (see the table at Handler); otherwise, and for invalid options, New
// returns an error wrapping ErrInvalidConfig that says what is allowed. New changes nothing
// outside the Stream: a server that runs many sessions should call LimitMallocArenas once
// from main (the examples do).
func New(handler Handler, modality Modality, mode Mode, opts ...Option) (*Stream, error) {
	if err := modality.valid(); err != nil {
		return nil, err
	}
	if err := mode.valid(); err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Stream{
		modality: modality,
		mode:     mode,
		cfg:      cfg,
		log:      cfg.logger,
		sessions: make(map[string]*Session),
	}
	s.closeCtx, s.closeCancel = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if handler == nil {
		return nil, fmt.Errorf("%w: handler is nil", ErrInvalidConfig)
	}
	if err := handler.bind(s); err != nil {
		return nil, err
	}
	api, err := s.newAPI()
	if err != nil {
		return nil, err
	}
	if cfg.turn != nil {
		if err := s.startTURN(); err != nil {
			_ = s.closeNet()
			return nil, err
		}
	}
	s.api = api
	if cfg.cluster != nil {
		if err := cfg.cluster.Attach(s); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("fastrtc: joining the cluster: %w", err)
		}
	}
	return s, nil
}

// Modality returns the stream's modality.
func (s *Stream) Modality() Modality { return s.modality }

// Mode returns the stream's mode.
func (s *Stream) Mode() Mode { return s.mode }

// Inputs returns the stream's declared additional inputs (WithInputs), in order. Do not
// modify the slice.
func (s *Stream) Inputs() []Input { return s.cfg.inputs }

// Logger returns the stream's logger (WithLogger; a discarding one without it).
func (s *Stream) Logger() *slog.Logger { return s.log }

// Stats is the former name of StreamStats.
//
// Deprecated: use StreamStats.
type Stats = StreamStats

// SetInput validates values against the declared inputs and stores them for session id; the
// handler sees them from its next call. It returns an error wrapping ErrUnknownConnection or
// ErrInvalidInput (an *InputError names the field). With a Cluster, a session held by another
// node gets them from there, within 5 s (SetInputContext takes a context instead).
func (s *Stream) SetInput(id string, values map[string]any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.setInput(ctx, id, values)
}

// SetInputContext is SetInput with a context bounding the cluster's forwarding.
func (s *Stream) SetInputContext(ctx context.Context, id string, values map[string]any) error {
	return s.setInput(ctx, id, values)
}

func (s *Stream) setInput(ctx context.Context, id string, values map[string]any) error {
	sess, err := s.lookup(id)
	if err == nil {
		if err := owns(ctx, sess); err != nil {
			return err
		}
		return sess.SetInputs(values)
	}
	if errors.Is(err, ErrInvalidID) || !s.forwarding(ctx) {
		return err
	}
	body := make(map[string]any, len(values)+1)
	for k, v := range values {
		body[k] = v
	}
	body[wire.FieldWebRTCID] = id
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	rep, err := s.call(ctx, Forwarded{Route: RouteInputHook, ID: id, Body: b})
	if err != nil {
		return err
	}
	if rep.OK() {
		return nil
	}
	return replyError(rep, id)
}

// Sessions returns the ids of the live sessions.
func (s *Stream) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ids
}

// Session returns the live session with the given id.
func (s *Stream) Session(id string) (*Session, error) { return s.lookup(id) }

func (s *Stream) lookup(id string) (*Session, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownConnection, id)
	}
	return sess, nil
}

// reserve registers a new session id, enforcing the concurrency limit.
func (s *Stream) reserve(sess *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrStreamClosed
	case s.draining:
		return ErrDraining
	case s.sessions[sess.id] != nil:
		return fmt.Errorf("%w: %q", ErrConnectionExists, sess.id)
	case s.cfg.concurrency > 0 && len(s.sessions) >= s.cfg.concurrency:
		return &LimitError{Limit: s.cfg.concurrency, Scope: wire.ReasonNode}
	}
	s.sessions[sess.id] = sess
	s.wg.Add(1)
	if s.arrived != nil { // wake waitSession callers
		close(s.arrived)
		s.arrived = nil
	}
	return nil
}

// waitSession returns the session id, waiting up to d for it to appear (a client may ask for
// a connection's outputs before it starts the connection).
func (s *Stream) waitSession(ctx context.Context, id string, d time.Duration) (*Session, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		s.mu.Lock()
		sess, ok := s.sessions[id]
		if !ok && s.arrived == nil {
			s.arrived = make(chan struct{})
		}
		arrived, closed := s.arrived, s.closed
		s.mu.Unlock()
		switch {
		case ok:
			return sess, nil
		case closed || d <= 0:
			return nil, fmt.Errorf("%w: %q", ErrUnknownConnection, id)
		}
		select {
		case <-arrived:
		case <-t.C:
			return nil, fmt.Errorf("%w: %q (waited %v)", ErrUnknownConnection, id, d)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %q: %w", ErrUnknownConnection, id, ctx.Err())
		}
	}
}

// LatestOutput returns the last additional output session id emitted, as JSON, whether or
// not a reader took it (FastRTC's fetch_latest_output), or ErrUnknownConnection. ok is false
// if it emitted nothing yet.
func (s *Stream) LatestOutput(id string) (v json.RawMessage, ok bool, err error) {
	sess, err := s.lookup(id)
	if err != nil {
		return nil, false, err
	}
	v = sess.outputs.latestValue()
	return v, v != nil, nil
}

// release removes a session when it has fully ended.
func (s *Stream) release(sess *Session) {
	// metrics.mu before mu, as Metrics takes them: the session's counts move from the
	// live to the ended totals at once.
	s.metrics.mu.Lock()
	s.mu.Lock()
	registered := s.sessions[sess.id] == sess
	if registered {
		delete(s.sessions, sess.id)
		s.metrics.endedLocked(&sess.counters)
	}
	s.mu.Unlock()
	s.metrics.mu.Unlock()
	// The cluster admission goes after the local slot: a node the cluster sees with room
	// has it.
	sess.leaveCluster()
	if registered { // the slot reserve took (openSession may have given it back already)
		s.wg.Done()
	}
}

// Close ends every session, refuses new ones, and waits until all sessions' goroutines have
// returned. It is idempotent.
func (s *Stream) Close() error {
	s.closeCancel()
	s.mu.Lock()
	s.closed = true
	live := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		live = append(live, sess)
	}
	s.mu.Unlock()
	for _, sess := range live { // end them all at once, then wait
		sess.end(nil, "")
	}
	s.wg.Wait()
	s.netOnce.Do(func() { s.netErr = s.closeNet() })
	return s.netErr
}

// Shutdown is Close bounded by ctx, as http.Server.Shutdown: it refuses new sessions, ends
// the live ones and waits for them until ctx is done. It returns ctx's error if the sessions
// have not all ended in time (they go on ending in the background).
func (s *Stream) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openSession opens a session with the given id on a transport: newTransport makes the
// transport for the new session (it exists before the session is visible to other
// requests, so that trickled candidates and Close always find it). openSession reserves the
// session's slot under the concurrency limit and binds the stream's handler to it (the
// handler factory runs here). A refusal returns an error wrapping ErrConcurrencyLimit,
// ErrConnectionExists or ErrStreamClosed (see refusal); a failing handler factory, one
// wrapping ErrHandlerPanic or the factory's error, after the session ended and freed its slot.
func (s *Stream) openSession(ctx context.Context, id string, meta map[string]string, newTransport func(*Session) transport) (*Session, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	sess := s.newSession(id, meta)
	sess.identity, _ = identityOf(ctx)
	sess.tr = newTransport(sess)
	ti := transportIndex(sess.tr.kind())
	s.metrics.requests[ti].Add(1)
	if err := s.reserve(sess); err != nil {
		s.metrics.refusals[refusalReason(err)].Add(1)
		sess.cancel(err)
		return nil, err
	}
	if s.cfg.cluster != nil {
		// The session is visible (and may be ended, by Close or a drain) while the cluster
		// admits it: it ends the normal way, and a late admission is given back at once.
		leave, err := s.cfg.cluster.Admit(ctx, id)
		if err == nil && !sess.setLeave(leave) {
			err = ErrSessionClosed
		}
		if err != nil {
			s.metrics.refusals[refusalReason(err)].Add(1)
			s.mu.Lock()
			registered := s.sessions[id] == sess
			if registered {
				delete(s.sessions, id)
			}
			s.mu.Unlock()
			if registered {
				s.wg.Done()
			}
			sess.cancel(err) // if it was ended meanwhile, that end released it
			return nil, err
		}
	}
	s.metrics.started[ti].Add(1)
	if err := s.bindSessionHandler(sess); err != nil {
		sess.fail(err)
		<-sess.done
		return nil, err
	}
	return sess, nil
}

// startSession starts a session whose transport has connected: the time limit runs from now,
// the client is asked for its inputs, and the audio side (the handler's start-up hook, then
// its Emit loop or source, and the paced output) starts. It runs the start-up hook on the
// caller's goroutine and reports false if the session ended meanwhile; on true, Started is
// closed and the transport may deliver input media.
func (s *Stream) startSession(sess *Session) bool {
	sess.markConnected()
	if len(s.cfg.inputs) > 0 {
		_ = sess.RequestInputs()
	}
	if s.audio != nil && !s.startAudio(sess) {
		return false
	}
	close(sess.started)
	return true
}

// refusal returns the protocol's failure code and meta of a refused session (FastRTC's
// {"status":"failed","meta":{"error":code,...}}), or "" when err is not a refusal the
// protocol names.
func (s *Stream) refusal(err error) (code string, meta wire.FailureMeta) {
	var le *LimitError
	switch {
	case errors.As(err, &le):
		return failConcurrency, wire.FailureMeta{Error: failConcurrency, Limit: le.Limit, Reason: le.Scope}
	case errors.Is(err, ErrConcurrencyLimit):
		return failConcurrency, wire.FailureMeta{Error: failConcurrency, Limit: s.cfg.concurrency}
	case errors.Is(err, ErrDraining):
		return failConcurrency, wire.FailureMeta{Error: failConcurrency, Reason: wire.ReasonDraining}
	case errors.Is(err, ErrConnectionExists):
		return failExists, wire.FailureMeta{Error: failExists}
	}
	return "", wire.FailureMeta{}
}

// codecOpened counts an open codec or VAD context (Stats.CodecContexts) and returns the
// function that closes it and uncounts it; that function is safe to call more than once.
func (s *Stream) codecOpened(close func() error) func() {
	s.codecs.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			defer s.codecs.Add(-1) // even if close panics
			_ = close()
		})
	}
}

// MaxIDLength is the longest connection id a Stream accepts.
const MaxIDLength = 128

// CheckID reports whether id is a valid connection id (see ErrInvalidID): 1 to
// MaxIDLength bytes of ASCII letters, digits and -_.:~+=@. Every route and every method
// that takes an id checks it before anything else (a cluster builds NATS subjects from ids).
func CheckID(id string) error { return checkID(id) }

// checkID validates a connection id a client chose (see ErrInvalidID).
func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: %d bytes long (at most %d)", ErrInvalidID, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.:~+=@", c) >= 0:
		default:
			return fmt.Errorf("%w: byte %d is %q (allowed: ASCII letters, digits and -_.:~+=@)", ErrInvalidID, i, c)
		}
	}
	return nil
}

// Drain stops taking new sessions (offers and WebSocket starts are refused with FastRTC's
// concurrency_limit_reached failure, "reason": "draining"; a Cluster's other nodes take
// them) and waits for the live sessions to end by themselves. When ctx is done first, it
// ends those left with end_stream ("server is draining") and waits for them to finish;
// then it returns ctx's error. The stream stays usable for the sessions' requests until
// Close. Draining reports whether Drain was called.
func (s *Stream) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.log.Info("draining", "sessions", s.Stats().Sessions)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	live := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		live = append(live, sess)
	}
	s.mu.Unlock()
	s.log.Info("drain deadline: ending sessions", "sessions", len(live))
	for _, sess := range live {
		sess.End("server is draining")
	}
	<-done
	return ctx.Err()
}

// Accepting reports whether the stream would take a new session now: not closed, not
// draining, and under its own WithConcurrencyLimit (a Cluster's limit aside).
func (s *Stream) Accepting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && !s.draining && (s.cfg.concurrency == 0 || len(s.sessions) < s.cfg.concurrency)
}

// Draining reports whether Drain has been called: a health check can take the node out of
// its load balancer's rotation.
func (s *Stream) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}
