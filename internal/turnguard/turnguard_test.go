package turnguard

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func testPeers() *Peers {
	return &Peers{
		Own:      []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fe80::1")},
		Refused:  []uint16{3478, 3479},
		RelayMin: 49152, RelayMax: 49408,
	}
}

func TestPeersAllow(t *testing.T) {
	p := testPeers()
	for _, c := range []struct {
		peer string
		want bool
	}{
		{"203.0.113.7:50000", true}, // this host's public address: its media
		{"10.0.0.5:40000", true},    // an interface address
		{"[::ffff:10.0.0.5]:40000", true},
		{"127.0.0.1:4222", false}, // loopback, though an own address (NATS)
		{"[::1]:8000", false},
		{"[fe80::1]:5000", false},     // link-local
		{"169.254.169.254:80", false}, // link-local (cloud metadata)
		{"0.0.0.0:9", false},
		{"224.0.0.251:5353", false}, // multicast (mDNS)
		{"255.255.255.255:9", false},
		{"198.51.100.1:5000", false}, // not this host: no open relay
		{"203.0.113.7:3478", false},  // TURN's own port
		{"203.0.113.7:49152", false}, // a relay port
		{"203.0.113.7:49408", false},
		{"203.0.113.7:49409", true},
		{"203.0.113.7:0", false},
	} {
		if got := p.Allow(netip.MustParseAddrPort(c.peer)); got != c.want {
			t.Errorf("Allow(%s) = %v, want %v", c.peer, got, c.want)
		}
	}
	// With a UDP mux, only its port.
	p.MediaMin, p.MediaMax = 8443, 8443
	if !p.Allow(netip.MustParseAddrPort("10.0.0.5:8443")) || p.Allow(netip.MustParseAddrPort("10.0.0.5:8444")) {
		t.Error("media port bound not applied")
	}
	var zero Peers
	if zero.Allow(netip.MustParseAddrPort("10.0.0.5:8443")) {
		t.Error("the zero Peers allowed a peer")
	}
}

// FuzzPeersAllow: whatever the policy's settings, a special address, TURN's own ports, the
// relay range and ports outside the media range are never allowed, and nothing panics.
func FuzzPeersAllow(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(4222), uint16(0), uint16(0))
	f.Add([]byte{10, 0, 0, 5}, uint16(8443), uint16(8443), uint16(8443))
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(1), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, ip []byte, port, mediaMin, mediaMax uint16) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		p := testPeers()
		p.Own = append(p.Own, a) // even when the address is listed as the host's own
		p.MediaMin, p.MediaMax = mediaMin, mediaMax
		ap := netip.AddrPortFrom(a, port)
		if !p.Allow(ap) {
			return
		}
		switch {
		case SpecialIP(a):
			t.Fatalf("allowed special address %v", ap)
		case slices.Contains(p.Refused, port), port >= p.RelayMin && port <= p.RelayMax, port == 0:
			t.Fatalf("allowed refused port %v", ap)
		case mediaMin != 0 && (port < mediaMin || port > mediaMax):
			t.Fatalf("allowed %v outside the media ports %d..%d", ap, mediaMin, mediaMax)
		}
	})
}

func TestQuota(t *testing.T) {
	g, err := New(Config{Allow: func(netip.AddrPort) bool { return true }, PerUser: 2, PerSource: 3})
	if err != nil {
		t.Fatal(err)
	}
	ev := g.Events()
	src := func(ip string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: 5000} }
	create := func(user, ip string) bool {
		if !g.Quota(user, "r", src(ip)) {
			return false
		}
		ev.OnAllocationCreated(src(ip), nil, "UDP", user, "r", nil, 0)
		return true
	}
	for i := range 2 {
		if !create("a", "10.0.0.1") {
			t.Fatalf("allocation %d refused", i)
		}
	}
	if create("a", "10.0.0.2") {
		t.Fatal("a third allocation of user a was allowed")
	}
	if !create("b", "10.0.0.1") {
		t.Fatal("user b refused")
	}
	if create("c", "10.0.0.1") {
		t.Fatal("a fourth allocation from 10.0.0.1 was allowed")
	}
	ev.OnAllocationDeleted(src("10.0.0.1"), nil, "UDP", "a", "r")
	if !create("c", "10.0.0.1") {
		t.Fatal("refused after a deletion")
	}
	if got := g.Allocations(); got != 3 {
		t.Fatalf("allocations %d, want 3", got)
	}
	if r := g.Refused(); r[ReasonQuotaUser] != 1 || r[ReasonQuotaSource] != 1 {
		t.Fatalf("refusals %v", r)
	}
}

// TestRelayConn: datagrams to refused peers are dropped without an error (which would end
// the allocation), datagrams from them are skipped, and an idle relay's read ends.
func TestRelayConn(t *testing.T) {
	inner, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	ok, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	bad, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	okPort := uint16(ok.LocalAddr().(*net.UDPAddr).Port)
	g, _ := New(Config{Allow: func(p netip.AddrPort) bool { return p.Port() == okPort }, Idle: 300 * time.Millisecond})
	rc := newRelayConn(g, inner)
	if n, err := rc.WriteTo([]byte("no"), bad.LocalAddr()); err != nil || n != 2 {
		t.Fatalf("write to a refused peer: %d, %v (want dropped silently)", n, err)
	}
	if _, err := rc.WriteTo([]byte("yes"), ok.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = ok.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := ok.ReadFrom(buf); err != nil || string(buf[:n]) != "yes" {
		t.Fatalf("allowed peer got %q, %v", buf[:n], err)
	}
	_ = bad.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := bad.ReadFrom(buf); err == nil {
		t.Fatal("the refused peer received a datagram")
	}
	_, _ = bad.WriteTo([]byte("from bad"), inner.LocalAddr())
	_, _ = ok.WriteTo([]byte("from ok"), inner.LocalAddr())
	if n, addr, err := rc.ReadFrom(buf); err != nil || string(buf[:n]) != "from ok" || addr.String() != ok.LocalAddr().String() {
		t.Fatalf("read %q from %v, %v; want the allowed peer's datagram only", buf[:n], addr, err)
	}
	start := time.Now()
	if _, _, err := rc.ReadFrom(buf); err == nil {
		t.Fatal("an idle relay's read did not end")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle read ended after %v", d)
	}
	if r := g.Refused(); r[ReasonPeer] != 1 || r[ReasonIdle] != 1 {
		t.Fatalf("refusals %v, want 1 peer, 1 idle", r)
	}
}

// TestPeersMediaPort: without a fixed media port or range, only the ports the live sessions
// listen on are reached (the host's DNS, NTP, another node's TURN port are not).
func TestPeersMediaPort(t *testing.T) {
	live := map[uint16]bool{50123: true}
	p := &Peers{Own: []netip.Addr{netip.MustParseAddr("192.0.2.10")}, Refused: []uint16{3478},
		MediaPort: func(port uint16) bool { return live[port] }}
	for port, want := range map[uint16]bool{50123: true, 53: false, 123: false, 3479: false, 5353: false, 50124: false} {
		if got := p.Allow(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), port)); got != want {
			t.Errorf("port %d: %v, want %v", port, got, want)
		}
	}
}
