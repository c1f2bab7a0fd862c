package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/media"

	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// Option configures a Stream. Options are applied in order by New, which then fills in the
// defaults and validates the whole configuration in one place (config.check): an invalid
// value makes New return an error wrapping ErrInvalidConfig that names the option.
type Option func(*config)

// config holds the options of a Stream.
type config struct {
	inputs          inputSet
	outputs         []Output
	concurrency     int
	timeLimit       time.Duration
	connectTimeout  time.Duration
	pendingLimit    int            // offers answered and not connected, per stream (WithPendingLimit)
	pendingPerSrc   int            // the same per client address
	trustedProxies  []netip.Prefix // WithTrustedProxies
	mdns            bool           // WithMDNS
	auth            AuthFunc       // WithAuth
	skipFrames      bool
	fps             int
	fpsSet          bool
	bitrateKbps     int
	bandwidth       Bandwidth
	degradation     Degradation
	vp8Speed        int
	logger          *slog.Logger
	iceServers      []webrtc.ICEServer
	settingEngine   func(*webrtc.SettingEngine)
	prefix          string
	maxBody         int64
	title           string
	subtitle        string
	noUI            bool
	constraints     *TrackConstraints
	onInput         func(s *Session, names []string)
	outputsWait     time.Duration
	audio           audioOptions
	ws              WebSocketOptions
	tel             TelephoneOptions
	corsOrigins     []string
	chatOutputs     bool // WithChatOutputs
	candidateFilter func(netip.Addr) bool
	net             netOptions
	turn            *TURNOptions
	cluster         Cluster
}

// The defaults of the options.
const (
	defaultFPS            = 30
	defaultBitrateKbps    = 1500
	defaultConnectTimeout = 15 * time.Second
	defaultMaxBody        = 1 << 20
	defaultWSMaxMessage   = 1 << 20
	defaultWSPingInterval = 10 * time.Second
	defaultOutputRate     = 24000
	defaultOpusComplexity = 5
	defaultOpusBitrate    = 32000
	// defaultVP8Speed is the default libvpx cpu-used: a fixed speed (negative values fix it)
	// that encodes a 640x480 camera frame in about 2.7 ms here at 43.7 dB PSNR, against
	// 3.0 ms at 44.0 dB for WebRTC's own -6 and 2.2 ms at 42.1 dB for the fastest, -16
	// (README, benchmarks).
	defaultVP8Speed = -10
)

func defaultConfig() config {
	return config{
		skipFrames:     true,
		fps:            defaultFPS,
		bitrateKbps:    defaultBitrateKbps,
		vp8Speed:       defaultVP8Speed,
		connectTimeout: defaultConnectTimeout,
		pendingLimit:   64,
		pendingPerSrc:  8,
		maxBody:        defaultMaxBody,
		title:          "fastrtc",
		audio:          audioOptions{outputRate: defaultOutputRate, opusComplexity: defaultOpusComplexity, opusBitrate: defaultOpusBitrate},
	}
}

// check fills in the defaults that depend on other options and validates everything.
func (c *config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.ws.MaxMessageBytes == 0 {
		c.ws.MaxMessageBytes = defaultWSMaxMessage
	}
	if c.outputsWait == 0 {
		c.outputsWait = 5 * time.Second
	}
	if c.ws.PingInterval == 0 {
		c.ws.PingInterval = defaultWSPingInterval
	}
	if c.constraints != nil {
		if _, err := json.Marshal(c.constraints); err != nil {
			return bad("track constraints: %v", err)
		}
	}
	b := &c.bandwidth
	if b.MaxKbps == 0 {
		b.MaxKbps = c.bitrateKbps
	}
	if b.MinKbps == 0 {
		b.MinKbps = min(100, b.MaxKbps)
	}
	if b.StartKbps == 0 {
		b.StartKbps = min(max(600, b.MinKbps), b.MaxKbps)
	}
	if b.MaxInKbps == 0 {
		b.MaxInKbps = 1000
	}
	switch {
	case b.MinKbps < 30 || b.MaxKbps > 50000 || b.MinKbps > b.StartKbps || b.StartKbps > b.MaxKbps:
		return bad("bandwidth: want 30 <= MinKbps <= StartKbps <= MaxKbps <= 50000, got %d, %d, %d", b.MinKbps, b.StartKbps, b.MaxKbps)
	case b.MaxInKbps > 0 && b.MaxInKbps < 30:
		return bad("bandwidth: MaxInKbps %d < 30", b.MaxInKbps)
	case c.degradation < DegradationBalanced || c.degradation > MaintainResolution:
		return bad("degradation %d unknown", c.degradation)
	case c.concurrency < 0:
		return bad("concurrency limit %d < 0", c.concurrency)
	case c.tel.PublicURL != "" && !validPublicURL(c.tel.PublicURL):
		return bad("telephone PublicURL %q: want http(s)://host[:port]", c.tel.PublicURL)
	case c.timeLimit < 0:
		return bad("time limit %v < 0", c.timeLimit)
	case c.connectTimeout <= 0:
		return bad("connect timeout %v <= 0", c.connectTimeout)
	case c.fps <= 0 || c.fps > 240:
		return bad("fps %d outside 1..240", c.fps)
	case c.bitrateKbps < 50 || c.bitrateKbps > 50000:
		return bad("video bitrate %d kbit/s outside 50..50000", c.bitrateKbps)
	case c.vp8Speed < -16 || c.vp8Speed > 16:
		return bad("VP8 speed %d outside -16..16", c.vp8Speed)
	case c.maxBody < 1024:
		return bad("max body %d bytes < 1024", c.maxBody)
	case c.audio.outputRate < 8000 || c.audio.outputRate > 48000 || c.audio.outputRate%50 != 0:
		return bad("audio output rate %d must be a multiple of 50 in 8000..48000", c.audio.outputRate)
	case c.audio.opusComplexity < 0 || c.audio.opusComplexity > 10:
		return bad("Opus complexity %d outside 0..10", c.audio.opusComplexity)
	case c.audio.opusBitrate < 6000 || c.audio.opusBitrate > 510000:
		return bad("Opus bitrate %d outside 6000..510000", c.audio.opusBitrate)
	case c.ws.MaxMessageBytes < 1024:
		return bad("WebSocket max message %d bytes < 1024", c.ws.MaxMessageBytes)
	case c.ws.PingInterval < 100*time.Millisecond:
		return bad("WebSocket ping interval %v < 100ms", c.ws.PingInterval)
	}
	if err := c.net.check(bad); err != nil {
		return err
	}
	if c.turn != nil {
		if err := checkTURN(c.turn, bad); err != nil {
			return err
		}
	}
	for _, o := range c.corsOrigins {
		if o != "*" && (!strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.HasSuffix(o, "/")) {
			return bad("CORS origin %q: want scheme://host[:port] (no path) or *", o)
		}
	}
	seen := map[string]bool{}
	for _, in := range c.inputs {
		if err := in.check(); err != nil {
			return err
		}
		if seen[in.Name] {
			return bad("input %q declared twice", in.Name)
		}
		seen[in.Name] = true
	}
	return nil
}

// WithOptions applies opts in order, as one Option (for helpers that build a set of options).
func WithOptions(opts ...Option) Option {
	return func(c *config) {
		for _, o := range opts {
			o(c)
		}
	}
}

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

// WithCluster makes the stream one node of a cluster (see Cluster; package
// github.com/fastrtc-go/fastrtc/cluster builds one over NATS): sessions count against the
// cluster's limit as well as this node's WithConcurrencyLimit, and requests for sessions
// held by other nodes are served from there. New calls c.Attach.
func WithCluster(c Cluster) Option { return func(cfg *config) { cfg.cluster = c } }

// WithTimeLimit ends every session d after it connected; 0 (the default) means no limit.
func WithTimeLimit(d time.Duration) Option { return func(c *config) { c.timeLimit = d } }

// WithConnectTimeout closes a WebRTC session that has not connected within d, and a WebSocket
// that has not sent its start message within d (default 15 s).
func WithConnectTimeout(d time.Duration) Option { return func(c *config) { c.connectTimeout = d } }

// WithMDNS turns on multicast DNS for ICE (query only): the server then resolves a client's
// ".local" host candidates (browsers hide their addresses behind such names on pages
// without camera or microphone access). Off by default: it costs each session two sockets
// on port 5353 of every interface, and connections do without it (the client's checks
// reach the server's candidates, which learn its address from them).
func WithMDNS(on bool) Option { return func(c *config) { c.mdns = on } }

// WithPendingLimit bounds the WebRTC offers that were answered but are not connected yet:
// at most perStream in all (default 64) and perClient from one client address (default 8;
// behind a load balancer, the address WithTrustedProxies says). Each holds sockets and
// goroutines until it connects or its WithConnectTimeout passes (300 offers without
// candidates held 2,414 file descriptors and 5,711 goroutines). Over a bound, an offer gets
// FastRTC's concurrency_limit_reached failure (meta.reason "pending" or "pending_source").
// Zero or negative: no bound.
func WithPendingLimit(perStream, perClient int) Option {
	return func(c *config) { c.pendingLimit, c.pendingPerSrc = perStream, perClient }
}

// WithSkipFrames sets whether a video handler slower than its input skips frames (the
// default, true): it is then always given the newest frame, so latency never grows. With
// false, every frame is processed in order and a slow handler falls behind.
func WithSkipFrames(skip bool) Option { return func(c *config) { c.skipFrames = skip } }

// WithFPS sets the frame rate of receive-mode video sources (default 30). In send-receive
// mode it caps the rate of frames given to the handler and sent back (default: the input's).
func WithFPS(fps int) Option { return func(c *config) { c.fps, c.fpsSet = fps, true } }

// WithVideoBitrate sets the highest VP8 bit rate in kbit/s (default 1500). The encoder
// runs at the link's bandwidth estimate up to this rate; see WithBandwidth.
func WithVideoBitrate(kbps int) Option { return func(c *config) { c.bitrateKbps = kbps } }

// Bandwidth bounds the bit rate of the video a session sends (kbit/s). The encoder follows
// the connection's bandwidth estimate (Google congestion control on the client's
// transport-wide feedback, or its REMB) within [MinKbps, MaxKbps], starting at StartKbps
// until the first estimate. Zero fields keep their defaults: 100, 600 and the
// WithVideoBitrate value (1500): a start that a phone on a poor link carries, reached up
// from within a few seconds on a good one.
//
// MaxInKbps is the most each client is asked to send of video (RTCP REMB, once a second;
// browsers and pion honour it as a cap on their own estimate). Default 1000, enough for a
// 640x480 camera at 30 fps; negative: no cap (Chromium then sends a 640x480 camera at about
// 1.7 Mbit/s). A phone's uplink is usually the weaker link, and a client sending well
// above what the link keeps once it narrows fills its queue before its own controller
// reacts: through a link falling from 4 Mbit/s to 600 kbit/s, Chromium's frames froze for
// about 2 s without the cap and 0.3-0.4 s with it (e2e/badlink.sh, profile 4to600).
type Bandwidth struct {
	MinKbps, StartKbps, MaxKbps int
	MaxInKbps                   int
}

// WithBandwidth sets the bounds of the outgoing video's bit rate.
func WithBandwidth(b Bandwidth) Option { return func(c *config) { c.bandwidth = b } }

// Degradation says what outgoing video gives up first when the link is too slow for the
// handler's frames at full size and rate; see media.Degradation.
type Degradation = media.Degradation

// The degradation preferences (media.DegradationBalanced and the others).
const (
	DegradationBalanced = media.DegradationBalanced
	MaintainFramerate   = media.MaintainFramerate
	MaintainResolution  = media.MaintainResolution
)

// WithDegradation sets what outgoing video gives up first on a slow link.
func WithDegradation(d Degradation) Option { return func(c *config) { c.degradation = d } }

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

// WithMaxBodyBytes limits the size of request bodies (default 1 MiB, at least 1024).
func WithMaxBodyBytes(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithCORS lets pages of other origins (a custom frontend on its own host, such as FastRTC's
// Next.js demo) call the stream's HTTP routes: requests whose Origin is one of origins (as
// "https://app.example.com"; "*" allows any) get Access-Control-Allow-Origin, and their
// preflights are answered. Without it no CORS header is sent, so browsers keep other sites'
// pages from reading the responses, and since the routes take only application/json bodies,
// such pages cannot post to them either. WebSocket handshakes are checked with
// WebSocketOptions.CheckOrigin instead.
func WithCORS(origins ...string) Option {
	return func(c *config) { c.corsOrigins = append(c.corsOrigins, origins...) }
}

// WithCandidateFilter sets which addresses of a client's ICE candidates the server takes: a
// candidate (trickled, or in the offer) whose address keep rejects is refused, so that the
// server never sends connectivity checks there. A public server may refuse private,
// loopback and link-local ranges, for example:
//
//	fastrtc.WithCandidateFilter(func(a netip.Addr) bool {
//		return a.IsGlobalUnicast() && !a.IsPrivate()
//	})
//
// Whatever the filter, a client may trickle at most 64 candidates per connection.
func WithCandidateFilter(keep func(addr netip.Addr) bool) Option {
	return func(c *config) { c.candidateFilter = keep }
}

// WithTitle sets the built-in page's title and subtitle (FastRTC's ui_args).
func WithTitle(title, subtitle string) Option {
	return func(c *config) { c.title, c.subtitle = title, subtitle }
}

// WithoutUI turns the built-in page off: Handler and ListenAndServe then serve only the
// routes, and UI answers 404.
func WithoutUI() Option { return func(c *config) { c.noUI = true } }

// TrackConstraints are the built-in page's getUserMedia constraints for its microphone and
// camera tracks (FastRTC's track_constraints): JSON objects as MediaTrackConstraints, e.g.
// {"echoCancellation": true, "sampleRate": 48000} or {"width": {"ideal": 1280}}. A nil map
// keeps the page's default for that kind. The device the user picks is added to them.
//
// The defaults: for a stream whose handler detects pauses (an AudioAgent such as voice.ReplyOnPause) the
// microphone has echo cancellation, noise suppression and automatic gain control on (as
// FastRTC does), so the agent does not hear itself on laptop speakers and cut itself off;
// for other audio streams they are off, so that what the handler gets is what the
// microphone heard. The camera asks for 640x480 at 30 fps (the page's width, height and fps
// query parameters change that).
type TrackConstraints struct {
	Audio map[string]any
	Video map[string]any
}

// WithOnInput calls fn after a client posted inputs (POST /input_hook, Stream.SetInput, or
// voice.ReplyOnPause's text input from the data channel), with the names posted, on a goroutine of
// the session (Session.Go): it may block, and a panic in it ends only that session. Calls
// for one session never overlap: inputs posted while fn runs are coalesced into one more
// call, with every name posted meanwhile. A handler reacts there to a posted input, e.g. with
// s.TriggerReply().
func WithOnInput(fn func(s *Session, names []string)) Option {
	return func(c *config) { c.onInput = fn }
}

// WithOutputsWait sets how long GET /outputs waits for a connection id that is not live yet
// (default 5 s; FastRTC pages may open their EventSource before they start the connection).
// 0 keeps the default; a negative value answers 404 at once.
func WithOutputsWait(d time.Duration) Option { return func(c *config) { c.outputsWait = d } }

// WithChatOutputs makes Session.Transcript emit each line as the additional output FastRTC's
// voice demos send on /outputs, {"message": {"role": role, "content": text}} (their pages,
// such as send_text_or_audio's, talk_to_llama4's and hello_computer's, read that shape),
// instead of {"transcript": {"role", "text"}}. The data-channel transcript message, which
// the built-in page reads, is the same either way.
func WithChatOutputs() Option { return func(c *config) { c.chatOutputs = true } }

// WithTrackConstraints sets the built-in page's capture constraints. New fails if a value
// cannot be encoded as JSON.
func WithTrackConstraints(tc TrackConstraints) Option {
	return func(c *config) { c.constraints = &tc }
}

// audioOptions are the audio settings of a Stream.
type audioOptions struct {
	outputRate     int
	opusComplexity int
	opusBitrate    int
}

// WithAudioOutputRate sets the rate audio is sent at (default 24000 Hz, a multiple of 50).
// Handlers may return any rate; it is resampled to this one.
func WithAudioOutputRate(hz int) Option { return func(c *config) { c.audio.outputRate = hz } }

// WithOpusComplexity sets the Opus encoder's complexity, 0..10 (default 5: about 0.2 ms per
// 20 ms frame; see the README's benchmarks).
func WithOpusComplexity(n int) Option { return func(c *config) { c.audio.opusComplexity = n } }

// WithOpusBitrate sets the Opus target bitrate in bit/s (default 32000).
func WithOpusBitrate(bps int) Option { return func(c *config) { c.audio.opusBitrate = bps } }

// WebSocketOptions are the settings of the WebSocket audio route (GET /websocket/offer) and
// of the WebSocket of the telephone route. Zero fields take the defaults.
type WebSocketOptions struct {
	// MaxMessageBytes limits the size of a message a client may send (default 1 MiB, at
	// least 1024). A larger message is answered with an error message and the connection is
	// closed with code 1009.
	MaxMessageBytes int64
	// PingInterval is how often the server sends a WebSocket ping (default 10 s, at least
	// 100 ms). A connection from which nothing (no message, no pong) arrived for twice that
	// time is considered gone and its session ends, so clients that vanish without "stop"
	// free their slot.
	PingInterval time.Duration
	// CheckOrigin accepts or refuses a handshake of GET /websocket/offer by its request (for
	// example by its Origin header). nil accepts handshakes without an Origin (programs),
	// from the server's own origin, and from the origins WithCORS allows: as the POST routes,
	// pages of other sites cannot connect (FastRTC accepts every origin; return true for
	// that). The telephone route is not affected (Twilio sends no Origin; see
	// TelephoneOptions.AuthToken).
	CheckOrigin func(r *http.Request) bool
}

// WithWebSocket sets the WebSocket routes' options.
func WithWebSocket(o WebSocketOptions) Option { return func(c *config) { c.ws = o } }

// TelephoneOptions are the settings of the Twilio telephone routes (POST /telephone/incoming,
// GET /telephone/handler). Zero fields take the defaults.
//
// An audio stream serves the telephone routes by default, as FastRTC does. Without an
// AuthToken anyone who can reach them can place a "call" (a session on the handler, which
// takes a slot of the concurrency limit); web pages cannot, since handshakes that carry an
// Origin header (every browser's) are refused unless WebSocketOptions.CheckOrigin accepts
// them. Set Disabled when the stream takes no phone calls.
type TelephoneOptions struct {
	// Disabled leaves the telephone routes out of Mount and Handler.
	Disabled bool
	// AuthToken turns on the validation of Twilio's X-Twilio-Signature header (off when
	// empty) with the account's auth token: POST /telephone/incoming and the WebSocket
	// handshake of /telephone/handler then answer 403 to requests whose signature is missing
	// or wrong. The signature is checked against the URL Twilio called: PublicURL's scheme
	// and host when set, else rebuilt from the request (scheme and host from
	// X-Forwarded-Proto, X-Forwarded-Host or Forwarded when a proxy named by
	// WithTrustedProxies sent it), with and without the default port, as Twilio's own
	// libraries do.
	AuthToken string
	// PublicURL is the server's public base URL as Twilio calls it, as
	// "https://voice.example.com" (scheme and host; a path is ignored): the signatures are
	// checked against it and the TwiML's stream URL is built on it, whatever host a request
	// claims. Set it on a public server.
	PublicURL string
	// DTMF is called with every keypad digit pressed on a telephone session, after the
	// handler's DTMF method if it has one (handlers such as voice.ReplyOnPause, whose
	// per-connection instances are not yours, get digits this way). It runs like
	// DTMFReceiver.DTMF.
	DTMF func(s *Session, digit string)
}

func validPublicURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "https" || p.Scheme == "http") && validHost(p.Host)
}

// WithTelephone sets the telephone routes' options.
func WithTelephone(o TelephoneOptions) Option { return func(c *config) { c.tel = o } }
