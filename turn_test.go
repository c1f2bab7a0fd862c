package fastrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/turnguard"
)

// TestTURNRelay: a client that may only use relayed candidates connects through the
// embedded TURN server with the credentials of GET /webrtc/config, and media flows.
func TestTURNRelay(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40000, RelayPortMax: 40100, AllowPeer: loopbackMedia}))
	res, err := http.Get(srv.URL + "/webrtc/config")
	if err != nil {
		t.Fatal(err)
	}
	var cfg RTCConfiguration
	err = json.NewDecoder(res.Body).Decode(&cfg)
	res.Body.Close()
	if err != nil || len(cfg.ICEServers) != 1 || !strings.HasPrefix(cfg.ICEServers[0].URLs[0], "turn:127.0.0.1:") {
		t.Fatalf("config %+v (%v): want the embedded TURN server", cfg, err)
	}
	if u := cfg.ICEServers[0].Username; !strings.Contains(u, ":") {
		t.Fatalf("username %q is not expiry:user", u)
	}
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true,
		SettingEngine: loopbackOnly, ICEServers: cfg.ICEServers, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flipRoundTrip(t, c)
	pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v (%v), want the client's relay candidate", pair, err)
	}
	if s.TURNAddr() == nil {
		t.Fatal("TURNAddr is nil")
	}
}

// TestTURNOverTCP: a client that reaches the TURN server only over TCP relays through it.
func TestTURNOverTCP(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40400, RelayPortMax: 40500, AllowPeer: loopbackMedia}))
	res, err := http.Get(srv.URL + "/webrtc/config")
	if err != nil {
		t.Fatal(err)
	}
	var cfg RTCConfiguration
	err = json.NewDecoder(res.Body).Decode(&cfg)
	res.Body.Close()
	if err != nil || len(cfg.ICEServers) != 1 || len(cfg.ICEServers[0].URLs) != 2 {
		t.Fatalf("config %+v (%v): want the UDP and TCP URLs", cfg, err)
	}
	tcpOnly := cfg.ICEServers[0]
	tcpOnly.URLs = tcpOnly.URLs[1:]
	if !strings.HasSuffix(tcpOnly.URLs[0], "?transport=tcp") {
		t.Fatalf("second URL %q", tcpOnly.URLs[0])
	}
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true,
		SettingEngine: loopbackOnly, ICEServers: []webrtc.ICEServer{tcpOnly}, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flipRoundTrip(t, c)
	pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v (%v), want a relay", pair, err)
	}
}

// loopbackMedia is a peer policy for tests whose server has loopback candidates only (the
// default policy refuses loopback peers): loopback, outside the relay ranges the tests use.
func loopbackMedia(p netip.AddrPort) bool {
	return p.Addr().IsLoopback() && (p.Port() < 40000 || p.Port() > 40999)
}

// turnClient is a pion TURN client of the stream's embedded server, over UDP from 127.0.0.1.
func turnClient(t *testing.T, s *Stream, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.TURNAddr().String(), TURNServerAddr: s.TURNAddr().String(),
		Conn: conn, Username: user, Password: pass, Realm: "fastrtc", RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	return cl
}

// configCredentials fetches a TURN credential from GET /webrtc/config.
func configCredentials(t *testing.T, url string) (user, pass string) {
	t.Helper()
	res, err := http.Get(url + "/webrtc/config")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cfg RTCConfiguration
	if err := json.NewDecoder(res.Body).Decode(&cfg); err != nil || len(cfg.ICEServers) != 1 {
		t.Fatalf("config %+v (%v)", cfg, err)
	}
	return cfg.ICEServers[0].Username, cfg.ICEServers[0].Credential.(string)
}

// TestTURNCredentials: expired or forged credentials get no allocation, fresh ones do, and
// the relay goes only to the server's own addresses.
func TestTURNCredentials(t *testing.T) {
	t.Parallel()
	s, _ := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40200, RelayPortMax: 40300, AllowPeer: loopbackMedia}))
	allocate := func(user, pass string) (net.PacketConn, error) {
		return turnClient(t, s, user, pass).Allocate()
	}
	if _, err := allocate(TURNCredentials("s3cret", "u", -time.Minute)); err == nil {
		t.Error("expired credentials got an allocation")
	}
	u, _ := TURNCredentials("s3cret", "u", time.Minute)
	if _, err := allocate(u, "forged"); err == nil {
		t.Error("a wrong password got an allocation")
	}
	relay, err := allocate(TURNCredentials("s3cret", "u", time.Minute))
	if err != nil {
		t.Fatalf("fresh credentials: %v", err)
	}
	defer relay.Close()
	if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Errorf("relaying to a peer the policy allows: %v", err)
	}
}

// udpSink is a UDP service on 127.0.0.1 that counts the datagrams it receives.
func udpSink(t *testing.T) (*net.UDPAddr, func() int) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := conn.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr().(*net.UDPAddr), func() int { return int(n.Load()) }
}

// TestTURNDefaultPeerPolicy: with the default policy, credentials from the public config
// route cannot reach a service bound to 127.0.0.1, TURN's own port, or a host outside this
// one (the red team's port scan and NATS banner went through loopback). Each refusal is
// counted.
func TestTURNDefaultPeerPolicy(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", RelayPortMin: 40800, RelayPortMax: 40850}))
	sink, received := udpSink(t)
	user, pass := configCredentials(t, srv.URL)
	relay, err := turnClient(t, s, user, pass).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	for _, peer := range []*net.UDPAddr{sink, s.TURNAddr().(*net.UDPAddr), {IP: net.IPv4(192, 0, 2, 1), Port: 9},
		{IP: net.IPv4(169, 254, 1, 1), Port: 9}, {IP: net.IPv4(224, 0, 0, 251), Port: 5353}} {
		if _, err := relay.WriteTo([]byte("probe"), peer); err == nil {
			t.Errorf("relaying to %v was allowed", peer)
		}
	}
	time.Sleep(200 * time.Millisecond) // a datagram let through would be in by now
	if n := received(); n != 0 {
		t.Fatalf("the loopback service received %d datagrams through the relay", n)
	}
	if n := s.Stats().TURNRefusals[turnguard.ReasonPeer]; n < 5 {
		t.Fatalf("peer refusals %d, want 5 (%v)", n, s.Stats().TURNRefusals)
	}
}

// TestTURNRefusesTCPAllocations: RFC 6062 TCP allocations (TCP CONNECT to peers, which
// port-scanned and opened streams to loopback services) are refused unless enabled.
func TestTURNRefusesTCPAllocations(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprint("AllowTCPRelay=", enabled), func(t *testing.T) {
			s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
				WithTURN(TURNOptions{Addr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RelayPortMin: 40860, RelayPortMax: 40899, AllowTCPRelay: enabled}))
			user, pass := configCredentials(t, srv.URL)
			tcpAddr := strings.TrimSuffix(strings.TrimPrefix(s.turn.urls[1], "turn:"), "?transport=tcp")
			conn, err := net.Dial("tcp4", tcpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: tcpAddr, TURNServerAddr: tcpAddr,
				Conn: turn.NewSTUNConn(conn), Username: user, Password: pass, Realm: "fastrtc"})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.Listen(); err != nil {
				t.Fatal(err)
			}
			alloc, err := cl.AllocateTCP()
			if !enabled {
				if err == nil {
					alloc.Close()
					t.Fatal("a TCP allocation was granted")
				}
				if n := s.Stats().TURNRefusals[turnguard.ReasonTCP]; n != 1 {
					t.Fatalf("tcp refusals %d, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("enabled, the TCP allocation failed: %v", err)
			}
			defer alloc.Close()
			// Even enabled, the peer policy holds: no connection to a loopback service.
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if _, err := alloc.Connect(ln.Addr()); err == nil {
				t.Fatal("TCP CONNECT to a loopback service was allowed")
			}
		})
	}
}

// TestTURNQuotas: one credential holds at most MaxAllocationsPerUser allocations and one
// client address at most MaxAllocationsPerSource; a closed allocation frees its place, and
// an idle one ends after RelayIdleTimeout.
func TestTURNQuotas(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", RelayPortMin: 40900, RelayPortMax: 40950,
			MaxAllocationsPerUser: 2, MaxAllocationsPerSource: 3, RelayIdleTimeout: 2 * time.Second}))
	u1, p1 := configCredentials(t, srv.URL)
	u2, p2 := configCredentials(t, srv.URL)
	if u1 == u2 {
		t.Fatalf("two config requests got the same TURN user %q", u1)
	}
	var relays []net.PacketConn
	for i := range 2 {
		r, err := turnClient(t, s, u1, p1).Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		relays = append(relays, r)
	}
	if _, err := turnClient(t, s, u1, p1).Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("a third allocation of one credential: %v, want 486 (quota)", err)
	}
	r, err := turnClient(t, s, u2, p2).Allocate()
	if err != nil {
		t.Fatalf("another credential: %v", err)
	}
	relays = append(relays, r)
	if _, err := turnClient(t, s, u2, p2).Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("a fourth allocation from one address: %v, want 486 (quota)", err)
	}
	m := s.Stats()
	if m.TURNAllocations != 3 || m.TURNRefusals[turnguard.ReasonQuotaUser] != 1 || m.TURNRefusals[turnguard.ReasonQuotaSource] != 1 {
		t.Fatalf("allocations %d, refusals %v", m.TURNAllocations, m.TURNRefusals)
	}
	// Closing one frees its place.
	relays[0].Close()
	waitFor(t, 2*time.Second, func() bool { return s.Stats().TURNAllocations == 2 })
	r, err = turnClient(t, s, u1, p1).Allocate()
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	defer r.Close()
	// Nothing relayed: every allocation ends after the idle timeout.
	waitFor(t, 6*time.Second, func() bool { return s.Stats().TURNAllocations == 0 })
	if n := s.Stats().TURNRefusals[turnguard.ReasonIdle]; n != 3 {
		t.Fatalf("idle refusals %d, want 3", n)
	}
	for _, r := range relays[1:] {
		r.Close()
	}
}

// TestExternalCoturn: the same REST credentials (TURNCredentials) work with coturn's
// use-auth-secret: a relay-only client connects through a coturn this test starts.
// waitSTUN waits until a STUN server answers a binding request at addr.
func waitSTUN(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, Conn: conn, RTO: 100 * time.Millisecond})
		if err == nil {
			if err = cl.Listen(); err == nil {
				_, err = cl.SendBindingRequest()
			}
			cl.Close()
		}
		conn.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no STUN answer from %s within %v: %v", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExternalCoturn(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv("FASTRTC_NETNS") != "" {
			t.Fatal("turnserver not found (scripts/deps.sh --test installs coturn)")
		}
		t.Skip("coturn not installed")
	}
	l, err := net.ListenPacket("udp4", "127.0.0.1:0") // a free port for coturn
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", fmt.Sprintf("--listening-port=%d", port),
		"--min-port=40600", "--max-port=40700", "--use-auth-secret", "--static-auth-secret=coturn-secret", "--realm=fastrtc",
		"--no-tcp", "--no-tls", "--no-dtls", "--allow-loopback-peers", "--no-cli", "--log-file=stdout", "--simple-log")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // the PID this test started
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("coturn:\n%s", out.String())
		}
	}()
	waitSTUN(t, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second) // coturn is up
	cfg := WithRTCConfiguration(func(*http.Request) (RTCConfiguration, error) {
		u, p := TURNCredentials("coturn-secret", "alice", time.Minute)
		return RTCConfiguration{ICEServers: []webrtc.ICEServer{{URLs: []string{fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port)}, Username: u, Credential: p}}}, nil
	})
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, cfg)
	res, err := http.Get(srv.URL + "/webrtc/config")
	if err != nil {
		t.Fatal(err)
	}
	var rc RTCConfiguration
	err = json.NewDecoder(res.Body).Decode(&rc)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true,
		SettingEngine: loopbackOnly, ICEServers: rc.ICEServers, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flipRoundTrip(t, c)
	pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Local.Port < 40600 || pair.Local.Port > 40700 {
		t.Fatalf("selected pair %v (%v), want a relay of coturn's range", pair, err)
	}
}
