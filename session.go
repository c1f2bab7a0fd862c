package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/cmem"
	"github.com/fastrtc-go/fastrtc/internal/wire"
	"slices"
	"sort"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Session is one client connection of a Stream. Handlers receive it with every call; it gives
// the connection's id, a context cancelled when the connection ends, its latest inputs, and
// ways to emit additional outputs and messages to the client.
//
// All methods are safe for concurrent use, from handler goroutines or any other.
type Session struct {
	id     string
	stream *Stream
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc

	inputs atomic.Pointer[Inputs]
	inMu   sync.Mutex

	identity string // who opened it (WithAuth), or ""

	hookMu      sync.Mutex    // guards the WithOnInput hook's state
	hookRunning bool          // a call of the hook is running or about to
	hookNames   []string      // names posted since that call began
	inWait      chan struct{} // closed (and replaced) when inputs change
	outputs     *outputQueue

	handler  AudioHandler // the session's audio (or audio-video) handler, if any; set under hMu
	layout   AudioLayout
	hMu      sync.Mutex
	bound    bool      // handler and layout are set (the session may be found before: inputs posted)
	pending  []string  // input names posted before bound, delivered to the handler when bound
	audioOut *audioOut // paced output audio, if the client receives audio

	endMu    sync.Mutex
	endFuncs []func() // run after the session's goroutines have returned
	endRan   bool     // endFuncs have run

	leaveMu  sync.Mutex
	leave    func()    // frees the session's cluster slot (WithCluster), or nil
	left     bool      // leaveCluster ran: a late leave is called at once
	tr       transport // how the session reaches its client; set at creation
	counters counters  // media counts for Stats
	rtp      rtpIn     // the Opus track's receive statistics (audio streams)
	rates    rates     // the samples Stats' rates are measured from
	created  time.Time
	meta     map[string]string // transport metadata (telephone call details)

	video       atomic.Pointer[videoOut] // the outgoing video's sender (WebRTC), if any
	opusBitrate atomic.Int64             // the outgoing Opus bit rate (bit/s), for the video's budget
	nacks       atomic.Uint64            // NACKed packets of the incoming video
	keyReqs     atomic.Uint64            // key frames asked of the client (PLI)

	wg        sync.WaitGroup // the session's goroutines
	wgMu      sync.Mutex     // guards ending against wg.Add after wg.Wait began
	ending    bool
	endOnce   sync.Once
	done      chan struct{} // closed when fully ended and released
	connected chan struct{} // closed when the transport is connected
	started   chan struct{} // closed when startSession has run: input media may flow
	connOnce  sync.Once
	err       error // why it ended; set before done is closed
}

// rtpIn is the receive statistics of a session's Opus track, kept by its reader where pion's
// stats interceptor is not registered (audio streams: see newAPI).
type rtpIn struct {
	packets, lost atomic.Int64
	jitter        atomic.Int64 // RFC 3550 interarrival jitter, in nanoseconds
	// the reader's own state
	started bool
	lastAt  time.Time
	lastTS  uint32
	j       float64 // seconds
}

// arrived counts one packet and updates the jitter estimate (RFC 3550, 6.4.1).
func (r *rtpIn) arrived(ts uint32, at time.Time, clock int) {
	r.packets.Add(1)
	if r.started {
		d := at.Sub(r.lastAt).Seconds() - float64(int32(ts-r.lastTS))/float64(clock)
		r.j += (math.Abs(d) - r.j) / 16
		r.jitter.Store(int64(r.j * float64(time.Second)))
	}
	r.started, r.lastAt, r.lastTS = true, at, ts
}

// rates holds the session's rate samples: a new one at most once a second, so that a rate
// covers the last one to two seconds whoever reads it, and no reader resets another's window.
type rates struct {
	mu        sync.Mutex
	prev, cur rateSample
}

// rateSample is the session's counts at one moment.
type rateSample struct {
	at        time.Time
	vin, vout int64
	bin, bout uint64
}

// rate returns the change from r to now per second of dt.
func rate[T int64 | uint64](now, then T, dt float64) float64 {
	if now < then {
		return 0
	}
	return float64(now-then) / dt
}

// counters are a session's media counts (Session.Stats).
type counters struct {
	videoIn, videoOut atomic.Int64 // frames given to the handler, frames sent
	audioIn, audioOut atomic.Int64 // nanoseconds of audio given to the handler, sent
}

// SessionStats is a snapshot of one session's media and transport. Media counts are the
// server's own; the network figures come from pion's statistics (WebRTC sessions only; zero
// on the WebSocket routes).
type SessionStats struct {
	ID                string        `json:"-"` // the session's id
	Node              string        `json:"-"` // the Cluster node that holds it ("" without a Cluster)
	Transport         string        // "webrtc", "websocket" or "telephone"
	VideoFramesIn     int64         // frames given to the handler
	VideoFramesOut    int64         // frames the handler returned, encoded and sent
	AudioIn, AudioOut time.Duration // audio given to the handler, audio sent
	RTT               time.Duration // round trip of the selected ICE candidate pair
	BytesIn, BytesOut uint64        // on the selected candidate pair
	PacketsIn         uint64        // RTP packets received
	PacketsLost       int64         // RTP packets the client sent that never arrived
	Jitter            time.Duration // the largest interarrival jitter of the incoming streams
	// Rates since the session's sample before its latest: the session samples its counts
	// at most once a second when Stats is called, so a rate covers at least the last second
	// (one to two seconds for a reader polling each second) and readers do not reset each
	// other's window. In the first second, over the session's life so far.
	VideoFPSIn, VideoFPSOut float64 // frames per second given to the handler, sent
	BitrateIn, BitrateOut   float64 // bits per second on the selected candidate pair

	// The outgoing video's congestion control (WebRTC sessions whose client receives
	// video): the link's bandwidth estimate (transport-wide congestion control, or the
	// client's REMB), the encoder's target, the size and frame rate it encodes at now (a
	// handler's frames are scaled down when the estimate is too low for their size), and
	// frames it skipped to keep the rate.
	BandwidthEstimate  int // bit/s; 0 until the first feedback
	VideoTargetBitrate int // bit/s
	VideoWidthOut      int
	VideoHeightOut     int
	VideoFPSTarget     int
	VideoFramesDropped uint64
	KeyFramesOut       uint64 // key frames sent
	KeyFrameRequests   uint64 // key frame requests (PLI, FIR) received from the client
	// Loss recovery of the incoming video: packets asked for again (NACK) and key frames
	// asked for (PLI) because a frame could not be recovered.
	NacksSent, KeyFramesRequested uint64
}

// Stats returns a snapshot of the session's media and transport figures. It may be called
// from any goroutine, also after the session ended (the last figures).
func (s *Session) Stats() SessionStats {
	st := SessionStats{
		ID: s.id, Node: s.stream.nodeID(),
		VideoFramesIn: s.counters.videoIn.Load(), VideoFramesOut: s.counters.videoOut.Load(),
		AudioIn: time.Duration(s.counters.audioIn.Load()), AudioOut: time.Duration(s.counters.audioOut.Load()),
	}
	s.tr.stats(&st)
	if v := s.video.Load(); v != nil {
		vs := v.snd.Stats()
		st.BandwidthEstimate, st.VideoTargetBitrate = vs.EstimateBps, vs.TargetBps
		st.VideoWidthOut, st.VideoHeightOut, st.VideoFPSTarget = vs.Width, vs.Height, vs.FPS
		st.VideoFramesDropped, st.KeyFramesOut, st.KeyFrameRequests = vs.Dropped, vs.KeyFrames, vs.KeyRequests
	}
	st.NacksSent, st.KeyFramesRequested = s.nacks.Load(), s.keyReqs.Load()
	if s.stream.modality == Audio { // no pion stats interceptor: the reader's own counts
		st.PacketsIn += uint64(s.rtp.packets.Load())
		st.PacketsLost += s.rtp.lost.Load()
		st.Jitter = max(st.Jitter, time.Duration(s.rtp.jitter.Load()))
	}
	now := rateSample{at: time.Now(), vin: st.VideoFramesIn, vout: st.VideoFramesOut, bin: st.BytesIn, bout: st.BytesOut}
	r := &s.rates
	r.mu.Lock()
	if r.cur.at.IsZero() {
		r.cur.at = s.created
	}
	if now.at.Sub(r.cur.at) >= time.Second {
		r.prev, r.cur = r.cur, now
	}
	from := r.prev
	if from.at.IsZero() {
		from = rateSample{at: s.created}
	}
	r.mu.Unlock()
	if dt := now.at.Sub(from.at).Seconds(); dt > 0.05 {
		st.VideoFPSIn, st.VideoFPSOut = rate(now.vin, from.vin, dt), rate(now.vout, from.vout, dt)
		st.BitrateIn, st.BitrateOut = rate(now.bin, from.bin, dt)*8, rate(now.bout, from.bout, dt)*8
	}
	return st
}

// transport is how a session reaches its client: a WebRTC peer connection and its data
// channel, a WebSocket in one of its dialects. Stream.openSession makes a session on a
// transport and Stream.startSession starts it once the transport has connected; a transport
// moves media itself (it calls the session's audio input and owns the sink of its audio
// output). Its methods may be called from any goroutine.
type transport interface {
	// send delivers one control message (JSON) to the client, or queues it until the
	// transport can; a transport whose dialect has no control messages drops it.
	send(b []byte) error
	// flush waits up to d for queued control messages to leave.
	flush(d time.Duration)
	// kind is the transport's name: "webrtc", "websocket" or "telephone".
	kind() string
	// stats fills in the transport's part of a stats snapshot.
	stats(st *SessionStats)
	// close closes the connection, once, after the session's context was cancelled; cause
	// is why the session ended (nil for a normal end). The session's goroutines that read
	// from the transport must return soon after.
	close(cause error)
}

func (s *Stream) newSession(id string, meta map[string]string) *Session {
	ctx, cancel := context.WithCancelCause(context.Background())
	sess := &Session{
		id:        id,
		stream:    s,
		log:       s.log.With("session", id),
		ctx:       ctx,
		cancel:    cancel,
		meta:      meta,
		created:   time.Now(),
		outputs:   newOutputQueue(),
		done:      make(chan struct{}),
		connected: make(chan struct{}),
		started:   make(chan struct{}),
	}
	def := s.cfg.inputs.defaults()
	sess.inputs.Store(&def)
	return sess
}

// setLeave records how the session leaves the cluster; false (having called leave) if
// the session already ended.
func (s *Session) setLeave(leave func()) bool {
	s.leaveMu.Lock()
	left := s.left
	if !left {
		s.leave = leave
	}
	s.leaveMu.Unlock()
	if left {
		leave()
	}
	return !left
}

// leaveCluster gives back the session's cluster admission, once.
func (s *Session) leaveCluster() {
	s.leaveMu.Lock()
	leave := s.leave
	s.left, s.leave = true, nil
	s.leaveMu.Unlock()
	if leave != nil {
		leave()
	}
}

// ID returns the connection's id (the client's webrtc_id or websocket_id).
func (s *Session) ID() string { return s.id }

// Context returns a context that is cancelled when the session ends. context.Cause tells why.
func (s *Session) Context() context.Context { return s.ctx }

// Inputs returns the session's current additional inputs (the declared defaults until a
// client sets them).
func (s *Session) Inputs() Inputs { return *s.inputs.Load() }

// Metadata returns transport details of the session: for telephone sessions the Twilio
// streamSid, callSid and custom parameters; empty for WebRTC sessions. Do not modify it.
func (s *Session) Metadata() map[string]string { return s.meta }

// Done returns a channel closed when the session has ended and released its resources.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended (nil for a normal end), once Done is closed.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Started returns a channel closed once the session's transport connected and its start-up
// hooks ran: from then on, input media reaches the handler.
func (s *Session) Started() <-chan struct{} { return s.started }

// SetInputs validates values against the stream's declared inputs and stores them, as a POST
// to /input_hook does: the handler sees them from its next call, InputsChanged fires, and
// the handler's InputReceiver and the WithOnInput hook are called. It returns an error
// wrapping ErrInvalidInput (an *InputError names the field) and stores nothing then.
func (s *Session) SetInputs(values map[string]any) error {
	for {
		old := s.inputs.Load()
		next, err := s.stream.cfg.inputs.apply(*old, values)
		if err != nil {
			return err
		}
		if s.inputs.CompareAndSwap(old, &next) {
			s.inMu.Lock()
			if s.inWait != nil {
				close(s.inWait)
				s.inWait = nil
			}
			s.inMu.Unlock()
			s.postedInputs(values)
			return nil
		}
	}
}

// boundHandler returns the session's audio handler, nil before it is made (or for streams
// without one).
func (s *Session) boundHandler() AudioHandler {
	s.hMu.Lock()
	defer s.hMu.Unlock()
	return s.handler
}

// bindHandler sets the session's handler and layout, then gives the handler the names of
// the inputs posted while it was being made.
func (s *Session) bindHandler(h AudioHandler, layout AudioLayout) {
	s.hMu.Lock()
	s.handler, s.layout, s.bound = h, layout, true
	names := s.pending
	s.pending = nil
	s.hMu.Unlock()
	if r, ok := h.(InputReceiver); ok && len(names) > 0 {
		slices.Sort(names)
		r.InputsPosted(s, slices.Compact(names))
	}
}

// postedInputs runs the on-input hooks after an input change.
func (s *Session) postedInputs(values map[string]any) {
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	s.hMu.Lock()
	if !s.bound { // the session was found before its handler is made: deliver them then
		s.pending = append(s.pending, names...)
	}
	h, ok := s.handler.(InputReceiver)
	s.hMu.Unlock()
	if ok {
		h.InputsPosted(s, names)
	}
	if fn := s.stream.cfg.onInput; fn != nil {
		s.runInputHook(fn, names)
	}
}

// runInputHook calls the WithOnInput hook for names: one call at a time per session; names
// posted while it runs are gathered and passed to one more call when it returns (2,000
// posts once started 1,999 hooks at once).
func (s *Session) runInputHook(fn func(*Session, []string), names []string) {
	s.hookMu.Lock()
	for _, n := range names {
		if !slices.Contains(s.hookNames, n) {
			s.hookNames = append(s.hookNames, n)
		}
	}
	if s.hookRunning {
		s.hookMu.Unlock()
		return
	}
	s.hookRunning = true
	s.hookMu.Unlock()
	started := s.goFn(func() {
		for {
			s.hookMu.Lock()
			batch := s.hookNames
			s.hookNames = nil
			if len(batch) == 0 || s.ctx.Err() != nil {
				s.hookRunning = false
				s.hookMu.Unlock()
				return
			}
			s.hookMu.Unlock()
			sort.Strings(batch)
			func() {
				defer func() {
					if r := recover(); r != nil {
						s.hookMu.Lock()
						s.hookRunning = false
						s.hookMu.Unlock()
						panic(r) // the session's recover ends this session only
					}
				}()
				fn(s, batch)
			}()
		}
	})
	if !started {
		s.hookMu.Lock()
		s.hookRunning, s.hookNames = false, nil
		s.hookMu.Unlock()
	}
}

// receivedText passes a data-channel message that carries text to the handler: a plain
// string, or {"type": "text", "data": "..."}.
func (s *Session) receivedText(msg []byte) {
	h, ok := s.boundHandler().(TextReceiver)
	if !ok || len(msg) == 0 {
		return
	}
	text := string(msg)
	if msg[0] == '{' {
		t, ok := wire.DecodeText(msg)
		if !ok {
			return
		}
		text = t
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	if len(text) > DefaultTextInputBytes {
		s.log.Info("data channel text dropped: too long", "bytes", len(text))
		_ = s.Warn(fmt.Sprintf("text of %d bytes dropped: longer than %d", len(text), DefaultTextInputBytes))
		return
	}
	h.ReceiveText(s, text)
}

// InputsChanged returns a channel that is closed at the next change of the session's inputs
// (a POST /input_hook, Stream.SetInput); read the new values with Inputs. Each change closes
// the channel handed out before it, so call InputsChanged again to wait for the one after.
func (s *Session) InputsChanged() <-chan struct{} {
	s.inMu.Lock()
	defer s.inMu.Unlock()
	if s.inWait == nil {
		s.inWait = make(chan struct{})
	}
	return s.inWait
}

// Emit queues v as an additional output: it is encoded as JSON and delivered, in order, to
// the reader of GET /outputs (or Stream.Outputs), and the client is sent "fetch_output". The
// queue never blocks (if nobody reads, the oldest of 1024 queued outputs is dropped); sending
// "fetch_output" may wait briefly for a slow WebSocket client.
func (s *Session) Emit(v any) error {
	if s.ctx.Err() != nil {
		return ErrSessionClosed
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("fastrtc: emit: %w", err)
	}
	if s.outputs.push(b) {
		s.log.Warn("additional outputs not read: dropped the oldest")
	}
	return s.Send(MessageFetchOutput, []any{})
}

// The control message types a Session sends with Send, as FastRTC's frontends read them
// ({"type": T, "data": D}), and the data of the pause-detection log lines (Log).
const (
	// MessageSendInput asks the client for its additional inputs (data []): a FastRTC
	// page POSTs /input_hook. See RequestInputs.
	MessageSendInput = wire.TypeSendInput
	// MessageFetchOutput says an additional output is ready (data []). Emit sends it.
	MessageFetchOutput = wire.TypeFetchOutput
	// MessageLog carries a log line (data: a string). Log sends it.
	MessageLog = wire.TypeLog
	// MessageStopword says a stop word was heard (data "").
	MessageStopword = wire.TypeStopword
	// MessageEndStream says the server ends the stream (data: a message). End sends it.
	MessageEndStream = wire.TypeEndStream
	// MessageTranscript carries a transcript line (data {"role", "text"}). Transcript
	// sends it.
	MessageTranscript = wire.TypeTranscript
	// MessageTranscriptPartial carries a line still being spoken (data {"role", "text",
	// "final"}). PartialTranscript sends it.
	MessageTranscriptPartial = wire.TypeTranscriptPartial

	// LogStartedTalking is logged when the user starts a turn.
	LogStartedTalking = wire.LogStartedTalking
	// LogPauseDetected is logged when the user's turn ends.
	LogPauseDetected = wire.LogPauseDetected
	// LogResponseStarting is logged when the reply to a turn begins.
	LogResponseStarting = wire.LogResponseStarting
)

// RequestInputs asks the client for its additional inputs (MessageSendInput): a FastRTC
// page answers by POSTing them to /input_hook, which reaches the handler's SetInputs (see
// InputReceiver). The stream sends it once when a session connects if it has inputs.
func (s *Session) RequestInputs() error { return s.Send(MessageSendInput, []any{}) }

// Send sends the client a control message {"type": typ, "data": data} (on the data channel,
// or the WebSocket). FastRTC clients know the Message* types and "update_connection".
// Messages sent before the channel opens are queued.
func (s *Session) Send(typ string, data any) error {
	b, err := wire.EncodeMessage(typ, data)
	if err != nil {
		return fmt.Errorf("fastrtc: send %s: %w", typ, err)
	}
	return s.sendRaw(b)
}

// Warn shows the client a warning: {"type": "warning", "message": msg}.
func (s *Session) Warn(msg string) error {
	return s.sendRaw(wire.EncodeNotice(wire.TypeWarning, msg))
}

func (s *Session) sendError(msg string) {
	_ = s.sendRaw(wire.EncodeNotice(wire.TypeError, msg))
}

func (s *Session) sendRaw(b []byte) error { return s.tr.send(b) }

// Log sends the client a log message {"type": "log", "data": text}.
func (s *Session) Log(text string) error { return s.Send(MessageLog, text) }

// End ends the session from the server: the client is sent MessageEndStream with msg
// (default "Stream closed"), queued media is flushed (briefly), and the connection closes.
// The Stream goes on serving other sessions. End does not wait; use Done for that.
// Handlers may call it.
func (s *Session) End(msg string) {
	if msg == "" {
		msg = wire.DefaultEndStream
	}
	s.end(nil, msg)
}

// CloseStream ends the session, as End does.
//
// Deprecated: use End: it ends the session, not the Stream.
func (s *Session) CloseStream(msg string) { s.End(msg) }

// Close ends the session and waits until its goroutines have returned and its resources are
// freed. It is idempotent. Do not call it from the session's own handler (it would wait for
// itself); use End there.
func (s *Session) Close() error {
	s.end(nil, "")
	<-s.done
	return nil
}

// Fail ends the session because of err: the client is sent {"type":"error","message":...}
// with err's text, the context is cancelled with err as its cause, and Err returns err once
// Done is closed. Only this session ends. It does not wait; a nil err ends the session
// normally, like End with no message. Handlers may call it from any goroutine.
func (s *Session) Fail(err error) {
	s.end(err, "")
}

func (s *Session) fail(err error) { s.end(err, "") }

// end ends the session once: it tells the client why (error or end_stream), cancels the
// context, and in the background closes the transport, waits for the session's goroutines and
// releases its slot.
func (s *Session) end(err error, endMsg string) { s.finish(err, endMsg, true) }

// abort ends the session because of err without telling the client through the transport
// and without waiting for queued messages: for failures the caller answers itself (a
// refused offer gets the error in its HTTP response at once).
func (s *Session) abort(err error) { s.finish(err, "", false) }

func (s *Session) finish(err error, endMsg string, tell bool) {
	s.endOnce.Do(func() {
		s.err = err
		cause := err
		if cause == nil {
			cause = ErrSessionClosed
		}
		// Telling the client may block on a slow WebSocket: do it off the caller's goroutine.
		go func() {
			switch {
			case !tell:
				s.log.Info("session aborted", "err", err)
			case err != nil:
				s.log.Warn("session failed", "err", err)
				s.sendError(err.Error())
			case endMsg != "":
				_ = s.Send(MessageEndStream, endMsg)
			}
			if tell && (err != nil || endMsg != "") {
				// Let the error or end_stream message (and, on a normal end, the queued
				// audio: at most about a second) reach the client.
				d := time.Second
				if err == nil {
					d = 5 * time.Second
				}
				if out := s.audioOut; out != nil {
					out.waitDrained(s.ctx, d+out.queued())
				}
				s.tr.flush(d)
			}
			s.cancel(cause)
			s.wgMu.Lock()
			s.ending = true
			s.wgMu.Unlock()
			s.tr.close(err)
			s.wg.Wait()
			s.endMu.Lock()
			fns := s.endFuncs
			s.endFuncs, s.endRan = nil, true
			s.endMu.Unlock()
			if herr := s.runEndFuncs(fns); herr != nil && s.err == nil {
				s.err = herr
			}
			// The session's codecs are closed: give what libvpx and libopus freed back to
			// the OS (glibc keeps it otherwise, and RSS grows round after round).
			cmem.Trim()
			s.stream.release(s)
			s.log.Info("session ended")
			close(s.done)
		}()
	})
}

// runEndFuncs runs the end-of-session hooks in reverse order of registration. Each runs
// even if another panicked: a panic (a user's Shutdown, a VAD's Close) is logged and becomes
// the session's Err if it has none (the first one is returned), and never reaches the
// process.
func (s *Session) runEndFuncs(fns []func()) (first error) {
	for i := len(fns) - 1; i >= 0; i-- {
		if err := safely(func() error { fns[i](); return nil }); err != nil {
			s.log.Error("end-of-session hook panicked", "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// OnEnd registers fn to run once the session has ended, after its goroutines (and the
// handler's Shutdown) returned, in reverse order of registration; if the session has
// already ended, fn runs at once. A panic in fn is logged and becomes the session's Err if
// it has none.
func (s *Session) OnEnd(fn func()) { s.onEnd(fn) }

// CloseOnEnd makes c a resource of the session: it is counted among the stream's open
// contexts (Stats.CodecContexts, which leak checks read) until the session ends and closes
// it. Handlers register their own detectors and codecs with it (package voice's VADs).
func (s *Session) CloseOnEnd(c io.Closer) { s.onEnd(s.stream.codecOpened(c.Close)) }

// Logger returns the session's logger: the stream's (WithLogger) with the session's id.
func (s *Session) Logger() *slog.Logger { return s.log }

// ReplyStarted records a voice agent's turn in the stream's metrics (StreamStats.Turn): the
// user's turn ended (a pause was detected) at pausedAt, and the reply's first audio is
// handed to the session now.
func (s *Session) ReplyStarted(pausedAt time.Time) { s.stream.metrics.turn.since(pausedAt) }

// TriggerReply makes the session's handler reply now to what the user said so far, as if they
// had paused: the handlers that implement ReplyTrigger do (package voice's ReplyOnPause). It
// returns ErrNoReplyTrigger for other handlers.
func (s *Session) TriggerReply() error {
	h, ok := s.boundHandler().(ReplyTrigger)
	if !ok {
		return ErrNoReplyTrigger
	}
	return h.TriggerReply(s)
}

// onEnd registers fn to run when the session has ended, after its goroutines returned.
// If the session has already ended, fn runs at once.
func (s *Session) onEnd(fn func()) {
	s.endMu.Lock()
	if s.endRan {
		s.endMu.Unlock()
		_ = s.runEndFuncs([]func(){fn})
		return
	}
	s.endFuncs = append(s.endFuncs, fn)
	s.endMu.Unlock()
}

// markConnected records that the transport connected and starts the time limit.
func (s *Session) markConnected() {
	s.connOnce.Do(func() {
		close(s.connected)
		if tl := s.stream.cfg.timeLimit; tl > 0 {
			s.goFn(func() {
				t := time.NewTimer(tl)
				defer t.Stop()
				select {
				case <-t.C:
					s.log.Info("time limit reached")
					s.end(nil, "Time limit reached")
				case <-s.ctx.Done():
				}
			})
		}
	})
}

// Identity returns the identity WithAuth's function gave the request that opened the
// session ("" without WithAuth).
func (s *Session) Identity() string { return s.identity }

// Go runs fn on a goroutine owned by the session: the session's end (and so Stream.Close)
// waits for it to return, and a panic in it ends this session only, with ErrHandlerPanic.
// fn should return once s.Context() is done. After the session began to end, Go does not
// start fn. Handlers use it for work that outlives one call (a reply being generated, a
// timer).
func (s *Session) Go(fn func()) { s.goFn(fn) }

// goFn is Go.
func (s *Session) goFn(fn func()) bool {
	s.wgMu.Lock()
	if s.ending {
		s.wgMu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.wgMu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.recoverPanic()
		fn()
	}()
	return true
}

// recoverPanic turns a panic into the end of this session only.
func (s *Session) recoverPanic() {
	if r := recover(); r != nil {
		s.fail(panicError(r))
	}
}

// panicError wraps a recovered panic value in ErrHandlerPanic.
func panicError(r any) error { return fmt.Errorf("%w: %v", ErrHandlerPanic, r) }

// safely runs fn, returning a panic in it as an error wrapping ErrHandlerPanic.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return fn()
}

// handlerError wraps a handler error for the client and logs.
func handlerError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrHandlerPanic) {
		return err
	}
	return fmt.Errorf("handler: %w", err)
}
