package fastrtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/pion/webrtc/v4"
)

// netOptions are the ICE transport settings of a Stream (network.go).
type netOptions struct {
	udpAddr   string // one UDP socket for every session ("" : a socket per session)
	portMin   uint16 // ephemeral UDP port range (0: the OS picks)
	portMax   uint16
	tcpAddr   string   // ICE over TCP on this address ("" : off)
	publicIPs []string // addresses announced instead of the local ones (1:1 NAT)
	rtcConfig func(r *http.Request) (RTCConfiguration, error)
}

// RTCConfiguration is what GET {prefix}/webrtc/config returns: the RTCConfiguration a
// browser (or the Go client) should build its peer connection with.
type RTCConfiguration struct {
	ICEServers []webrtc.ICEServer `json:"iceServers"`
}

// WithUDPPort makes every session share one UDP socket on port (all interfaces), so that a
// firewall or a container needs one rule whatever the number of sessions (pion's ICE UDP
// mux). Port 0 picks a free port (see Stream.UDPAddr).
func WithUDPPort(port int) Option {
	return func(c *config) { c.net.udpAddr = fmt.Sprintf(":%d", port) }
}

// WithUDPListenAddr is WithUDPPort on one address, as "10.0.0.5:3478" or "127.0.0.1:0".
func WithUDPListenAddr(addr string) Option { return func(c *config) { c.net.udpAddr = addr } }

// WithUDPPortRange keeps each session's own UDP sockets within [min, max] (when there is no
// WithUDPPort).
func WithUDPPortRange(min, max uint16) Option {
	return func(c *config) { c.net.portMin, c.net.portMax = min, max }
}

// WithICETCP accepts ICE over TCP on addr (as ":8443" or "10.0.0.5:443"), for networks that
// block UDP: every session shares the one listener (pion's ICE TCP mux), and the server
// offers passive TCP candidates beside its UDP ones.
func WithICETCP(addr string) Option { return func(c *config) { c.net.tcpAddr = addr } }

// WithPublicIPs announces ips in the server's host candidates instead of its local
// addresses: for a server behind 1:1 NAT (a cloud VM's public address). The ports stay the
// local ones, so forward them unchanged (WithUDPPort makes that one port).
func WithPublicIPs(ips ...string) Option {
	return func(c *config) { c.net.publicIPs = append(c.net.publicIPs, ips...) }
}

// WithRTCConfiguration sets the function that builds, for each request to GET
// {prefix}/webrtc/config, the RTCConfiguration a client should use: its STUN and TURN
// servers, with fresh short-lived credentials each time if it likes (FastRTC's
// rtc_configuration may be a callable). Without it the route returns the stream's
// WithICEServers and, with WithTURN, the embedded TURN server with fresh credentials. An
// error answers 500 with a generic message (its text goes to the log: it may name accounts
// or keys). The route is public: a function that calls a paid service should cache (package
// turncred's Configuration does).
func WithRTCConfiguration(fn func(r *http.Request) (RTCConfiguration, error)) Option {
	return func(c *config) { c.net.rtcConfig = fn }
}

// checkNet validates the network options.
func (o *netOptions) check(bad func(string, ...any) error) error {
	if o.portMin > o.portMax || o.portMin == 0 && o.portMax != 0 {
		return bad("UDP port range %d..%d", o.portMin, o.portMax)
	}
	for _, ip := range o.publicIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return bad("public IP %q: %v", ip, err)
		}
	}
	return nil
}

// listen opens the stream's shared sockets and sets up the SettingEngine to use them. The
// sockets are closed by Stream.Close (closeNet).
func (s *Stream) listen(se *webrtc.SettingEngine) error {
	o := s.cfg.net
	if o.portMin != 0 {
		if err := se.SetEphemeralUDPPortRange(o.portMin, o.portMax); err != nil {
			return fmt.Errorf("%w: UDP port range: %w", ErrInvalidConfig, err)
		}
	}
	if len(o.publicIPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: o.publicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace})
		if err != nil {
			return fmt.Errorf("%w: public IPs: %w", ErrInvalidConfig, err)
		}
	}
	var lc net.ListenConfig
	if o.udpAddr != "" {
		conn, err := lc.ListenPacket(context.Background(), "udp", o.udpAddr)
		if err != nil {
			return fmt.Errorf("fastrtc: UDP port: %w", err)
		}
		s.udpConn = conn
		se.SetICEUDPMux(webrtc.NewICEUDPMux(pionLogs{s.log}.NewLogger("udpmux"), conn))
	}
	if o.tcpAddr != "" {
		ln, err := lc.Listen(context.Background(), "tcp", o.tcpAddr)
		if err != nil {
			_ = s.closeNet()
			return fmt.Errorf("fastrtc: ICE TCP port: %w", err)
		}
		s.tcpListener = ln
		se.SetICETCPMux(webrtc.NewICETCPMux(pionLogs{s.log}.NewLogger("tcpmux"), ln, 64))
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6,
			webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6})
	}
	return nil
}

// closeNet closes the stream's shared sockets.
func (s *Stream) closeNet() error {
	var errs []error
	if s.udpConn != nil {
		if err := s.udpConn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if s.tcpListener != nil {
		if err := s.tcpListener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if s.turn != nil {
		if err := s.turn.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// UDPAddr returns the address of the UDP socket all sessions share (WithUDPPort), or nil.
func (s *Stream) UDPAddr() net.Addr {
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// TCPAddr returns the address of the ICE-TCP listener (WithICETCP), or nil.
func (s *Stream) TCPAddr() net.Addr {
	if s.tcpListener == nil {
		return nil
	}
	return s.tcpListener.Addr()
}

// serveRTCConfig is GET /webrtc/config.
func (s *Stream) serveRTCConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	if r = s.authorize(w, r, RouteConfig, ""); r == nil {
		return
	}
	cfg := RTCConfiguration{ICEServers: slices.Clone(s.cfg.iceServers)}
	if s.turn != nil {
		cfg.ICEServers = append(cfg.ICEServers, s.turn.iceServer())
	}
	if fn := s.cfg.net.rtcConfig; fn != nil {
		var err error
		if err = safely(func() (err error) { cfg, err = fn(r); return err }); err != nil {
			// The detail (a provider's account id, key id, URL) is for the log only.
			s.log.Warn("rtc configuration", "err", err)
			writeError(w, http.StatusInternalServerError, "the server could not get ICE servers")
			return
		}
	}
	if cfg.ICEServers == nil {
		cfg.ICEServers = []webrtc.ICEServer{}
	}
	w.Header().Set("Cache-Control", "no-store") // credentials may be short-lived
	writeJSON(w, http.StatusOK, cfg)
}
