package fastrtc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// candidates returns the candidate lines of an SDP.
func candidates(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// sendPattern sends the test pattern on c at 30 fps until ctx is done.
func sendPattern(ctx context.Context, c *client.Conn) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		if c.SendVideo(ctx, testPattern(testW, testH, i%90), uint32(i%90*3000)) != nil {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// flipRoundTrip sends frames on c and checks that flipped frames come back.
func flipRoundTrip(t *testing.T, c *client.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	go sendPattern(ctx, c)
	good := 0
	for good < 10 {
		f, err := c.ReadVideo(ctx)
		if err != nil {
			t.Fatalf("after %d good frames: %v", good, err)
		}
		want := yuv.FlipVertical(nil, testPattern(testW, testH, int(f.RTPTimestamp/3000)))
		if yuv.PSNR(f.Image, want) > 30 {
			good++
		}
	}
}

// TestUDPMux: every session's candidates name the one shared UDP port, and media flows.
// Not parallel: it binds the port again after Close, which another test's ephemeral socket
// could have taken meanwhile.
func TestUDPMux(t *testing.T) {
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, WithUDPListenAddr("127.0.0.1:0"))
	port := s.UDPAddr().(*net.UDPAddr).Port
	for i := 0; i < 2; i++ {
		c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cands := candidates(c.PeerConnection().RemoteDescription().SDP)
		if len(cands) == 0 {
			t.Fatal("no candidates in the answer")
		}
		for _, cand := range cands {
			if f := strings.Fields(cand); len(f) < 6 || f[5] != fmt.Sprint(port) {
				t.Errorf("session %d: candidate %q is not on the shared port %d", i, cand, port)
			}
		}
		flipRoundTrip(t, c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close released the port.
	conn, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d still held after Close: %v", port, err)
	}
	conn.Close()
}

// TestICETCP: a client that can only use TCP connects through the ICE-TCP listener.
func TestICETCP(t *testing.T) {
	t.Parallel()
	tcpOnly := func(se *webrtc.SettingEngine) {
		loopbackOnly(se)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	}
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, WithICETCP("127.0.0.1:0"),
		WithSettingEngine(func(se *webrtc.SettingEngine) {
			loopbackOnly(se)
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		}))
	port := s.TCPAddr().(*net.TCPAddr).Port
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: tcpOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sdp := c.PeerConnection().RemoteDescription().SDP; !strings.Contains(sdp, fmt.Sprintf("127.0.0.1 %d typ host tcptype passive", port)) {
		t.Fatalf("no passive TCP candidate on port %d in the answer:\n%s", port, strings.Join(candidates(sdp), "\n"))
	}
	flipRoundTrip(t, c)
	pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("selected pair %v (%v), want TCP", pair, err)
	}
}

// TestPublicIPs: the answer announces the public address instead of the local one.
func TestPublicIPs(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, WithPublicIPs("203.0.113.7"))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	ans := c.offer()
	sdp, _ := ans["sdp"].(string)
	cands := candidates(sdp)
	if len(cands) == 0 || !strings.Contains(strings.Join(cands, "\n"), " 203.0.113.7 ") || strings.Contains(strings.Join(cands, "\n"), " 127.0.0.1 ") {
		t.Fatalf("answer candidates %q, want 203.0.113.7 only", cands)
	}
	if _, err := New(VideoFunc(flipHandler), Video, SendReceive, WithPublicIPs("not-an-ip")); err == nil {
		t.Error("New accepted a public IP that is not an IP")
	}
}

// TestRTCConfigRoute: GET /webrtc/config returns the stream's ICE servers, or what the
// configured function builds, fresh on every request.
func TestRTCConfigRoute(t *testing.T) {
	t.Parallel()
	get := func(url string) (int, RTCConfiguration) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var cfg RTCConfiguration
		_ = json.NewDecoder(res.Body).Decode(&cfg)
		return res.StatusCode, cfg
	}
	stun := webrtc.ICEServer{URLs: []string{"stun:stun.example:3478"}}
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, WithICEServers(stun))
	if code, cfg := get(srv.URL + "/webrtc/config"); code != 200 || len(cfg.ICEServers) != 1 || cfg.ICEServers[0].URLs[0] != stun.URLs[0] {
		t.Fatalf("default config: %d %+v", code, cfg)
	}
	var n atomic.Int32
	fresh := WithRTCConfiguration(func(r *http.Request) (RTCConfiguration, error) {
		if r.URL.Query().Get("fail") != "" {
			return RTCConfiguration{}, fmt.Errorf("no credentials today for account AC0123")
		}
		return RTCConfiguration{ICEServers: []webrtc.ICEServer{{URLs: []string{"turn:turn.example:3478"},
			Username: fmt.Sprintf("%d:user", n.Add(1)), Credential: "secret"}}}, nil
	})
	_, srv2 := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, fresh)
	_, a := get(srv2.URL + "/webrtc/config")
	_, b := get(srv2.URL + "/webrtc/config")
	if len(a.ICEServers) != 1 || len(b.ICEServers) != 1 || a.ICEServers[0].Username == b.ICEServers[0].Username {
		t.Fatalf("credentials not fresh per request: %+v then %+v", a, b)
	}
	if code, _ := get(srv2.URL + "/webrtc/config?fail=1"); code != http.StatusInternalServerError {
		t.Fatalf("failing config: HTTP %d, want 500", code)
	}
	// The provider's error (account ids, key ids, URLs) stays in the log.
	res, err := http.Get(srv2.URL + "/webrtc/config?fail=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "AC0123") {
		t.Fatalf("the config route leaked the provider's error: %s", body)
	}
}

// TestUDPPortRange: without a shared port, every session's sockets stay within the range.
func TestUDPPortRange(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive, WithUDPPortRange(41000, 41020))
	for i := 0; i < 2; i++ {
		c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, cand := range candidates(c.PeerConnection().RemoteDescription().SDP) {
			f := strings.Fields(cand)
			var port int
			if len(f) > 5 {
				_, _ = fmt.Sscan(f[5], &port)
			}
			if port < 41000 || port > 41020 {
				t.Errorf("candidate %q outside 41000..41020", cand)
			}
		}
		flipRoundTrip(t, c)
	}
	if _, err := New(VideoFunc(flipHandler), Video, SendReceive, WithUDPPortRange(5000, 4000)); err == nil {
		t.Error("New accepted a reversed port range")
	}
}

// TestSessionStats: a session's stats count the frames and audio that went through and, on
// WebRTC, the network figures of the selected pair.
func TestSessionStats(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flipRoundTrip(t, c)
	sess := s.mustSession(t, c.ID())
	st := sess.Stats()
	if st.Transport != "webrtc" || st.VideoFramesIn < 10 || st.VideoFramesOut < 10 || st.BytesIn == 0 || st.BytesOut == 0 || st.PacketsIn == 0 {
		t.Fatalf("video session stats %+v", st)
	}

	a, asrv := newTestStream(t, echoFactory(), Audio, SendReceive)
	ws := dialAudioWS(t, asrv)
	defer ws.Close()
	waitFor(t, 5*time.Second, func() bool { return len(a.Sessions()) == 1 })
	as := a.mustSession(t, "stats1")
	pcm := make([]byte, 2*16000/50) // 20 ms at 16 kHz
	for i := 0; i < 50; i++ {
		msg := fmt.Sprintf(`{"event":"media","media":{"payload":%q}}`, base64.StdEncoding.EncodeToString(pcm))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, func() bool {
		st := as.Stats()
		return st.AudioIn >= 900*time.Millisecond && st.AudioOut >= 500*time.Millisecond
	})
	if st := as.Stats(); st.Transport != "websocket" || st.VideoFramesIn != 0 {
		t.Fatalf("audio session stats %+v", st)
	}
}

// dialAudioWS starts a WebSocket audio session "stats1" with 16 kHz PCM both ways.
func dialAudioWS(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	conn, res, err := websocket.DefaultDialer.Dial(wsURL(srv, "/websocket/offer"), nil)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { // read and drop the server's media
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	start := `{"event":"start","websocket_id":"stats1","format":{"encoding":"pcm_s16le","sample_rate":16000}}`
	if err := conn.WriteMessage(websocket.TextMessage, []byte(start)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// udpPorts returns the local ports of this network namespace's UDP sockets (/proc/net/udp
// and udp6), with how many sockets hold each.
func udpPorts(t *testing.T) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				out[int(p)]++
			}
		}
	}
	return out
}

// TestOneUDPPortIsOneSocket: with a UDP mux, sessions open no UDP socket of their own, and
// nothing listens on mDNS's port 5353 (pion's default opened two sockets per session there).
// Not parallel: it counts every UDP socket of the machine.
func TestOneUDPPortIsOneSocket(t *testing.T) {
	noLoopMDNS := func(se *webrtc.SettingEngine) { // loopback only, but pion's mDNS default left alone
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	s, err := New(VideoFunc(flipHandler), Video, SendReceive, WithUDPListenAddr("127.0.0.1:0"), WithSettingEngine(noLoopMDNS))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux := http.NewServeMux()
	s.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	before := udpPorts(t)
	clientPorts := map[int]bool{}
	for range 4 {
		c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		flipRoundTrip(t, c)
		for _, cand := range candidates(c.PeerConnection().LocalDescription().SDP) {
			if f := strings.Fields(cand); len(f) >= 6 {
				p, _ := strconv.Atoi(f[5])
				clientPorts[p] = true
			}
		}
	}
	after := udpPorts(t)
	muxPort := s.UDPAddr().(*net.UDPAddr).Port
	if after[5353] > 0 {
		t.Errorf("%d sockets on mDNS's port 5353 (before: %d)", after[5353], before[5353])
	}
	for p, n := range after {
		if extra := n - before[p]; extra > 0 && p != muxPort && !clientPorts[p] {
			t.Errorf("port %d: %d new sockets, neither the mux's (%d) nor the clients'", p, extra, muxPort)
		}
	}
}

// TestSessionStatsRates: while one reader polls a session's Stats every 5 ms, another, every
// half second, still gets a frame rate over at least the last second (about 30 fps): readers do not
// reset each other's window. The stream's Stats count the session by transport, and
// Lookup gives the same session's figures with its id.
func TestSessionStatsRates(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := c.ReadVideo(ctx); err != nil {
				return
			}
		}
	}()
	go sendPattern(ctx, c)
	sess := s.mustSession(t, c.ID())
	polled := make(chan struct{})
	go func() { // the fast reader
		defer close(polled)
		for ctx.Err() == nil && time.Since(sess.created) < 4*time.Second {
			_ = sess.Stats()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var fps []float64
	for i := 0; i < 6; i++ {
		time.Sleep(500 * time.Millisecond)
		if i >= 3 { // past the first second of media
			fps = append(fps, sess.Stats().VideoFPSIn)
		}
	}
	<-polled
	for _, f := range fps {
		if f < 15 || f > 45 {
			t.Errorf("frame rates in at 30 fps under a 5 ms poller: %v", fps)
			break
		}
	}
	st := s.Stats()
	if st.Sessions != 1 || st.SessionsByTransport["webrtc"] != 1 || st.CodecContexts == 0 || st.VideoFramesIn == 0 {
		t.Errorf("stream stats: sessions %d by transport %v, codecs %d, frames in %d", st.Sessions, st.SessionsByTransport, st.CodecContexts, st.VideoFramesIn)
	}
	if info, err := s.Lookup(ctx, c.ID()); err != nil || info.ID != c.ID() || info.Transport != "webrtc" || info.VideoFramesIn == 0 {
		t.Errorf("Lookup: %+v, %v", info, err)
	}
}
