package fastrtc

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// StreamStats is a snapshot of a Stream: its live sessions and resources, and its counters
// and latency histograms since New (a session's own figures are its SessionStats). Package
// github.com/fastrtc-go/fastrtc/metrics exports it to Prometheus; the maps are the
// snapshot's own (the caller may keep or change them).
type StreamStats struct {
	Node     string   // the Cluster's NodeID, or ""
	Modality Modality // the stream's modality
	// Sessions is the number of live sessions; SessionsByTransport counts them by
	// transport ("webrtc", "websocket", "telephone").
	Sessions            int
	SessionsByTransport map[string]int
	// CodecContexts is the open encoder, decoder and VAD contexts of the live sessions;
	// QueuedVideoBytes the compressed video waiting for their decoders. Both are zero
	// once every session ended.
	CodecContexts    int
	QueuedVideoBytes int64
	// Requests counts the session requests (WebRTC offers, WebSocket and telephone
	// starts) by transport; Started, those that opened a session.
	Requests, Started map[string]uint64
	// Refusals counts refused session requests by reason: "node_limit", "cluster_limit",
	// "pending_limit" (WithPendingLimit), "unauthorized" (WithAuth refused any request),
	// "draining", "exists", "closed", "invalid_id", "error".
	Refusals map[string]uint64
	// Media handled, over ended and live sessions.
	VideoFramesIn, VideoFramesOut uint64
	AudioIn, AudioOut             time.Duration
	// Handler is the time of the handler's calls by kind: "video" (a frame in, a frame
	// out) and "audio" (one Receive).
	Handler map[string]Histogram
	// Turn is the voice agents' time from a detected pause to the first frame of the
	// reply handed to the output (Session.ReplyStarted: voice.ReplyOnPause reports it).
	Turn Histogram
	// Codec is the time of one codec call by "codec op": "vp8 decode", "vp8 encode",
	// "opus decode", "opus encode".
	Codec map[string]Histogram
	// VideoSendHeights counts the live sessions that send video by the height their
	// congestion control encodes at now (a handler's 480-line frames go out at 360 or 240
	// lines on a slow link); VideoSendBitrate is the sum of their encoders' targets
	// (bit/s) and VideoSendEstimate of their links' bandwidth estimates.
	VideoSendHeights                    map[int]int
	VideoSendBitrate, VideoSendEstimate int64
	// ICE is WebRTC's "gathering" time (the server's candidates, while the offer waits) and
	// its "connect" time (the answer to a connected peer).
	ICE map[string]Histogram
	// TURNAllocations is the embedded TURN server's (WithTURN) live allocations;
	// TURNRefusals counts what it refused, by reason: "peer" (a peer address or port outside
	// TURNOptions.AllowPeer), "tcp" (a TCP allocation, not enabled), "quota_user" and
	// "quota_source" (MaxAllocationsPerUser, MaxAllocationsPerSource), "idle" (a relay
	// ended by RelayIdleTimeout). Both are empty without WithTURN.
	TURNAllocations int
	TURNRefusals    map[string]uint64
}

// Histogram is a snapshot of durations in buckets: Counts[i] is the number of observations
// no longer than Bounds[i] (cumulative, as Prometheus has them); Count includes those above
// the last bound.
type Histogram struct {
	Count  uint64
	Sum    time.Duration
	Bounds []time.Duration
	Counts []uint64
}

// histBounds are the upper bounds of every latency histogram: 50 µs to 10 s.
var histBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// hist is a lock-free histogram over histBounds.
type hist struct {
	counts [len(histBounds) + 1]atomic.Uint64
	sum    atomic.Int64
}

func (h *hist) observe(d time.Duration) {
	i := 0
	for i < len(histBounds) && d > histBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// since observes the time since t0.
func (h *hist) since(t0 time.Time) { h.observe(time.Since(t0)) }

func (h *hist) snapshot() Histogram {
	out := Histogram{Bounds: histBounds[:], Counts: make([]uint64, len(histBounds)), Sum: time.Duration(h.sum.Load())}
	var c uint64
	for i := range h.counts {
		c += h.counts[i].Load()
		if i < len(histBounds) {
			out.Counts[i] = c
		}
	}
	out.Count = c
	return out
}

// The transports' names (SessionStats.Transport, the metrics' transport label).
var transports = [...]string{"webrtc", "websocket", "telephone"}

// Refusal reasons (StreamStats.Refusals).
var refusalReasons = [...]string{"node_limit", "cluster_limit", "pending_limit", "unauthorized", "draining", "exists", "closed", "invalid_id", "error"}

// refusalIndex returns the index of a refusal reason.
func refusalIndex(reason string) int {
	for i, r := range refusalReasons {
		if r == reason {
			return i
		}
	}
	return len(refusalReasons) - 1
}

// streamMetrics are a Stream's counters. All fields are safe for concurrent use.
type streamMetrics struct {
	requests, started [len(transports)]atomic.Uint64
	refusals          [len(refusalReasons)]atomic.Uint64

	// The media counts of ended sessions (live ones are added at snapshot time).
	mu                               sync.Mutex
	videoIn, videoOut                uint64
	audioIn, audioOut                time.Duration
	handlerVideo, handlerAudio       hist
	turn                             hist
	vp8Dec, vp8Enc, opusDec, opusEnc hist
	iceGather, iceConnect            hist
}

func transportIndex(name string) int {
	for i, t := range transports {
		if t == name {
			return i
		}
	}
	return 0
}

// refusalReason classifies why openSession refused a session.
func refusalReason(err error) int {
	var le *LimitError
	r := "error"
	switch {
	case errors.As(err, &le) && le.Scope == "cluster":
		r = "cluster_limit"
	case errors.As(err, &le) && (le.Scope == "pending" || le.Scope == "pending_source"):
		r = "pending_limit"
	case errors.Is(err, ErrConcurrencyLimit):
		r = "node_limit"
	case errors.Is(err, ErrDraining):
		r = "draining"
	case errors.Is(err, ErrConnectionExists):
		r = "exists"
	case errors.Is(err, ErrStreamClosed):
		r = "closed"
	case errors.Is(err, ErrInvalidID):
		r = "invalid_id"
	}
	for i, name := range refusalReasons {
		if name == r {
			return i
		}
	}
	return len(refusalReasons) - 1
}

// endedLocked adds an ended session's media counts to the stream's; m.mu is held.
func (m *streamMetrics) endedLocked(c *counters) {
	m.videoIn += uint64(c.videoIn.Load())
	m.videoOut += uint64(c.videoOut.Load())
	m.audioIn += time.Duration(c.audioIn.Load())
	m.audioOut += time.Duration(c.audioOut.Load())
}

// Metrics is the former name of StreamStats.
//
// Deprecated: use StreamStats (Sessions is now the live count; by transport, it is
// SessionsByTransport).
type Metrics = StreamStats

// Metrics returns s.Stats().
//
// Deprecated: use Stats.
func (s *Stream) Metrics() StreamStats { return s.Stats() }

// Stats returns a snapshot of the stream's sessions, resources, counters and histograms. It
// is cheap (no allocation per session beyond the maps; live sessions' counts are read
// atomically), so a Prometheus scrape may call it every time. It may be called from any
// goroutine, also after Close.
func (s *Stream) Stats() StreamStats {
	m := &s.metrics
	out := StreamStats{
		Node: s.nodeID(), Modality: s.modality,
		CodecContexts: int(s.codecs.Load()), QueuedVideoBytes: s.videoQueued.Load(),
		SessionsByTransport: map[string]int{}, Requests: map[string]uint64{}, Started: map[string]uint64{},
		Refusals: map[string]uint64{}, VideoSendHeights: map[int]int{},
		Handler: map[string]Histogram{"video": m.handlerVideo.snapshot(), "audio": m.handlerAudio.snapshot()},
		Turn:    m.turn.snapshot(),
		Codec: map[string]Histogram{"vp8 decode": m.vp8Dec.snapshot(), "vp8 encode": m.vp8Enc.snapshot(),
			"opus decode": m.opusDec.snapshot(), "opus encode": m.opusEnc.snapshot()},
		ICE: map[string]Histogram{"gathering": m.iceGather.snapshot(), "connect": m.iceConnect.snapshot()},
	}
	for i, t := range transports {
		out.SessionsByTransport[t] = 0
		out.Requests[t], out.Started[t] = m.requests[i].Load(), m.started[i].Load()
	}
	for i, r := range refusalReasons {
		out.Refusals[r] = m.refusals[i].Load()
	}
	if s.turn != nil {
		out.TURNAllocations, out.TURNRefusals = s.turn.guard.Allocations(), s.turn.guard.Refused()
	}
	// Hold mu across both the live sessions and the ended totals: a session that ends
	// meanwhile (release adds its counts under mu) is counted once.
	m.mu.Lock()
	out.VideoFramesIn, out.VideoFramesOut, out.AudioIn, out.AudioOut = m.videoIn, m.videoOut, m.audioIn, m.audioOut
	s.mu.Lock()
	for _, sess := range s.sessions {
		out.Sessions++
		out.SessionsByTransport[sess.tr.kind()]++
		c := &sess.counters
		out.VideoFramesIn += uint64(c.videoIn.Load())
		out.VideoFramesOut += uint64(c.videoOut.Load())
		out.AudioIn += time.Duration(c.audioIn.Load())
		out.AudioOut += time.Duration(c.audioOut.Load())
		if v := sess.video.Load(); v != nil {
			if vs := v.snd.Stats(); vs.Height > 0 {
				out.VideoSendHeights[vs.Height]++
				out.VideoSendBitrate += int64(vs.TargetBps)
				out.VideoSendEstimate += int64(vs.EstimateBps)
			}
		}
	}
	s.mu.Unlock()
	m.mu.Unlock()
	return out
}
