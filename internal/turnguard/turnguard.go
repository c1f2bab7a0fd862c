// Package turnguard keeps an embedded TURN server (pion/turn) to its one job: relaying a
// client's media to this server's own media sockets. It holds the peer policy (which
// addresses and ports a relay may reach), per-credential and per-source allocation quotas,
// an idle timeout for relays, and the refusal of TCP allocations (RFC 6062) unless asked for.
//
// Without it, pion/turn relays to any address its permission handler lets through, at any
// port, over UDP or TCP: with the credentials a public config route hands out, a client could
// reach the host's loopback services (a cluster's NATS, the HTTP port, TURN's own port), and
// one credential could hold every relay port for the allocation's lifetime.
package turnguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// Refusal reasons, as counted by Guard.Refused.
const (
	ReasonPeer        = "peer"         // a peer address or port the policy refuses
	ReasonTCP         = "tcp"          // a TCP allocation or connection (not enabled)
	ReasonQuotaUser   = "quota_user"   // the credential holds its allocations already
	ReasonQuotaSource = "quota_source" // the client's address holds its allocations already
	ReasonIdle        = "idle"         // a relay closed after relaying nothing for the idle timeout
)

// ErrRefused is returned (to pion/turn, which answers the client with an error) when a
// relay is refused.
var ErrRefused = errors.New("turnguard: relay refused")

// SpecialIP reports whether a is an address no relay should reach whatever the policy:
// loopback, link-local (unicast or multicast), unspecified, multicast or the IPv4 broadcast
// address.
func SpecialIP(a netip.Addr) bool {
	a = a.Unmap()
	return !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// Peers is the default peer policy: a relay reaches this host's own media and nothing else.
// Its zero value refuses everything. It is read-only once in use and safe for concurrent use.
type Peers struct {
	// Own are this host's addresses (its interfaces and announced public addresses). Special
	// addresses (SpecialIP) among them are ignored.
	Own []netip.Addr
	// MediaMin..MediaMax, when MediaMin is nonzero, are the only ports a relay may reach (a
	// UDP mux's one port, or the sessions' port range).
	MediaMin, MediaMax uint16
	// Refused are ports never reached on this host (the TURN server's own listeners).
	Refused []uint16
	// RelayMin..RelayMax are the relay ports, never reached (a relay to a relay).
	RelayMin, RelayMax uint16
	// MediaPort, when MediaMin is zero, says which ports are media's now (the live
	// sessions' own sockets); nil allows any port not refused above.
	MediaPort func(port uint16) bool
}

// AllowIP reports whether a relay may create a permission for a.
func (p *Peers) AllowIP(a netip.Addr) bool {
	a = a.Unmap()
	if SpecialIP(a) {
		return false
	}
	for _, o := range p.Own {
		if o.Unmap() == a {
			return true
		}
	}
	return false
}

// Allow reports whether a relay may send to (or receive from) peer.
func (p *Peers) Allow(peer netip.AddrPort) bool {
	if !p.AllowIP(peer.Addr()) {
		return false
	}
	port := peer.Port()
	if port == 0 || p.RelayMin != 0 && port >= p.RelayMin && port <= p.RelayMax {
		return false
	}
	for _, r := range p.Refused {
		if port == r {
			return false
		}
	}
	if p.MediaMin != 0 {
		return port >= p.MediaMin && port <= p.MediaMax
	}
	return p.MediaPort == nil || p.MediaPort(port)
}

// Guard applies a peer policy, quotas and an idle timeout to a pion/turn server: wire
// Permission, Quota, Events and Relay into its ServerConfig. Its methods are safe for
// concurrent use (pion/turn calls them from its listeners' goroutines).
type Guard struct {
	allowIP   func(netip.Addr) bool
	allow     func(netip.AddrPort) bool
	allowTCP  bool
	perUser   int
	perSource int
	idle      time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	users   map[string]int
	sources map[netip.Addr]int
	live    int
	refused sync.Map // reason -> *atomic.Uint64
}

// Config configures a Guard.
type Config struct {
	// AllowIP decides CreatePermission and ChannelBind requests (by peer IP; nil: any IP,
	// leaving the decision to Allow).
	AllowIP func(netip.Addr) bool
	// Allow decides each datagram relayed to or from a peer, and each TCP connection (by
	// address and port). Required.
	Allow func(netip.AddrPort) bool
	// AllowTCP permits TCP allocations (RFC 6062).
	AllowTCP bool
	// PerUser and PerSource bound the live allocations of one credential's user and of one
	// client IP address (0: no bound).
	PerUser, PerSource int
	// Idle closes a relay that has relayed nothing for this long (0: never).
	Idle time.Duration
	// Logger receives one line per refusal (nil: none).
	Logger *slog.Logger
}

// New returns a Guard for c.
func New(c Config) (*Guard, error) {
	if c.Allow == nil {
		return nil, errors.New("turnguard: Allow is required")
	}
	g := &Guard{allowIP: c.AllowIP, allow: c.Allow, allowTCP: c.AllowTCP, perUser: c.PerUser,
		perSource: c.PerSource, idle: c.Idle, log: c.Logger,
		users: make(map[string]int), sources: make(map[netip.Addr]int)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g, nil
}

// Refused returns the refusals so far by reason.
func (g *Guard) Refused() map[string]uint64 {
	out := make(map[string]uint64)
	g.refused.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Allocations returns the number of live allocations.
func (g *Guard) Allocations() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// refuse counts a refusal and logs it (at Info for requests, at Debug for datagrams, of
// which a client can send many).
func (g *Guard) refuse(reason string, args ...any) {
	g.count(reason)
	g.log.Info("TURN: refused", append([]any{"reason", reason}, args...)...)
}

func (g *Guard) count(reason string) {
	v, _ := g.refused.LoadOrStore(reason, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// Permission is a turn.PermissionHandler.
func (g *Guard) Permission(client net.Addr, peer net.IP) bool {
	a, ok := netip.AddrFromSlice(peer)
	if !ok {
		g.refuse(ReasonPeer, "client", client.String(), "peer", peer.String())
		return false
	}
	if g.allowIP != nil && !g.allowIP(a.Unmap()) {
		g.refuse(ReasonPeer, "client", client.String(), "peer", a.Unmap().String())
		return false
	}
	return true
}

// sourceIP is the IP address of a client's transport address.
func sourceIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Quota is a turn.QuotaHandler: it refuses an allocation when the user or the source
// address holds its bound of live allocations. (Counted when pion/turn reports the
// allocation made; two requests over separate TCP connections racing each other may
// both pass: the bound is exact for UDP, whose requests one goroutine serves.)
func (g *Guard) Quota(user, _ string, src net.Addr) bool {
	ip := sourceIP(src)
	g.mu.Lock()
	nu, ns := g.users[user], g.sources[ip]
	g.mu.Unlock()
	if g.perUser > 0 && nu >= g.perUser {
		g.refuse(ReasonQuotaUser, "client", src.String(), "user", user, "allocations", nu)
		return false
	}
	if g.perSource > 0 && ns >= g.perSource {
		g.refuse(ReasonQuotaSource, "client", src.String(), "allocations", ns)
		return false
	}
	return true
}

// Events returns the allocation callbacks that keep the quota counts.
func (g *Guard) Events() turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(src, _ net.Addr, _, user, _ string, _ net.Addr, _ int) {
			ip := sourceIP(src)
			g.mu.Lock()
			g.users[user]++
			g.sources[ip]++
			g.live++
			g.mu.Unlock()
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, user, _ string) {
			ip := sourceIP(src)
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.users[user]--; g.users[user] <= 0 {
				delete(g.users, user)
			}
			if g.sources[ip]--; g.sources[ip] <= 0 {
				delete(g.sources, ip)
			}
			g.live--
		},
	}
}

// Relay wraps a relay address generator: UDP relays filter their datagrams through the
// policy and close when idle; TCP allocations are refused unless enabled, and TCP
// connections to peers go through the policy.
func (g *Guard) Relay(inner turn.RelayAddressGenerator) turn.RelayAddressGenerator {
	return &relayGen{g: g, inner: inner}
}

type relayGen struct {
	g     *Guard
	inner turn.RelayAddressGenerator
}

func (r *relayGen) Validate() error { return r.inner.Validate() }

func (r *relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := r.inner.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return newRelayConn(r.g, pc), addr, nil
}

func (r *relayGen) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if !r.g.allowTCP {
		r.g.refuse(ReasonTCP, "user", c.UserID)
		return nil, nil, fmt.Errorf("%w: TCP allocations are not enabled", ErrRefused)
	}
	return r.inner.AllocateListener(c)
}

func (r *relayGen) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	if !r.g.allowTCP {
		r.g.refuse(ReasonTCP, "user", c.UserID)
		return nil, fmt.Errorf("%w: TCP allocations are not enabled", ErrRefused)
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr.String())
	if err != nil || !r.g.allow(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
		r.g.refuse(ReasonPeer, "user", c.UserID, "peer", c.RemoteAddr.String())
		return nil, fmt.Errorf("%w: peer %s", ErrRefused, c.RemoteAddr)
	}
	return r.inner.AllocateConn(c)
}

// relayConn is one allocation's relay socket: datagrams to and from peers the policy
// refuses are dropped, and reads end (closing the allocation) after the idle timeout.
type relayConn struct {
	net.PacketConn
	g    *Guard
	last atomic.Int64 // unix nanoseconds of the last datagram relayed either way
}

func newRelayConn(g *Guard, pc net.PacketConn) *relayConn {
	c := &relayConn{PacketConn: pc, g: g}
	c.last.Store(time.Now().UnixNano())
	return c
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
}

// WriteTo relays a client's datagram to a peer the policy allows; others are dropped (as
// the network would drop them: no error, which would end the allocation).
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	if !ok || !c.g.allow(ap) {
		c.g.count(ReasonPeer)
		c.g.log.Debug("TURN: datagram to a refused peer dropped", "peer", addr.String())
		return len(p), nil
	}
	c.last.Store(time.Now().UnixNano())
	return c.PacketConn.WriteTo(p, addr)
}

// ReadFrom returns the next datagram from an allowed peer. After the idle timeout with no
// datagram either way it returns an error, and pion/turn deletes the allocation.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if c.g.idle > 0 {
			_ = c.PacketConn.SetReadDeadline(time.Unix(0, c.last.Load()).Add(c.g.idle))
		}
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			if c.g.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				if time.Since(time.Unix(0, c.last.Load())) < c.g.idle {
					continue // a write came in meanwhile
				}
				c.g.refuse(ReasonIdle, "relay", c.LocalAddr().String())
			}
			return n, addr, err
		}
		if ap, ok := addrPort(addr); !ok || !c.g.allow(ap) {
			continue
		}
		c.last.Store(time.Now().UnixNano())
		return n, addr, nil
	}
}
