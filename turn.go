package fastrtc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/turnguard"
)

// TURNOptions configure the TURN server a Stream can run beside itself (WithTURN), for
// clients whose network lets no direct path through (symmetric NAT, UDP blocked but for a
// relay port). Credentials are short-lived, in the standard TURN REST form that coturn also
// takes (use-auth-secret): username "expiry:user", password base64(HMAC-SHA1(secret,
// username)); so the same secret works with an external coturn.
type TURNOptions struct {
	// Addr is the UDP address the server listens on, as "0.0.0.0:3478".
	Addr string
	// TCPAddr, if set, is a TCP address it also listens on (TURN over TCP, for networks
	// that pass only TCP), as "0.0.0.0:3478".
	TCPAddr string
	// PublicIP is the address clients reach it at and relayed traffic comes from. Required
	// when Addr is an unspecified address (0.0.0.0); else Addr's IP.
	PublicIP string
	// Secret is the shared secret of the credentials (default: random, per process).
	Secret string
	// Realm is the TURN realm (default "fastrtc").
	Realm string
	// CredentialTTL is how long the credentials handed out by GET /webrtc/config stay valid
	// (default 1 h).
	CredentialTTL time.Duration
	// RelayPortMin and RelayPortMax bound the relay ports (default 49152..49408).
	RelayPortMin, RelayPortMax uint16
	// AllowPeer says where a client may relay to: it sees every peer address and port a
	// relay sends a datagram to or receives one from, and every TCP connection. The
	// default allows only this host's own addresses (its interfaces and WithPublicIPs),
	// never loopback, link-local, unspecified, multicast or broadcast ones, never the TURN
	// server's own ports or relay range, and, when the stream's media has one UDP port
	// (WithUDPPort) or a port range (WithUDPPortRange), only those ports: the server's
	// media, never an open relay to the rest of the network or to the host's own services.
	AllowPeer func(peer netip.AddrPort) bool
	// AllowTCPRelay permits TCP allocations (RFC 6062: the relay opens TCP connections to
	// peers). Off by default: media needs UDP relays only (TURN over TCP, TCPAddr, is the
	// client's side and works without it).
	AllowTCPRelay bool
	// MaxAllocationsPerUser bounds the live allocations of one credential (each GET
	// /webrtc/config hands out a credential of its own; default 4, negative: no bound), and
	// MaxAllocationsPerSource those of one client IP address (default 16, negative: no
	// bound), so that one client cannot take every relay port. Refusals are counted in
	// Metrics.TURNRefusals.
	MaxAllocationsPerUser, MaxAllocationsPerSource int
	// RelayIdleTimeout ends an allocation that has relayed nothing either way for this long
	// (default 30 s; a call's media and ICE consent checks every few seconds keep a live
	// one busy), so that abandoned allocations do not hold relay ports for their lifetime.
	RelayIdleTimeout time.Duration
}

// WithTURN runs a TURN server beside the stream (on Stream's lifetime: Close stops it) and
// adds it, with fresh credentials, to the RTCConfiguration of GET /webrtc/config.
func WithTURN(o TURNOptions) Option { return func(c *config) { c.turn = &o } }

// TURNCredentials returns REST-form TURN credentials for user, valid for ttl: username
// "expiry:user" and the base64 HMAC-SHA1 of it keyed with secret. They work with the
// embedded server (WithTURN) and with coturn's use-auth-secret.
func TURNCredentials(secret, user string, ttl time.Duration) (username, password string) {
	username = strconv.FormatInt(time.Now().Add(ttl).Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	_, _ = io.WriteString(mac, username)
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// turnServer is a running embedded TURN server.
type turnServer struct {
	srv    *turn.Server
	conn   net.PacketConn
	guard  *turnguard.Guard
	urls   []string
	secret string
	ttl    time.Duration
}

// checkTURN fills in the defaults of o and validates it.
func checkTURN(o *TURNOptions, bad func(string, ...any) error) error {
	if o.Addr == "" {
		return bad("TURN: Addr is required")
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return bad("TURN address %q: %v", o.Addr, err)
	}
	if o.PublicIP == "" {
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsUnspecified() {
			return bad("TURN: PublicIP is required when listening on %q", o.Addr)
		}
		o.PublicIP = host
	}
	if _, err := netip.ParseAddr(o.PublicIP); err != nil {
		return bad("TURN public IP %q: %v", o.PublicIP, err)
	}
	if o.Realm == "" {
		o.Realm = "fastrtc"
	}
	if o.CredentialTTL == 0 {
		o.CredentialTTL = time.Hour
	}
	if o.RelayPortMin == 0 && o.RelayPortMax == 0 {
		o.RelayPortMin, o.RelayPortMax = 49152, 49408
	}
	if o.RelayPortMin == 0 || o.RelayPortMin > o.RelayPortMax {
		return bad("TURN relay ports %d..%d", o.RelayPortMin, o.RelayPortMax)
	}
	if o.MaxAllocationsPerUser == 0 {
		o.MaxAllocationsPerUser = 4
	}
	if o.MaxAllocationsPerSource == 0 {
		o.MaxAllocationsPerSource = 16
	}
	if o.RelayIdleTimeout == 0 {
		o.RelayIdleTimeout = 30 * time.Second
	}
	if o.RelayIdleTimeout < 0 {
		return bad("TURN relay idle timeout %v", o.RelayIdleTimeout)
	}
	if o.Secret == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		o.Secret = hex.EncodeToString(b)
	}
	return nil
}

// startTURN starts the embedded TURN server.
func (s *Stream) startTURN() error {
	o := s.cfg.turn
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(context.Background(), "udp4", o.Addr)
	if err != nil {
		return fmt.Errorf("fastrtc: TURN: %w", err)
	}
	var ln net.Listener
	if o.TCPAddr != "" {
		if ln, err = lc.Listen(context.Background(), "tcp4", o.TCPAddr); err != nil {
			_ = conn.Close()
			return fmt.Errorf("fastrtc: TURN TCP: %w", err)
		}
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	guardCfg := turnguard.Config{Allow: o.AllowPeer, AllowTCP: o.AllowTCPRelay,
		PerUser: max(o.MaxAllocationsPerUser, 0), PerSource: max(o.MaxAllocationsPerSource, 0),
		Idle: o.RelayIdleTimeout, Logger: s.log.With("component", "turn")}
	if guardCfg.Allow == nil {
		peers := &turnguard.Peers{Own: ownAddrs(s.cfg.net.publicIPs), Refused: []uint16{uint16(port)},
			RelayMin: o.RelayPortMin, RelayMax: o.RelayPortMax,
			MediaMin: s.cfg.net.portMin, MediaMax: s.cfg.net.portMax}
		if ln != nil {
			peers.Refused = append(peers.Refused, uint16(ln.Addr().(*net.TCPAddr).Port))
		}
		if a := s.UDPAddr(); a != nil {
			p := uint16(a.(*net.UDPAddr).Port)
			peers.MediaMin, peers.MediaMax = p, p
		}
		if peers.MediaMin == 0 { // sockets per session: only the live sessions' ports
			peers.MediaPort = s.isMediaPort
		}
		guardCfg.Allow, guardCfg.AllowIP = peers.Allow, peers.AllowIP
	}
	guard, err := turnguard.New(guardCfg)
	if err != nil {
		_ = conn.Close()
		if ln != nil {
			_ = ln.Close()
		}
		return fmt.Errorf("fastrtc: TURN: %w", err)
	}
	quiet := pionLogs{s.log.With("component", "turn")}
	host, _, _ := net.SplitHostPort(o.Addr)
	relay := guard.Relay(&turn.RelayAddressGeneratorPortRange{
		RelayAddress: net.ParseIP(o.PublicIP), Address: host, MinPort: o.RelayPortMin, MaxPort: o.RelayPortMax,
	})
	var listeners []turn.ListenerConfig
	var tcpPort int
	if ln != nil {
		tcpPort = ln.Addr().(*net.TCPAddr).Port
		listeners = append(listeners, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: relay, PermissionHandler: guard.Permission})
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		ListenerConfigs:   listeners,
		Realm:             o.Realm,
		LoggerFactory:     quiet,
		AuthHandler:       turn.LongTermTURNRESTAuthHandler(o.Secret, quiet.NewLogger("turn")),
		QuotaHandler:      guard.Quota,
		EventHandler:      guard.Events(),
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: conn, RelayAddressGenerator: relay, PermissionHandler: guard.Permission}},
	})
	if err != nil {
		_ = conn.Close()
		if ln != nil {
			_ = ln.Close()
		}
		return fmt.Errorf("fastrtc: TURN: %w", err)
	}
	s.turn = &turnServer{srv: srv, conn: conn, guard: guard, secret: o.Secret, ttl: o.CredentialTTL,
		urls: []string{"turn:" + net.JoinHostPort(o.PublicIP, strconv.Itoa(port)) + "?transport=udp"}}
	if tcpPort != 0 {
		s.turn.urls = append(s.turn.urls, "turn:"+net.JoinHostPort(o.PublicIP, strconv.Itoa(tcpPort))+"?transport=tcp")
	}
	return nil
}

// ownAddrs returns this host's interface addresses and the announced public ones.
func ownAddrs(public []string) []netip.Addr {
	var out []netip.Addr
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr().Unmap())
			}
		}
	}
	for _, ip := range public {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// TURNAddr returns the UDP address of the embedded TURN server (WithTURN), or nil.
func (s *Stream) TURNAddr() net.Addr {
	if s.turn == nil {
		return nil
	}
	return s.turn.conn.LocalAddr()
}

// iceServer returns the embedded server with fresh credentials, for a user of their own
// (a random id: the per-credential allocation quota is per config request).
func (t *turnServer) iceServer() webrtc.ICEServer {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	u, p := TURNCredentials(t.secret, base64.RawURLEncoding.EncodeToString(b), t.ttl)
	return webrtc.ICEServer{URLs: t.urls, Username: u, Credential: p}
}

func (t *turnServer) close() error {
	if err := t.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("fastrtc: TURN: %w", err)
	}
	return nil
}

// mediaPorts are the local ports of the live WebRTC sessions' own sockets (without a UDP mux
// or port range): the only ports the embedded TURN server relays to then.
type mediaPorts struct {
	mu    sync.Mutex
	ports map[uint16]int
}

// isMediaPort reports whether a live session listens on port.
func (s *Stream) isMediaPort(port uint16) bool {
	s.media.mu.Lock()
	defer s.media.mu.Unlock()
	return s.media.ports[port] > 0
}

// addMediaPorts registers the ports of an answer's candidates until the session ends.
func (s *Stream) addMediaPorts(sess *Session, answer string) {
	if s.turn == nil {
		return
	}
	var ports []uint16
	for _, line := range strings.Split(answer, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "a="))
		if len(f) >= 6 && strings.HasPrefix(f[0], "candidate:") {
			if p, err := strconv.ParseUint(f[5], 10, 16); err == nil {
				ports = append(ports, uint16(p))
			}
		}
	}
	s.media.mu.Lock()
	if s.media.ports == nil {
		s.media.ports = make(map[uint16]int)
	}
	for _, p := range ports {
		s.media.ports[p]++
	}
	s.media.mu.Unlock()
	sess.onEnd(func() {
		s.media.mu.Lock()
		defer s.media.mu.Unlock()
		for _, p := range ports {
			if s.media.ports[p]--; s.media.ports[p] <= 0 {
				delete(s.media.ports, p)
			}
		}
	})
}
