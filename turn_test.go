package fastrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
)

// TestTURNRelay: a client that may only use relayed candidates connects through the
// embedded TURN server with the credentials of GET /webrtc/config, and media flows.
func TestTURNRelay(t *testing.T) {
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40000, RelayPortMax: 40100}))
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
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40400, RelayPortMax: 40500}))
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

// TestTURNCredentials: expired or forged credentials get no allocation, fresh ones do, and
// the relay goes only to the server's own addresses.
func TestTURNCredentials(t *testing.T) {
	s, _ := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive,
		WithTURN(TURNOptions{Addr: "127.0.0.1:0", Secret: "s3cret", RelayPortMin: 40200, RelayPortMax: 40300}))
	allocate := func(user, pass string) (net.PacketConn, error) {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.TURNAddr().String(), TURNServerAddr: s.TURNAddr().String(),
			Conn: conn, Username: user, Password: pass, Realm: "fastrtc"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		return cl.Allocate()
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
	// Not an open relay: a peer outside this host is refused (CreatePermission fails).
	if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}); err == nil {
		t.Error("relaying to 192.0.2.1 (not this host) was allowed")
	}
	if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Errorf("relaying to this host: %v", err)
	}
}

// TestExternalCoturn: the same REST credentials (TURNCredentials) work with coturn's
// use-auth-secret: a relay-only client connects through a coturn this test starts.
func TestExternalCoturn(t *testing.T) {
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
	time.Sleep(300 * time.Millisecond)
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
