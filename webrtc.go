package fastrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"
	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// offerRequest is the body of POST /webrtc/offer.
type offerRequest = wire.OfferRequest

// iceCandidate is a trickled client candidate (RTCIceCandidateInit).
type iceCandidate = wire.ICECandidate

// The failure codes of the offer route, as FastRTC clients expect them.
const (
	failConcurrency      = wire.CodeConcurrencyLimit
	failExists           = wire.CodeConnectionExists
	failUnknown          = wire.CodeUnknownConnection
	failInvalidCandidate = wire.CodeInvalidCandidate
	failClosed           = wire.CodeConnectionClosed
)

// serveOffer is POST /webrtc/offer.
func (s *Stream) serveOffer(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	var req offerRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	switch {
	case req.Type == "":
		writeError(w, http.StatusUnprocessableEntity, "missing field: type")
		return
	case req.WebRTCID == "":
		writeError(w, http.StatusUnprocessableEntity, "missing field: webrtc_id")
		return
	}
	if err := checkID(req.WebRTCID); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "webrtc_id: "+err.Error())
		return
	}
	route := RouteOffer
	if req.Type == wire.TypeICECandidate {
		route = RouteCandidate
	}
	if r = s.authorize(w, r, route, req.WebRTCID); r == nil {
		return
	}
	switch req.Type {
	case wire.TypeOffer:
		if req.SDP == "" {
			writeError(w, http.StatusUnprocessableEntity, "missing field: sdp (required for type offer)")
			return
		}
		s.handleOffer(w, r, req)
	case wire.TypeICECandidate:
		s.handleCandidate(r.Context(), w, req)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown type %q (want \"offer\" or \"ice-candidate\")", req.Type))
	}
}

func (s *Stream) handleOffer(w http.ResponseWriter, r *http.Request, req offerRequest) {
	// A forwarded offer (another node's) counts against that node's client bound only.
	var src netip.Addr
	if r.Context().Value(forwardedKey{}) == nil {
		src = s.clientAddr(r)
	}
	release, err := s.takePending(src)
	if err != nil {
		s.metrics.refusals[refusalReason(err)].Add(1)
		_, meta := s.refusal(err)
		writeJSON(w, http.StatusOK, wire.Failed(meta))
		return
	}
	var st *rtcTransport
	sess, err := s.openSession(r.Context(), req.WebRTCID, nil, func(sess *Session) transport {
		st = &rtcTransport{sess: sess}
		return st
	})
	if err != nil {
		// A full or draining node hands the offer to another node of the cluster: the
		// answer then names that node's candidates, and the media goes there.
		var le *LimitError
		release() // handed over or refused: nothing pends here
		if (errors.Is(err, ErrDraining) || errors.As(err, &le) && le.Scope == wire.ReasonNode) && s.forwarding(r.Context()) {
			if b, merr := json.Marshal(req); merr == nil && s.forward(r.Context(), Forwarded{Route: RouteOffer, ID: req.WebRTCID, Body: b}, w) {
				return
			}
		}
		if code, meta := s.refusal(err); code != "" {
			writeJSON(w, http.StatusOK, wire.Failed(meta))
		} else if errors.Is(err, ErrStreamClosed) {
			writeError(w, http.StatusServiceUnavailable, err.Error())
		} else if errors.Is(err, ErrHandlerPanic) { // the application's own failure: its client is told
			writeError(w, http.StatusInternalServerError, err.Error())
		} else {
			s.log.Error("offer: opening the session", "session", req.WebRTCID, "err", err)
			writeError(w, http.StatusInternalServerError, "internal error: the server could not open the session")
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), OfferTimeout)
	defer cancel()
	answer, err := s.startWebRTC(ctx, sess, st, req.SDP)
	if err != nil {
		release()
		sess.abort(err) // the HTTP response tells the client, now
		<-sess.done
		switch {
		case errors.Is(err, errInternal): // the server's own trouble (sockets, file descriptors): details in the log only
			s.log.Error("offer: answering", "session", req.WebRTCID, "err", err)
			writeError(w, http.StatusInternalServerError, "internal error: the server could not answer the offer")
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			writeError(w, http.StatusGatewayTimeout, "the server could not answer in time")
		case errors.Is(err, ErrSessionClosed) || errors.Is(err, ErrStreamClosed):
			writeError(w, http.StatusServiceUnavailable, "the session was closed while the offer was answered")
		default: // what the offer got wrong
			writeError(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	// The pending slot is held until the session connects or ends.
	if !sess.goFn(func() {
		defer release()
		select {
		case <-sess.connected:
		case <-sess.ctx.Done():
		}
	}) {
		release()
	}
	if id := s.nodeID(); id != "" {
		w.Header().Set(NodeHeader, id)
	}
	writeJSON(w, http.StatusOK, wire.Answer{SDP: answer.SDP, Type: answer.Type.String()})
}

// errBadOffer marks an offer pion could not take.
var errBadOffer = errors.New("fastrtc: invalid SDP offer")

// errInternal marks an offer's failures that are the server's own (a socket, a file
// descriptor, gathering): they are logged, and the client gets a generic message (their
// text once showed a server's fd exhaustion to anyone). Other errors say what the offer got
// wrong and go back to the client.
var errInternal = errors.New("fastrtc: internal error")

// takePending takes a slot of WithPendingLimit for an offer from client address src (the zero
// Addr: no per-client bound) and returns the function that gives it back, once.
func (s *Stream) takePending(src netip.Addr) (release func(), err error) {
	if src.Is6() && !src.Is4In6() {
		// One IPv6 client has a /64 of addresses: it is one client.
		src = netip.PrefixFrom(src, 64).Masked().Addr()
	}
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if n := s.cfg.pendingLimit; n > 0 && s.pending >= n {
		return nil, &LimitError{Limit: n, Scope: wire.ReasonPending}
	}
	if n := s.cfg.pendingPerSrc; n > 0 && src.IsValid() && s.pendingBy[src] >= n {
		return nil, &LimitError{Limit: n, Scope: wire.ReasonPendingSource}
	}
	s.pending++
	if src.IsValid() {
		if s.pendingBy == nil {
			s.pendingBy = make(map[netip.Addr]int)
		}
		s.pendingBy[src]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.pendingMu.Lock()
			defer s.pendingMu.Unlock()
			s.pending--
			if src.IsValid() {
				if s.pendingBy[src]--; s.pendingBy[src] <= 0 {
					delete(s.pendingBy, src)
				}
			}
		})
	}, nil
}

// maxDataChannelBuffer bounds what a session queues on its data channel for a client that
// does not read; messages beyond it are dropped.
const maxDataChannelBuffer = 1 << 20

// rtcTransport is the transport of a WebRTC session: its peer connection and data channel.
// All methods are safe for concurrent use; mu guards the fields.
type rtcTransport struct {
	mu         sync.Mutex
	pc         *webrtc.PeerConnection
	closed     bool // close ran: a peer connection attached later is closed at once
	noDC       bool // the offer has no data channel: control messages have nowhere to go
	remoteSet  bool
	pending    []webrtc.ICECandidateInit
	candidates int // trickled so far (at most maxTrickledCandidates)
	dc         *webrtc.DataChannel
	dcOpen     bool
	queued     [][]byte
	sess       *Session
}

// attach sets the session's peer connection, unless the transport was closed meanwhile (then
// the caller must close pc itself).
func (st *rtcTransport) attach(pc *webrtc.PeerConnection) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.pc = pc
	return true
}

// peerConnection returns the session's peer connection, or nil.
func (st *rtcTransport) peerConnection() *webrtc.PeerConnection {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pc
}

// close closes the peer connection (which ends its tracks and so the media goroutines).
func (st *rtcTransport) close(error) {
	st.mu.Lock()
	st.closed = true
	pc := st.pc
	st.mu.Unlock()
	if pc != nil {
		if err := pc.Close(); err != nil {
			st.sess.log.Debug("close peer connection", "err", err)
		}
	}
}

// stats implements transport with pion's statistics of the peer connection.
func (st *rtcTransport) kind() string { return "webrtc" }

func (st *rtcTransport) stats(out *SessionStats) {
	out.Transport = "webrtc"
	pc := st.peerConnection()
	if pc == nil {
		return
	}
	for _, v := range pc.GetStats() {
		switch x := v.(type) {
		case webrtc.ICECandidatePairStats:
			if x.Nominated && x.State == webrtc.StatsICECandidatePairStateSucceeded {
				out.RTT = time.Duration(x.CurrentRoundTripTime * float64(time.Second))
				out.BytesIn, out.BytesOut = x.BytesReceived, x.BytesSent
			}
		case webrtc.InboundRTPStreamStats:
			out.PacketsIn += uint64(x.PacketsReceived)
			out.PacketsLost += int64(x.PacketsLost)
			out.Jitter = max(out.Jitter, time.Duration(x.Jitter*float64(time.Second)))
		}
	}
}

// send sends on the data channel, or queues until it opens.
func (st *rtcTransport) send(b []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess.ctx.Err() != nil && st.dc == nil {
		return ErrSessionClosed
	}
	if st.noDC {
		return nil // the client opened no data channel: it takes no control messages
	}
	if !st.dcOpen {
		if len(st.queued) >= 256 {
			st.queued = st.queued[1:]
		}
		st.queued = append(st.queued, b)
		return nil
	}
	if st.dc.BufferedAmount() > maxDataChannelBuffer {
		return fmt.Errorf("fastrtc: data channel: the client is not reading (%d bytes queued); message dropped", st.dc.BufferedAmount())
	}
	if err := st.dc.SendText(string(b)); err != nil {
		return fmt.Errorf("fastrtc: data channel: %w", err)
	}
	return nil
}

func (st *rtcTransport) onDataChannel(dc *webrtc.DataChannel) {
	sess := st.sess
	dc.OnOpen(func() {
		st.mu.Lock()
		st.dc, st.dcOpen = dc, true
		q := st.queued
		st.queued = nil
		for _, b := range q {
			_ = dc.SendText(string(b))
		}
		st.mu.Unlock()
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		_ = sess.Log(wire.LogReceivedPrefix + string(m.Data))
		if m.IsString {
			sess.receivedText(m.Data)
		}
	})
}

// flush waits up to d for the data channel's queued bytes (or messages queued before it
// opened) to leave.
func (st *rtcTransport) flush(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if pc := st.peerConnection(); pc == nil {
			return
		} else if pcs := pc.ConnectionState(); pcs == webrtc.PeerConnectionStateClosed || pcs == webrtc.PeerConnectionStateFailed {
			return // the client has gone: nothing more will leave
		}
		st.mu.Lock()
		dc, open, queued, noDC := st.dc, st.dcOpen, len(st.queued), st.noDC
		st.mu.Unlock()
		switch {
		case noDC || !open && queued == 0:
			return
		case open && dc.ReadyState() != webrtc.DataChannelStateOpen:
			return
		case open && dc.BufferedAmount() == 0:
			time.Sleep(20 * time.Millisecond) // let SCTP put the last message on the wire
			return
		}
		time.Sleep(5 * time.Millisecond) // still sending, or the channel is about to open
	}
}

// startWebRTC creates the session's peer connection from the client's offer, wires media and
// the data channel, and returns the complete (non-trickle) answer.
func (s *Stream) startWebRTC(ctx context.Context, sess *Session, st *rtcTransport, offerSDP string) (*webrtc.SessionDescription, error) {
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: s.cfg.iceServers})
	if err != nil {
		return nil, fmt.Errorf("%w: new peer connection: %w", errInternal, err)
	}
	est := s.estimators.Take(pc.ID())
	if !st.attach(pc) { // the session was closed meanwhile (Stream.Close)
		_ = pc.Close()
		return nil, ErrSessionClosed
	}
	pc.OnDataChannel(st.onDataChannel)
	pc.OnConnectionStateChange(func(cs webrtc.PeerConnectionState) {
		sess.log.Debug("connection state", "state", cs.String())
		switch cs {
		case webrtc.PeerConnectionStateConnected:
			sess.goFn(func() { s.startSession(sess) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			sess.end(nil, "")
		}
	})
	st.mu.Lock()
	budget := max(maxTrickledCandidates-st.candidates, 0) // those trickled before the offer count too
	st.mu.Unlock()
	offerSDP, inOffer, err := s.filterOfferCandidates(offerSDP, budget)
	if err != nil {
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadOffer, err)
	}
	st.mu.Lock()
	st.candidates += inOffer
	st.noDC = !strings.Contains("\n"+offerSDP, "\nm=application")
	if st.noDC {
		st.queued = nil
	}
	st.remoteSet = true
	pending := st.pending
	st.pending = nil
	st.mu.Unlock()
	for _, c := range pending {
		if err := pc.AddICECandidate(c); err != nil {
			sess.log.Debug("trickled candidate rejected", "err", err)
		}
	}
	if err := s.setupMedia(sess, pc, est); err != nil {
		return nil, err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("fastrtc: create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	gatherStart := time.Now()
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("%w: set local description: %w", errInternal, err)
	}
	select {
	case <-gathered:
		s.metrics.iceGather.since(gatherStart)
	case <-ctx.Done():
		return nil, fmt.Errorf("fastrtc: ICE gathering: %w", ctx.Err())
	}
	if sess.ctx.Err() != nil {
		return nil, ErrSessionClosed
	}
	s.addMediaPorts(sess, pc.LocalDescription().SDP)
	// Close a session that does not connect in time.
	answered := time.Now()
	sess.goFn(func() {
		t := time.NewTimer(s.cfg.connectTimeout)
		defer t.Stop()
		select {
		case <-sess.connected:
			s.metrics.iceConnect.since(answered)
		case <-sess.ctx.Done():
		case <-t.C:
			sess.fail(fmt.Errorf("fastrtc: not connected within %v", s.cfg.connectTimeout))
		}
	})
	return pc.LocalDescription(), nil
}

// handleCandidate takes a trickled client candidate.
func (s *Stream) handleCandidate(ctx context.Context, w http.ResponseWriter, req offerRequest) {
	sess, err := s.lookup(req.WebRTCID)
	if err != nil {
		if s.forwarding(ctx) {
			// A candidate may overtake its offer on the way to another node: wait a little.
			if b, err := json.Marshal(req); err == nil && s.forward(ctx, Forwarded{Route: RouteCandidate, ID: req.WebRTCID, Body: b, Wait: candidateWait}, w) {
				return
			}
		}
		writeFailed(w, wire.FailureMeta{Error: failUnknown})
		return
	}
	if owns(ctx, sess) != nil {
		writeFailed(w, wire.FailureMeta{Error: failUnknown})
		return
	}
	st, ok := sess.tr.(*rtcTransport)
	if !ok || sess.ctx.Err() != nil {
		writeFailed(w, wire.FailureMeta{Error: failClosed})
		return
	}
	var c iceCandidate
	if len(req.Candidate) == 0 || json.Unmarshal(req.Candidate, &c) != nil || c.Candidate == nil {
		writeFailed(w, wire.FailureMeta{Error: failInvalidCandidate})
		return
	}
	init := webrtc.ICECandidateInit{Candidate: *c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	if *c.Candidate != "" {
		if reason := s.refuseCandidate(*c.Candidate); reason != "" {
			writeFailed(w, wire.FailureMeta{Error: failInvalidCandidate, Detail: reason})
			return
		}
	}
	st.mu.Lock()
	if *c.Candidate != "" {
		if st.candidates >= maxTrickledCandidates {
			st.mu.Unlock()
			writeFailed(w, wire.FailureMeta{Error: failInvalidCandidate, Detail: fmt.Sprintf("too many candidates (at most %d per connection)", maxTrickledCandidates)})
			return
		}
		st.candidates++
	}
	if !st.remoteSet {
		st.pending = append(st.pending, init)
		st.mu.Unlock()
		writeJSON(w, http.StatusOK, wire.Succeeded())
		return
	}
	st.mu.Unlock()
	if *c.Candidate == "" { // end-of-candidates
		writeJSON(w, http.StatusOK, wire.Succeeded())
		return
	}
	if err := st.peerConnection().AddICECandidate(init); err != nil {
		writeFailed(w, wire.FailureMeta{Error: failInvalidCandidate, Detail: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, wire.Succeeded())
}

// maxTrickledCandidates bounds the candidates a client may give one session, in its offer and
// trickled together: each makes the server send connectivity checks to the address it names.
const maxTrickledCandidates = 64

// refuseCandidate returns why a client's candidate is refused ("" to take it): an address
// the operator's filter (WithCandidateFilter) refuses. Candidates that name a host by mDNS
// (".local") pass, since pion resolves them on the local link only.
func (s *Stream) refuseCandidate(cand string) string {
	if s.cfg.candidateFilter == nil {
		return ""
	}
	// candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
	f := strings.Fields(strings.TrimPrefix(cand, "a="))
	if len(f) < 6 {
		return "malformed candidate"
	}
	addr, err := netip.ParseAddr(f[4])
	if err != nil {
		if strings.HasSuffix(f[4], ".local") {
			return ""
		}
		return fmt.Sprintf("candidate address %q is not an IP address", f[4])
	}
	if !s.cfg.candidateFilter(addr.Unmap()) {
		return fmt.Sprintf("candidate address %s refused by the server's filter", addr)
	}
	return ""
}

// filterOfferCandidates removes the offer's candidates whose address the operator's filter
// refuses, and those beyond budget (maxTrickledCandidates less those trickled before the
// offer): the offer's candidates count toward the same bound as trickled ones (a 31 KB
// offer with 500 candidates made the server send 8,000 connectivity checks to addresses of
// the sender's choice). It works on the SDP as pion parses it (a line-based filter missed
// lines pion still reads, such as one preceded by a stray carriage return), and returns the
// SDP re-encoded and the number of candidates kept.
func (s *Stream) filterOfferCandidates(offer string, budget int) (string, int, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return "", 0, fmt.Errorf("%w: %w", errBadOffer, err)
	}
	kept, dropped := 0, 0
	filter := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			if a.Key == "candidate" {
				if kept >= budget || s.refuseCandidate("candidate:"+a.Value) != "" {
					dropped++
					continue
				}
				kept++
			}
			out = append(out, a)
		}
		return out
	}
	d.Attributes = filter(d.Attributes)
	for _, m := range d.MediaDescriptions {
		m.Attributes = filter(m.Attributes)
	}
	if dropped == 0 {
		return offer, kept, nil
	}
	s.log.Info("offer candidates dropped", "kept", kept, "dropped", dropped)
	b, err := d.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", errBadOffer, err)
	}
	return string(b), kept, nil
}

// setupMedia adds the server's tracks and media goroutines for the stream's modality and
// mode, and routes incoming tracks to the video or audio path.
func (s *Stream) setupMedia(sess *Session, pc *webrtc.PeerConnection, est cc.BandwidthEstimator) error {
	var onVideo func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	var onAudio func(*webrtc.TrackRemote)
	var err error
	if s.modality == Video || s.modality == AudioVideo {
		if onVideo, err = s.setupVideo(sess, pc, est); err != nil {
			return err
		}
	}
	if s.modality == Audio || s.modality == AudioVideo {
		if onAudio, err = s.setupAudio(sess, pc); err != nil {
			return err
		}
	}
	var seenVideo, seenAudio atomic.Bool
	pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		// Drain the receiver's RTCP so that interceptors process the sender reports.
		sess.goFn(func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := recv.Read(buf); err != nil {
					return
				}
			}
		})
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			if onVideo == nil || seenVideo.Swap(true) {
				sess.log.Debug("ignoring incoming track", "kind", "video")
				return
			}
			sess.goFn(func() { onVideo(track, recv) })
			return
		}
		if onAudio == nil || seenAudio.Swap(true) {
			sess.log.Debug("ignoring incoming track", "kind", track.Kind().String())
			return
		}
		sess.goFn(func() { onAudio(track) })
	})
	return nil
}

// newAPI builds the pion API shared by all sessions: VP8 and Opus only, default
// interceptors (NACK, RTCP reports, TWCC).
func (s *Stream) newAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := rtcmedia.RegisterCodecs(me, rtcmedia.OpusFmtp); err != nil {
		return nil, fmt.Errorf("fastrtc: %w", err)
	}
	ir := &interceptor.Registry{}
	// Audio streams need RTCP reports (round-trip time, the browser's stats) and TWCC
	// feedback, not NACK nor pion's stats: their 100 ms timers were half of an idle
	// session's CPU (measured with scripts/load.sh audio-idle 50: 7.9% -> 4.3% of a core).
	// Video streams add retransmission and, when the server sends video, congestion control.
	video := s.modality != Audio
	b := s.cfg.bandwidth
	ests, err := rtcmedia.Interceptors(me, ir, rtcmedia.InterceptorOptions{
		Video: video, BWE: video && s.mode.clientReceives(),
		StartBitrate: b.StartKbps * 1000, MinBitrate: b.MinKbps * 1000, MaxBitrate: b.MaxKbps * 1000,
		Logger: pionLogs{s.log},
	})
	if err != nil {
		return nil, fmt.Errorf("fastrtc: %w", err)
	}
	s.estimators = ests
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{s.log}}
	se.SetIncludeLoopbackCandidate(true)
	// A client that vanishes without closing is noticed after ~4 s without traffic and its
	// session ends ~6 s later (pion's defaults: 5 s + 25 s).
	se.SetICETimeouts(4*time.Second, 6*time.Second, 2*time.Second)
	// No multicast DNS unless asked for (WithMDNS): pion's default opens two sockets per
	// session on port 5353 of every interface, to resolve .local candidates that a server
	// does not need (the browser's checks reach the server's own candidates and are learnt
	// as peer-reflexive).
	if !s.cfg.mdns {
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if err := s.listen(&se); err != nil {
		return nil, err
	}
	if s.cfg.settingEngine != nil {
		s.cfg.settingEngine(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}
