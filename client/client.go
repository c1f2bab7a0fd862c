package client

import (
	"github.com/fastrtc-go/fastrtc/media"

	"github.com/fastrtc-go/fastrtc/internal/vsend"

	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"

	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// DefaultDataChannelLabel is the label of the data channel the client opens, as FastRTC's
// frontends do.
const DefaultDataChannelLabel = "text"

// Options configures a WebRTC connection. The zero value (or a nil *Options) is a
// data-channel-only connection with a random id; set the Send*/Receive* fields to match the
// server's stream (a FastRTC server refuses an offer without the media section its stream
// needs). Options are copied by New and Dial: changing them afterwards has no effect.
type Options struct {
	// ID is the connection's webrtc_id (default: 16 random hex digits). It names the
	// connection in POST /input_hook and GET /outputs.
	ID string

	// SendVideo and ReceiveVideo set up a VP8 video transceiver (sendrecv, sendonly or
	// recvonly). SendAudio and ReceiveAudio do the same for Opus audio.
	SendVideo, ReceiveVideo bool
	SendAudio, ReceiveAudio bool
	// Stereo makes SendAudio encode two channels and ReadAudio decode two (default mono).
	Stereo bool

	// VideoBitrateKbps is SendVideo's highest VP8 bit rate in kbit/s (default 1500; 30 to
	// 100000). SendVideo follows the connection's bandwidth estimate (Google congestion
	// control on the server's transport-wide feedback, or its REMB) between
	// VideoMinKbps and this, starting at VideoStartKbps, and scales frames down or lowers
	// the frame rate (VideoDegradation) when the estimate is too low for their size.
	VideoBitrateKbps int
	// VideoMinKbps and VideoStartKbps: defaults 100 and 600 (at most VideoBitrateKbps).
	VideoMinKbps, VideoStartKbps int
	// VideoDegradation says what SendVideo gives up first on a slow link.
	VideoDegradation media.Degradation
	// VideoSpeed is libvpx's real-time speed for SendVideo, 4 (slow, best) to 16 (fastest);
	// default 10.
	VideoSpeed int
	// AudioBitrateBps is SendAudio's Opus bit rate per channel in bit/s (default 32000; 6000
	// to 256000).
	AudioBitrateBps int
	// PaceAudio makes SendAudio pace itself: each 20 ms packet leaves at its due time, so a
	// caller may hand over a whole clip at once. Without it the caller paces (sends 20 ms of
	// audio every 20 ms) and SendAudio never sleeps.
	PaceAudio bool

	// Trickle sends the offer at once and posts the client's ICE candidates as they are
	// gathered ({"type":"ice-candidate",...}) instead of waiting for gathering to complete.
	Trickle bool
	// ICEServers are STUN/TURN servers for the peer connection (default none).
	ICEServers []webrtc.ICEServer
	// ICETransportPolicy restricts the candidates used: webrtc.ICETransportPolicyRelay
	// connects only through TURN (default: all).
	ICETransportPolicy webrtc.ICETransportPolicy
	// SettingEngine, if set, adjusts the pion SettingEngine before the peer connection is
	// created (for example to restrict ICE to loopback in tests).
	SettingEngine func(*webrtc.SettingEngine)
	// HTTPClient makes the client's HTTP requests (default http.DefaultClient).
	HTTPClient *http.Client
	// Header is sent with every HTTP request (offer, candidates, inputs, outputs, stats):
	// credentials for a server with WithAuth, as "Authorization: Bearer ...".
	Header http.Header
	// Logger receives the client's debug and warning logs (default: discarded).
	Logger *slog.Logger
	// MessageBuffer is how many received control messages are kept for Message (default
	// 256); when full, the oldest is dropped.
	MessageBuffer int
	// DataChannelLabel is the label of the data channel (default DefaultDataChannelLabel).
	DataChannelLabel string
}

// validate checks o and fills in defaults.
func (o *Options) validate() error {
	if o.ID == "" {
		o.ID = randomID()
	}
	if len(o.ID) > 256 {
		return errors.New("client: Options.ID longer than 256 bytes")
	}
	switch {
	case o.VideoBitrateKbps == 0:
		o.VideoBitrateKbps = 1500
	case o.VideoBitrateKbps < 30 || o.VideoBitrateKbps > 100000:
		return fmt.Errorf("client: Options.VideoBitrateKbps %d out of range 30..100000", o.VideoBitrateKbps)
	}
	switch {
	case o.VideoMinKbps < 0 || o.VideoStartKbps < 0:
		return fmt.Errorf("client: Options.VideoMinKbps %d, VideoStartKbps %d: want >= 0", o.VideoMinKbps, o.VideoStartKbps)
	case o.VideoDegradation < media.DegradationBalanced || o.VideoDegradation > media.MaintainResolution:
		return fmt.Errorf("client: Options.VideoDegradation %d unknown", o.VideoDegradation)
	case o.VideoSpeed == 0:
		o.VideoSpeed = 10
	case o.VideoSpeed < 4 || o.VideoSpeed > 16:
		return fmt.Errorf("client: Options.VideoSpeed %d out of range 4..16", o.VideoSpeed)
	}
	switch {
	case o.AudioBitrateBps == 0:
		o.AudioBitrateBps = 32000
	case o.AudioBitrateBps < 6000 || o.AudioBitrateBps > 256000:
		return fmt.Errorf("client: Options.AudioBitrateBps %d out of range 6000..256000", o.AudioBitrateBps)
	}
	switch {
	case o.MessageBuffer == 0:
		o.MessageBuffer = 256
	case o.MessageBuffer < 0:
		return fmt.Errorf("client: Options.MessageBuffer %d is negative", o.MessageBuffer)
	}
	if o.DataChannelLabel == "" {
		o.DataChannelLabel = DefaultDataChannelLabel
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// parseBase checks and normalises a server's base URL: http(s)://host[:port][/prefix].
func parseBase(raw, scheme1, scheme2 string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != scheme1 && u.Scheme != scheme2) || u.Host == "" {
		return "", fmt.Errorf("client: base URL %q: want %s://host[:port][/prefix]", raw, scheme1)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("client: base URL %q: no query or fragment allowed", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Conn is a WebRTC connection to a FastRTC server, made by Dial (or New and Connect).
//
// Concurrency: a Conn is safe for concurrent use by several goroutines, with one rule per
// media direction: the sending methods of one kind (SendVideo, WriteVP8, WriteVideoRTP; or
// SendAudio, WriteAudioRTP) are serialised internally, and so are the reading methods of one
// kind (ReadVideo, ReadVideoRTP; or ReadAudio, ReadAudioRTP), whose results are valid only
// until that kind's next read: read each kind from one goroutine. Message, SendMessage,
// SetInput, Outputs, Close and the accessors may be called from any goroutine.
type Conn struct {
	opts   Options
	log    *slog.Logger
	routes routes
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	dcOpen chan struct{}
	msgs   *queue[Message]

	videoTrack, audioTrack *webrtc.TrackLocalStaticRTP
	remote                 [2]remoteTrack // 0 video, 1 audio

	keyRequests atomic.Int64
	keyPending  atomic.Bool

	bg        context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	connected chan struct{}
	done      chan struct{} // closed when the connection ends
	doneOnce  sync.Once
	doneErr   atomic.Pointer[error]
	started   atomic.Bool // Connect was called

	mu       sync.Mutex
	closed   bool
	cands    []webrtc.ICECandidateInit // trickled candidates waiting for the answer
	candWake chan struct{}

	closeOnce sync.Once
	closeErr  error

	vs videoSend
	vr videoRecv
	as audioSend
	ar audioRecv
}

// remoteTrack is a track the server sends, once it has arrived.
type remoteTrack struct {
	ready chan struct{}
	once  sync.Once
	track *webrtc.TrackRemote
	recv  *webrtc.RTPReceiver
}

func kindIndex(k webrtc.RTPCodecType) int {
	if k == webrtc.RTPCodecTypeAudio {
		return 1
	}
	return 0
}

// Dial connects to the FastRTC server at baseURL (http://host:port, with the path prefix
// the stream is mounted under, if any): it creates the peer connection, POSTs the offer to
// {baseURL}/webrtc/offer and waits until the connection is established or ctx is done. A
// server that refuses returns a *RefusedError (errors.Is(err, ErrConcurrencyLimit) when
// it is full). On error nothing is left running. A nil opts means the defaults.
func Dial(ctx context.Context, baseURL string, opts *Options) (*Conn, error) {
	c, err := New(baseURL, opts)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// New creates a connection without contacting the server: the peer connection, its
// transceivers and the data channel exist, so PeerConnection may be adjusted before
// Connect. Close it when done (even if Connect is never called).
func New(baseURL string, opts *Options) (*Conn, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	b, err := parseBase(baseURL, "http", "https")
	if err != nil {
		return nil, err
	}
	api, ests, err := newAPI(&o)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: o.ICEServers, ICETransportPolicy: o.ICETransportPolicy})
	if err != nil {
		return nil, fmt.Errorf("client: new peer connection: %w", err)
	}
	est := ests.Take(pc.ID())
	c := &Conn{
		opts: o, log: o.Logger.With("webrtc_id", o.ID), routes: routes{base: b, id: o.ID, hc: o.HTTPClient, hdr: o.Header},
		pc: pc, dcOpen: make(chan struct{}), msgs: newQueue[Message](o.MessageBuffer),
		connected: make(chan struct{}), done: make(chan struct{}), candWake: make(chan struct{}, 1),
	}
	c.bg, c.cancel = context.WithCancel(context.Background())
	for i := range c.remote {
		c.remote[i].ready = make(chan struct{})
	}
	if err := c.setup(); err != nil {
		_ = c.Close()
		return nil, err
	}
	if c.vs.snd != nil && est != nil {
		est.OnTargetBitrateChange(c.vs.snd.SetEstimate)
	}
	return c, nil
}

// newAPI builds the pion API of one connection: VP8 and Opus only (the codecs the client
// can encode and decode, so the server never picks another).
func newAPI(o *Options) (*webrtc.API, *rtcmedia.Estimators, error) {
	me := &webrtc.MediaEngine{}
	fmtp := rtcmedia.OpusFmtp
	if o.Stereo {
		fmtp += ";stereo=1;sprop-stereo=1"
	}
	if err := rtcmedia.RegisterCodecs(me, fmtp); err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	ir := &interceptor.Registry{}
	// Audio and data: RTCP reports and TWCC feedback, no NACK nor stats timers (cheap when
	// idle). Video: retransmission, and congestion control for the video it sends.
	minK, startK, maxK := o.videoRates()
	ests, err := rtcmedia.Interceptors(me, ir, rtcmedia.InterceptorOptions{
		Video: o.SendVideo || o.ReceiveVideo, BWE: o.SendVideo,
		StartBitrate: startK * 1000, MinBitrate: minK * 1000, MaxBitrate: maxK * 1000,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	se := webrtc.SettingEngine{}
	if o.SettingEngine != nil {
		o.SettingEngine(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), ests, nil
}

// videoRates returns the bounds of SendVideo's bit rate (kbit/s) with defaults filled in.
func (o *Options) videoRates() (minK, startK, maxK int) {
	maxK = o.VideoBitrateKbps
	minK = o.VideoMinKbps
	if minK == 0 {
		minK = 100
	}
	minK = min(max(minK, 30), maxK)
	startK = o.VideoStartKbps
	if startK == 0 {
		startK = 600
	}
	return minK, min(max(startK, minK), maxK), maxK
}

// setup adds the transceivers, the data channel and the callbacks.
func (c *Conn) setup() error {
	o := &c.opts
	var err error
	if c.videoTrack, err = c.addTransceiver(webrtc.RTPCodecTypeVideo, o.SendVideo, o.ReceiveVideo); err != nil {
		return err
	}
	if c.audioTrack, err = c.addTransceiver(webrtc.RTPCodecTypeAudio, o.SendAudio, o.ReceiveAudio); err != nil {
		return err
	}
	c.pc.OnTrack(c.onTrack)
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.log.Debug("connection state", "state", s.String())
		switch s {
		case webrtc.PeerConnectionStateConnected:
			select {
			case <-c.connected:
			default:
				close(c.connected)
			}
		case webrtc.PeerConnectionStateFailed:
			c.end(errors.New("client: connection failed"))
		case webrtc.PeerConnectionStateClosed:
			c.end(ErrClosed)
		}
	})
	if o.Trickle {
		c.pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand == nil {
				return
			}
			c.mu.Lock()
			if len(c.cands) < 64 {
				c.cands = append(c.cands, cand.ToJSON())
			}
			c.mu.Unlock()
			select {
			case c.candWake <- struct{}{}:
			default:
			}
		})
	}
	dc, err := c.pc.CreateDataChannel(o.DataChannelLabel, nil)
	if err != nil {
		return fmt.Errorf("client: data channel: %w", err)
	}
	c.dc = dc
	dc.OnOpen(func() { close(c.dcOpen) })
	dc.OnClose(func() { c.msgs.close() })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		msg, ok := parseMessage(m.Data)
		if !ok {
			c.log.Debug("data channel: not a control message", "data", string(m.Data))
			msg = Message{Raw: append([]byte(nil), m.Data...)}
		}
		c.msgs.push(msg)
	})
	return nil
}

// addTransceiver adds a transceiver of kind for the directions asked, and returns the local
// track when the client sends.
func (c *Conn) addTransceiver(kind webrtc.RTPCodecType, send, recv bool) (*webrtc.TrackLocalStaticRTP, error) {
	switch {
	case send:
		capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		if kind == webrtc.RTPCodecTypeAudio {
			capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(capab, kind.String(), "fastrtc-client-"+c.opts.ID)
		if err != nil {
			return nil, fmt.Errorf("client: %s track: %w", kind, err)
		}
		if kind == webrtc.RTPCodecTypeVideo {
			minK, startK, maxK := c.opts.videoRates()
			snd, err := vsend.New(vsend.Config{Write: tr.WriteRTP, MinKbps: minK, StartKbps: startK, MaxKbps: maxK,
				Speed: -c.opts.VideoSpeed, Degradation: vsend.Degradation(c.opts.VideoDegradation)})
			if err != nil {
				return nil, fmt.Errorf("client: %w", err)
			}
			c.vs.snd = snd
		}
		dir := webrtc.RTPTransceiverDirectionSendonly
		if recv {
			dir = webrtc.RTPTransceiverDirectionSendrecv
		}
		tx, err := c.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: dir})
		if err != nil {
			return nil, fmt.Errorf("client: add %s transceiver: %w", kind, err)
		}
		var onKey func() // key frame requests matter for video only
		if kind == webrtc.RTPCodecTypeVideo {
			onKey = func() {
				c.keyRequests.Add(1)
				c.keyPending.Store(true)
				if c.vs.snd != nil {
					c.vs.snd.RequestKeyFrame()
				}
			}
		}
		h := rtcmedia.RTCPHandlers{KeyFrame: onKey}
		if kind == webrtc.RTPCodecTypeVideo && send {
			h.REMB = c.vs.snd.SetREMB
		}
		c.goFn(func() { rtcmedia.ReadSenderRTCP(tx.Sender(), h) })
		return tr, nil
	case recv:
		if _, err := c.pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, fmt.Errorf("client: add %s transceiver: %w", kind, err)
		}
	}
	return nil, nil
}

// goFn runs fn on a goroutine that Close waits for, unless the connection is closed.
func (c *Conn) goFn(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

func (c *Conn) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	ok := c.goFn(func() { // drain the receiver's RTCP for the interceptors
		buf := make([]byte, 1500)
		for {
			if _, _, err := recv.Read(buf); err != nil {
				return
			}
		}
	})
	if !ok {
		return
	}
	rt := &c.remote[kindIndex(tr.Kind())]
	first := false
	rt.once.Do(func() {
		rt.track, rt.recv = tr, recv
		close(rt.ready)
		first = true
	})
	if !first {
		c.log.Warn("ignoring a second remote track", "kind", tr.Kind().String())
	}
}

// end marks the connection as ended (idempotent; the first reason wins).
func (c *Conn) end(err error) {
	c.doneOnce.Do(func() {
		c.doneErr.Store(&err)
		close(c.done)
	})
}

// Connect sends the offer to {base}/webrtc/offer, applies the answer and waits until the
// connection is established or ctx is done. It may be called once. A refusal is a
// *RefusedError; an HTTP error status an *HTTPError.
func (c *Conn) Connect(ctx context.Context) error {
	if c.started.Swap(true) {
		return errors.New("client: Connect called twice")
	}
	if c.isClosed() {
		return ErrClosed
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("client: create offer: %w", err)
	}
	var gathered <-chan struct{}
	if !c.opts.Trickle {
		gathered = webrtc.GatheringCompletePromise(c.pc)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("client: set local description: %w", err)
	}
	if gathered != nil {
		select {
		case <-gathered:
		case <-ctx.Done():
			return fmt.Errorf("client: ICE gathering: %w", ctx.Err())
		case <-c.bg.Done():
			return ErrClosed
		}
	}
	status, body, err := c.routes.postJSON(ctx, "/webrtc/offer", wire.OfferRequest{
		SDP: c.pc.LocalDescription().SDP, Type: wire.TypeOffer, WebRTCID: c.opts.ID})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &HTTPError{Route: "/webrtc/offer", StatusCode: status, Message: errorMessage(body)}
	}
	if f := failure(body); f != nil {
		return f
	}
	var ans wire.Answer
	if err := json.Unmarshal(body, &ans); err != nil || ans.Type != wire.TypeAnswer || ans.SDP == "" {
		return fmt.Errorf("client: /webrtc/offer: unexpected reply %.200q", body)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		return fmt.Errorf("client: set remote description: %w", err)
	}
	if c.opts.Trickle {
		c.goFn(c.trickle)
	}
	select {
	case <-c.connected:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return fmt.Errorf("client: connect: %w", ctx.Err())
	}
}

// trickle posts the gathered candidates (after the answer arrived) until Close.
func (c *Conn) trickle() {
	for {
		c.mu.Lock()
		cands := c.cands
		c.cands = nil
		c.mu.Unlock()
		for _, cand := range cands {
			cb, err := json.Marshal(cand)
			if err != nil {
				c.log.Debug("trickle candidate", "err", err)
				continue
			}
			status, body, err := c.routes.postJSON(c.bg, "/webrtc/offer", wire.OfferRequest{
				Type: wire.TypeICECandidate, WebRTCID: c.opts.ID, Candidate: cb})
			switch {
			case err != nil:
				c.log.Debug("trickle candidate", "err", err)
			case status != http.StatusOK:
				c.log.Warn("trickle candidate", "status", status, "body", string(body))
			case failure(body) != nil:
				c.log.Warn("trickle candidate refused", "err", failure(body))
			}
		}
		select {
		case <-c.candWake:
		case <-c.bg.Done():
			return
		}
	}
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ID returns the connection's webrtc_id.
func (c *Conn) ID() string { return c.opts.ID }

// PeerConnection returns the underlying pion peer connection: an escape hatch for what the
// client does not cover (statistics, extra tracks before Connect...). Do not replace its
// OnTrack, OnConnectionStateChange or OnICECandidate callbacks: the Conn relies on them.
func (c *Conn) PeerConnection() *webrtc.PeerConnection { return c.pc }

// Done returns a channel closed when the connection has ended: it failed, the server or
// the client closed it. Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (ErrClosed after a close), or nil while it is live.
func (c *Conn) Err() error {
	if p := c.doneErr.Load(); p != nil {
		return *p
	}
	return nil
}

// KeyFrameRequests returns how many key frame requests (RTCP PLI or FIR) the server has
// sent for the client's video. SendVideo answers them with a key frame.
func (c *Conn) KeyFrameRequests() int { return int(c.keyRequests.Load()) }

// KeyFrameRequested reports, and clears, whether the server asked for a key frame since
// the last call (or the last SendVideo). For callers that send pre-encoded frames with
// WriteVP8.
func (c *Conn) KeyFrameRequested() bool { return c.keyPending.Swap(false) }

// Message returns the next control message from the server's data channel, waiting for
// one until ctx is done. Messages arrive in order; when MessageBuffer of them are waiting,
// the oldest is dropped. After the connection closes, queued messages are still returned,
// then ErrClosed.
func (c *Conn) Message(ctx context.Context) (Message, error) {
	return c.msgs.pop(ctx, "message", func() error { return nil })
}

// SendMessage sends text on the data channel, waiting until it is open (or ctx is done).
// FastRTC servers answer each message with {"type":"log","data":"Server received: ..."}.
func (c *Conn) SendMessage(ctx context.Context, text string) error {
	select {
	case <-c.dcOpen:
	case <-ctx.Done():
		return fmt.Errorf("client: send message: %w", ctx.Err())
	case <-c.done:
		return ErrClosed
	}
	if err := c.dc.SendText(text); err != nil {
		return fmt.Errorf("client: send message: %w", err)
	}
	return nil
}

// SetInput sets the connection's additional inputs: POST {base}/input_hook with
// {"webrtc_id": ID, <inputs>...}. An HTTP error status is returned as an *HTTPError with
// the server's message.
func (c *Conn) SetInput(ctx context.Context, inputs map[string]any) error {
	return c.routes.setInput(ctx, inputs)
}

// Outputs reads the connection's additional outputs, GET {base}/outputs?webrtc_id=ID
// (Server-Sent Events), as a sequence of the events' JSON data. The sequence ends when the
// server ends the stream (the session ended) or ctx is done; an error (an *HTTPError for an
// unknown id, ctx's error after a cancel) is yielded last. Each range over it makes a new
// request.
func (c *Conn) Outputs(ctx context.Context) iter.Seq2[json.RawMessage, error] {
	return c.routes.outputs(ctx)
}

// Close closes the peer connection, waits for every goroutine the Conn started and frees
// its codecs. It is idempotent and safe to call concurrently with other methods, which then
// return ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		if err := c.pc.Close(); err != nil {
			c.closeErr = fmt.Errorf("client: close: %w", err)
		}
		c.wg.Wait()
		c.end(ErrClosed)
		c.msgs.close()
		c.closeMedia()
	})
	return c.closeErr
}

// waitTrack waits for the server's track of kind.
func (c *Conn) waitTrack(ctx context.Context, kind webrtc.RTPCodecType) (*webrtc.TrackRemote, error) {
	recv := c.opts.ReceiveVideo
	if kind == webrtc.RTPCodecTypeAudio {
		recv = c.opts.ReceiveAudio
	}
	if !recv {
		return nil, fmt.Errorf("client: receive %s: %w", kind, ErrNoTrack)
	}
	rt := &c.remote[kindIndex(kind)]
	select {
	case <-rt.ready:
		return rt.track, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("client: waiting for the server's %s track: %w", kind, ctx.Err())
	case <-c.done:
		return nil, ErrClosed
	}
}

// RemoteTrack waits for the server's track of kind and returns it: an escape hatch for
// callers that read RTP themselves. Do not mix reading it with ReadVideo/ReadVideoRTP (or
// ReadAudio/ReadAudioRTP for audio): they read the same packets.
func (c *Conn) RemoteTrack(ctx context.Context, kind webrtc.RTPCodecType) (*webrtc.TrackRemote, error) {
	return c.waitTrack(ctx, kind)
}

// readRTP reads one packet's bytes from tr into buf, honouring ctx.
func (c *Conn) readRTP(ctx context.Context, tr *webrtc.TrackRemote, buf []byte) (int, error) {
	if ctx.Done() == nil {
		n, _, err := tr.Read(buf)
		return n, c.readErr(ctx, err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = tr.SetReadDeadline(time.Now())
		close(fired)
	})
	n, _, err := tr.Read(buf)
	if !stop() {
		<-fired
		_ = tr.SetReadDeadline(time.Time{})
	}
	return n, c.readErr(ctx, err)
}

func (c *Conn) readErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("client: read: %w", ctx.Err())
	case c.isClosed() || c.Err() != nil:
		return ErrClosed
	}
	return fmt.Errorf("client: read: %w: %w", ErrClosed, err)
}

// DroppedMessages returns how many control messages were dropped because MessageBuffer
// of them were waiting unread.
func (c *Conn) DroppedMessages() int { return c.msgs.droppedCount() }
