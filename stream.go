package fastrtc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Stream serves one handler to many connections over WebRTC (and, for audio, WebSocket and
// telephone routes). Build it with New, expose it with Mount or Handler, and Close it when
// done. All methods are safe for concurrent use.
type Stream struct {
	modality Modality
	mode     Mode
	cfg      config
	log      *slog.Logger
	api      *webrtc.API

	videoFn  VideoFunc
	videoSrc VideoSource
	audio    *audioConfig // audio-side handler and formats (audio.go)

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	wg       sync.WaitGroup // one per live session

	codecs atomic.Int64 // open codec contexts, for leak checks (Stats)

	closeCtx    context.Context // done when Close begins: ends connections without a session yet
	closeCancel context.CancelFunc
}

// config holds the options of a Stream.
type config struct {
	inputs         inputSet
	outputs        []Output
	concurrency    int
	timeLimit      time.Duration
	connectTimeout time.Duration
	skipFrames     bool
	fps            int
	fpsSet         bool
	bitrateKbps    int
	vp8Speed       int
	logger         *slog.Logger
	iceServers     []webrtc.ICEServer
	settingEngine  func(*webrtc.SettingEngine)
	prefix         string
	maxBody        int64
	title          string
	subtitle       string
	noUI           bool
	audioOpts      audioOptions
	ws             wsOptions // WebSocket and telephone routes (websocket.go)
}

// Option configures a Stream.
type Option func(*config)

// WithInputs declares the stream's additional inputs. Each session starts with their
// defaults; the handler reads the current values with Session.Inputs.
func WithInputs(inputs ...Input) Option {
	return func(c *config) { c.inputs = append(c.inputs, inputs...) }
}

// WithOutputs declares the additional outputs the handler emits, for UIs.
func WithOutputs(outputs ...Output) Option {
	return func(c *config) { c.outputs = append(c.outputs, outputs...) }
}

// WithConcurrencyLimit caps the number of live sessions across all transports; 0 (the
// default) means unlimited. Over the limit, offers get the concurrency_limit_reached failure.
func WithConcurrencyLimit(n int) Option { return func(c *config) { c.concurrency = n } }

// WithTimeLimit ends every session d after it connected; 0 (the default) means no limit.
func WithTimeLimit(d time.Duration) Option { return func(c *config) { c.timeLimit = d } }

// WithConnectTimeout closes a WebRTC session that has not connected within d, and a WebSocket
// that has not sent its start message within d (default 30 s).
func WithConnectTimeout(d time.Duration) Option { return func(c *config) { c.connectTimeout = d } }

// WithSkipFrames sets whether a video handler slower than its input skips frames (the
// default, true): it is then always given the newest frame, so latency never grows. With
// false, every frame is processed in order and a slow handler falls behind.
func WithSkipFrames(skip bool) Option { return func(c *config) { c.skipFrames = skip } }

// WithFPS sets the frame rate of receive-mode video sources (default 30). In send-receive
// mode it caps the rate of frames given to the handler and sent back (default: the input's).
func WithFPS(fps int) Option { return func(c *config) { c.fps, c.fpsSet = fps, true } }

// WithVideoBitrate sets the VP8 target bitrate in kbit/s (default 1500).
func WithVideoBitrate(kbps int) Option { return func(c *config) { c.bitrateKbps = kbps } }

// defaultVP8Speed is the default libvpx cpu-used: a fixed speed (negative values fix it) that
// encodes a 640x480 camera frame in about 2.7 ms here at 43.7 dB PSNR, against 3.0 ms at
// 44.0 dB for WebRTC's own -6 and 2.2 ms at 42.1 dB for the fastest, -16 (README, benchmarks).
const defaultVP8Speed = -10

// WithVP8Speed sets libvpx's cpu-used setting for the realtime VP8 encoder, -16..16 (default
// -10). Negative values fix the speed: -16 is the fastest (about 30% less server CPU per video
// session than -6 here, 1.9 dB lower PSNR); positive values let libvpx adapt its speed to a
// share of the frame interval, judged by wall-clock time.
func WithVP8Speed(speed int) Option { return func(c *config) { c.vp8Speed = speed } }

// WithLogger sets the logger; the default discards everything.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithICEServers sets the STUN/TURN servers of the server's peer connections (and of the
// built-in page's, which reads them from the stream).
func WithICEServers(servers ...webrtc.ICEServer) Option {
	return func(c *config) { c.iceServers = append(c.iceServers, servers...) }
}

// WithSettingEngine lets the caller adjust pion's SettingEngine before the Stream builds its
// webrtc.API (ports, UDP mux, NAT 1:1 IPs, timeouts...). It runs after the Stream's own
// settings.
func WithSettingEngine(fn func(*webrtc.SettingEngine)) Option {
	return func(c *config) { c.settingEngine = fn }
}

// WithPathPrefix mounts the stream's routes under prefix (e.g. "/video"), so that several
// streams can share one mux.
func WithPathPrefix(prefix string) Option {
	return func(c *config) {
		c.prefix = ""
		if p := strings.Trim(prefix, "/"); p != "" {
			c.prefix = "/" + p
		}
	}
}

// WithMaxBodyBytes limits the size of request bodies (default 1 MiB).
func WithMaxBodyBytes(n int64) Option { return func(c *config) { c.maxBody = n } }

// New builds a Stream that runs handler for each connection. The handler's type must fit the
// modality and mode (see the table at VideoFunc); otherwise, and for invalid options, New
// returns an error wrapping ErrInvalidConfig that says what is allowed.
func New(handler any, modality Modality, mode Mode, opts ...Option) (*Stream, error) {
	if err := modality.valid(); err != nil {
		return nil, err
	}
	if err := mode.valid(); err != nil {
		return nil, err
	}
	cfg := config{
		skipFrames:     true,
		fps:            30,
		bitrateKbps:    1500,
		vp8Speed:       defaultVP8Speed,
		connectTimeout: 30 * time.Second,
		maxBody:        1 << 20,
		title:          "fastrtc",
		audioOpts:      defaultAudioOptions(),
	}
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
	if err := s.bindHandler(handler); err != nil {
		return nil, err
	}
	api, err := s.newAPI()
	if err != nil {
		return nil, err
	}
	s.api = api
	return s, nil
}

func (c *config) check() error {
	switch {
	case c.concurrency < 0:
		return fmt.Errorf("%w: concurrency limit %d < 0", ErrInvalidConfig, c.concurrency)
	case c.timeLimit < 0:
		return fmt.Errorf("%w: time limit %v < 0", ErrInvalidConfig, c.timeLimit)
	case c.fps <= 0 || c.fps > 240:
		return fmt.Errorf("%w: fps %d outside 1..240", ErrInvalidConfig, c.fps)
	case c.bitrateKbps < 50 || c.bitrateKbps > 50000:
		return fmt.Errorf("%w: video bitrate %d kbit/s outside 50..50000", ErrInvalidConfig, c.bitrateKbps)
	case c.vp8Speed < -16 || c.vp8Speed > 16:
		return fmt.Errorf("%w: VP8 speed %d outside -16..16", ErrInvalidConfig, c.vp8Speed)
	case c.maxBody < 1024:
		return fmt.Errorf("%w: max body %d bytes < 1024", ErrInvalidConfig, c.maxBody)
	}
	seen := map[string]bool{}
	for _, in := range c.inputs {
		if err := in.check(); err != nil {
			return err
		}
		if seen[in.Name] {
			return fmt.Errorf("%w: input %q declared twice", ErrInvalidConfig, in.Name)
		}
		seen[in.Name] = true
	}
	return c.audioOpts.check()
}

// bindHandler checks the handler's type against modality and mode.
func (s *Stream) bindHandler(h any) error {
	want := func(allowed string) error {
		return fmt.Errorf("%w: a %s stream in %s mode needs a %s handler, got %T",
			ErrInvalidConfig, s.modality, s.mode, allowed, h)
	}
	if h == nil {
		return fmt.Errorf("%w: handler is nil", ErrInvalidConfig)
	}
	switch s.modality {
	case Video:
		if s.mode == Receive {
			switch f := h.(type) {
			case VideoSource:
				s.videoSrc = f
			case videoSourceSig:
				s.videoSrc = f
			default:
				return want("VideoSource (func(*Session) iter.Seq2[image.Image, error])")
			}
			return nil
		}
		switch f := h.(type) {
		case VideoFunc:
			s.videoFn = f
		case videoFuncSig:
			s.videoFn = f
		default:
			return want("VideoFunc (func(*Session, *VideoFrame) (image.Image, error))")
		}
		return nil
	default:
		return s.bindAudioHandler(h, want)
	}
}

// newAPI builds the pion API shared by all sessions: VP8 and Opus only, default
// interceptors (NACK, RTCP reports, TWCC).
func (s *Stream) newAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"},
		{Type: "nack", Parameter: "pli"}, {Type: "transport-cc"},
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("fastrtc: register VP8: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}}},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("fastrtc: register Opus: %w", err)
	}
	ir := &interceptor.Registry{}
	if s.modality == Audio {
		// Audio needs RTCP reports (round-trip time, the browser's stats) and TWCC, not NACK
		// (Opus conceals loss; the library decodes FEC) nor pion's stats: their 100 ms timers
		// were half of an idle session's CPU (measured with scripts/load.sh audio-idle 50:
		// 7.9% -> 4.3% of a core).
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, fmt.Errorf("fastrtc: interceptors: %w", err)
		}
		if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
			return nil, fmt.Errorf("fastrtc: interceptors: %w", err)
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("fastrtc: interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	// A client that vanishes without closing is noticed after ~4 s without traffic and its
	// session ends ~6 s later (pion's defaults: 5 s + 25 s).
	se.SetICETimeouts(4*time.Second, 6*time.Second, 2*time.Second)
	if s.cfg.settingEngine != nil {
		s.cfg.settingEngine(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Modality returns the stream's modality.
func (s *Stream) Modality() Modality { return s.modality }

// Mode returns the stream's mode.
func (s *Stream) Mode() Mode { return s.mode }

// Stats is a snapshot of a Stream's resource use.
type Stats struct {
	Sessions      int // live sessions
	CodecContexts int // open encoder, decoder and VAD contexts
}

// Stats returns the stream's current resource use; after every session ended, both counts
// are zero.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	return Stats{Sessions: n, CodecContexts: int(s.codecs.Load())}
}

// SetInput validates values against the declared inputs and stores them for session id; the
// handler sees them from its next call. It returns an error wrapping ErrUnknownConnection or
// ErrInvalidInput (an *InputError names the field).
func (s *Stream) SetInput(id string, values map[string]any) error {
	sess, err := s.lookup(id)
	if err != nil {
		return err
	}
	return sess.setInputs(values)
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
	case s.sessions[sess.id] != nil:
		return fmt.Errorf("%w: %q", ErrConnectionExists, sess.id)
	case s.cfg.concurrency > 0 && len(s.sessions) >= s.cfg.concurrency:
		return fmt.Errorf("%w (%d)", ErrConcurrencyLimit, s.cfg.concurrency)
	}
	s.sessions[sess.id] = sess
	s.wg.Add(1)
	return nil
}

// release removes a session when it has fully ended.
func (s *Stream) release(sess *Session) {
	s.mu.Lock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
	s.mu.Unlock()
	s.wg.Done()
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
	return nil
}

// CloseContext is Close bounded by ctx: it returns ctx's error if the sessions have not all
// ended in time (they go on ending in the background).
func (s *Stream) CloseContext(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
