package fastrtc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestCORS: without WithCORS no CORS header is sent; with it, allowed origins get them and
// their preflights are answered, others are refused.
func TestCORS(t *testing.T) {
	t.Parallel()
	// reply is what the checks read of a response, whose body do has closed.
	type reply struct {
		StatusCode int
		Header     http.Header
	}
	do := func(t *testing.T, url, method, origin string) reply {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return reply{res.StatusCode, res.Header}
	}
	_, plain := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive)
	if res := do(t, plain.URL+"/input_hook", http.MethodPost, "https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no WithCORS: got Access-Control-Allow-Origin %q", res.Header.Get("Access-Control-Allow-Origin"))
	}
	if res := do(t, plain.URL+"/webrtc/offer", http.MethodOptions, "https://evil.example"); res.StatusCode < 400 {
		t.Errorf("no WithCORS: preflight answered %d", res.StatusCode)
	}

	_, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithCORS("https://app.example"))
	res := do(t, srv.URL+"/webrtc/offer", http.MethodOptions, "https://app.example")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("allowed preflight: %d %v", res.StatusCode, res.Header)
	}
	if res := do(t, srv.URL+"/input_hook", http.MethodPost, "https://app.example"); res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("allowed POST: no Access-Control-Allow-Origin (%v)", res.Header)
	}
	if res := do(t, srv.URL+"/webrtc/offer", http.MethodOptions, "https://evil.example"); res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin's preflight: %d %v", res.StatusCode, res.Header)
	}
	if _, err := New(VideoFunc(echoHandler), Video, SendReceive, WithCORS("app.example/")); err == nil {
		t.Error("New accepted a CORS origin without a scheme")
	}
}

// TestTelephoneOriginCheck: a web page (a handshake with Origin) cannot use the telephone
// route unless the WebSocket origin check accepts it; Twilio (no Origin) can; and a stream
// can leave the telephone routes out.
func TestTelephoneOriginCheck(t *testing.T) {
	t.Parallel()
	dial := func(url string, origin string) (int, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, res, err := websocket.DefaultDialer.Dial(url, h)
		if c != nil {
			_ = c.Close()
		}
		if res != nil {
			if res.Body != nil {
				res.Body.Close()
			}
			return res.StatusCode, err
		}
		return 0, err
	}
	check := WithWebSocket(WebSocketOptions{CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "https://app.example" }})
	_, srv := newTestStream(t, echoFactory(), Audio, SendReceive, check)
	url := wsURL(srv, "/telephone/handler")
	if code, err := dial(url, "https://evil.example"); err == nil || code != http.StatusForbidden {
		t.Errorf("telephone from another site's page: HTTP %d, %v; want 403", code, err)
	}
	if code, err := dial(url, ""); err != nil {
		t.Errorf("telephone without Origin (Twilio): HTTP %d, %v", code, err)
	}
	if code, err := dial(url, "https://app.example"); err != nil {
		t.Errorf("telephone from an accepted origin: HTTP %d, %v", code, err)
	}
	if code, err := dial(wsURL(srv, "/websocket/offer"), "https://evil.example"); err == nil || code != http.StatusForbidden {
		t.Errorf("websocket from another site's page: HTTP %d, %v; want 403", code, err)
	}
	// Without any origin check, pages still cannot use the telephone route.
	_, open := newTestStream(t, echoFactory(), Audio, SendReceive)
	if code, err := dial(wsURL(open, "/telephone/handler"), "https://evil.example"); err == nil || code != http.StatusForbidden {
		t.Errorf("telephone from a page, no check set: HTTP %d, %v; want 403", code, err)
	}
	// Disabled: Mount adds no telephone routes.
	st, err := New(echoFactory(), Audio, SendReceive, WithTelephone(TelephoneOptions{Disabled: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mux := http.NewServeMux()
	st.Mount(mux)
	off := httptest.NewServer(mux)
	defer off.Close()
	if code, _ := dial(wsURL(off, "/telephone/handler"), ""); code != http.StatusNotFound {
		t.Errorf("disabled telephone handler: HTTP %d, want 404", code)
	}
	if code, err := dial(wsURL(off, "/websocket/offer"), ""); err != nil {
		t.Errorf("websocket route with telephone disabled: HTTP %d, %v", code, err)
	}
	res, err := http.Post(off.URL+"/telephone/incoming", "application/x-www-form-urlencoded", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("disabled telephone webhook: HTTP %d, want 404", res.StatusCode)
	}
}

// TestRefusalsAtOnce: a refused offer is answered at once and frees its slot at once (it used
// to wait a second for a data channel that never opens), and a session whose client opened
// no data channel ends at once on End (it used to wait 5 s).
func TestRefusalsAtOnce(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive, WithConcurrencyLimit(1))
	// An offer pion cannot take (a video-only SDP for an audio stream fails after the
	// session was opened, so it goes through the session's end path).
	bad := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	offer, err := bad.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = bad.pc.SetLocalDescription(offer)
	start := time.Now()
	r := postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"sdp": offer.SDP, "type": "offer", "webrtc_id": "bad1"})
	took := time.Since(start)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "audio") {
		t.Fatalf("bad offer: %d %s", r.status, r.body)
	}
	// The old path waited a fixed second (flushing an error message to a data channel that
	// never opens); the answer now comes after the offer's own work, well under that.
	if took >= 900*time.Millisecond {
		t.Errorf("bad offer answered after %v; it should not wait for a data channel", took)
	}
	if n := s.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions hold the slot after the refusal", n)
	}

	// A client with no data channel (raw pion, audio only).
	pc := rawAudioPeer(t)
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	_ = pc.SetLocalDescription(o)
	<-gathered
	r = postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"sdp": pc.LocalDescription().SDP, "type": "offer", "webrtc_id": "nodc"})
	if r.status != http.StatusOK {
		t.Fatalf("offer without data channel: %d %s", r.status, r.body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.json["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	sess := s.mustSession(t, "nodc")
	select {
	case <-sess.connected:
	case <-time.After(10 * time.Second):
		t.Fatal("not connected")
	}
	start = time.Now()
	sess.End("bye")
	<-sess.Done()
	if took := time.Since(start); took >= 4*time.Second {
		t.Errorf("CloseStream without a data channel took %v (it waited for a channel that does not exist)", took)
	}
}

// rawAudioPeer is a plain pion peer with one sendrecv audio transceiver and no data channel.
func rawAudioPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	loopbackOnly(&se)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	return pc
}

// TestCandidateLimits: a client may trickle a bounded number of candidates, and the
// operator's filter refuses addresses (trickled or in the offer).
func TestCandidateLimits(t *testing.T) {
	t.Parallel()
	noPrivate := WithCandidateFilter(func(a netip.Addr) bool { return !a.IsPrivate() })
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, noPrivate)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	trickle := func(cand string) httpReply {
		return postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"type": "ice-candidate", "webrtc_id": c.id,
			"candidate": map[string]any{"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}})
	}
	failed := func(r httpReply) string {
		meta, _ := r.json["meta"].(map[string]any)
		if r.json["status"] != "failed" || meta["error"] != failInvalidCandidate {
			return ""
		}
		d, _ := meta["detail"].(string)
		return d
	}
	if d := failed(trickle("candidate:1 1 udp 2130706431 10.1.2.3 9 typ host")); !strings.Contains(d, "refused") {
		t.Errorf("private address trickled: detail %q, want refused", d)
	}
	// The offer's own candidates count toward the bound.
	inOffer := strings.Count(c.pc.LocalDescription().SDP, "a=candidate:")
	for i := 0; i < maxTrickledCandidates-inOffer; i++ {
		r := trickle(fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i+2, 20000+i))
		if r.json["status"] != "success" {
			t.Fatalf("candidate %d (after %d in the offer): %s", i, inOffer, r.body)
		}
	}
	if d := failed(trickle("candidate:99 1 udp 2130706431 127.0.0.1 30000 typ host")); !strings.Contains(d, "too many") {
		t.Errorf("candidate %d: detail %q, want too many", maxTrickledCandidates+1, d)
	}
	if r := trickle(""); r.json["status"] != "success" { // end-of-candidates is always taken
		t.Errorf("end-of-candidates: %s", r.body)
	}
	// In the offer too, however the lines are written: a stray carriage return before a
	// candidate line (which pion still reads) does not hide it from the filter.
	sdp := strings.Replace(rawOffer(t), "a=mid:0\r\n", "a=mid:0\r\na=candidate:1 1 udp 1 10.0.0.7 5000 typ host\r\n"+
		"\ra=candidate:4 1 udp 1 10.0.0.8 5000 typ host\r\n"+
		"a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\na=candidate:3 1 udp 1 abc.local 5002 typ host\r\n", 1)
	got, n, err := s.filterOfferCandidates(sdp, maxTrickledCandidates)
	if err != nil || n != 2 || strings.Contains(got, "10.0.0.7") || strings.Contains(got, "10.0.0.8") || !strings.Contains(got, "127.0.0.1 5001") || !strings.Contains(got, "abc.local") {
		t.Errorf("filtered offer (%d kept, %v):\n%s", n, err, got)
	}
}

// TestOfferCandidatesCapped: candidates in the offer's SDP count toward the same bound as
// trickled ones: an offer with 500 candidates keeps 64, and the session then takes no
// trickled candidate.
func TestOfferCandidatesCapped(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive)
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 1 127.0.0.1 %d typ host\r\n", i, 20000+i)
		if i%2 == 0 {
			b.WriteString("\r") // pion reads a line after a stray carriage return too
		}
	}
	got, n, err := s.filterOfferCandidates(strings.Replace(rawOffer(t), "a=mid:0\r\n", "a=mid:0\r\n"+b.String(), 1), maxTrickledCandidates)
	if err != nil || n != maxTrickledCandidates || strings.Count(got, "a=candidate:") != maxTrickledCandidates {
		t.Fatalf("kept %d (%d lines, %v), want %d", n, strings.Count(got, "a=candidate:"), err, maxTrickledCandidates)
	}
	// Candidates trickled before the offer leave that much less room in it.
	if _, n, _ := s.filterOfferCandidates(strings.Replace(rawOffer(t), "a=mid:0\r\n", "a=mid:0\r\n"+b.String(), 1), 10); n != 10 {
		t.Fatalf("with 54 trickled first: kept %d, want 10", n)
	}
	// Through the route: a real offer with 100 extra candidates, then one trickled.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	var extra strings.Builder
	for i := range 100 {
		fmt.Fprintf(&extra, "a=candidate:%d 1 udp 1 127.0.0.1 %d typ host\r\n", 900+i, 30000+i)
	}
	sdp := strings.Replace(offer.SDP, "a=mid:0\r\n", "a=mid:0\r\n"+extra.String(), 1)
	r := postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"type": "offer", "sdp": sdp, "webrtc_id": "many-candidates"})
	if r.json["type"] != "answer" {
		t.Fatalf("offer with 100 candidates: %s", r.body)
	}
	r = postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"type": "ice-candidate", "webrtc_id": "many-candidates",
		"candidate": map[string]any{"candidate": "candidate:5 1 udp 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})
	meta, _ := r.json["meta"].(map[string]any)
	if d, _ := meta["detail"].(string); r.json["status"] != "failed" || !strings.Contains(d, "too many") {
		t.Fatalf("a trickled candidate after an offer with 100: %s, want too many", r.body)
	}
	if sess, err := s.Session("many-candidates"); err == nil {
		sess.Close()
	}
}

// TestOutputsReaderStalls: Stream.Outputs with a reader that stopped reading lets go of the
// session (its goroutine returns) at most a few seconds after the session ended. Not
// parallel: it counts the process's Outputs goroutines, which other tests' /outputs start.
func TestOutputsReaderStalls(t *testing.T) {
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	sess := s.mustSession(t, c.id)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // only at the end: the reader stalls, it does not cancel
	ch, err := s.Outputs(ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := sess.Emit(i); err != nil {
			t.Fatal(err)
		}
	}
	if v := <-ch; string(v) != "0" { // read one, then stall
		t.Fatalf("first output %s", v)
	}
	sess.End("")
	<-sess.Done()
	// The Outputs goroutine gives up outputsGrace after the end, and closes the channel.
	if goroutinesIn("fastrtc.(*Stream).outputsOf") != 1 {
		t.Fatal("no Outputs goroutine while its reader stalls")
	}
	deadline := time.Now().Add(outputsGrace + 5*time.Second)
	for goroutinesIn("fastrtc.(*Stream).outputsOf") > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if goroutinesIn("fastrtc.(*Stream).outputsOf") > 0 {
		t.Fatal("the Outputs goroutine outlived its session by more than the grace period")
	}
	n := 0
	for range ch {
		n++
	}
	if n != 0 {
		t.Errorf("%d outputs delivered after the give-up", n)
	}
}

// goroutinesIn counts the goroutines whose stack has a frame of fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestInputAheadOfRealTime: a WebSocket client pushing 10 s of audio in one message gets at
// most the allowed burst through to the handler, and a warning.
func TestInputAheadOfRealTime(t *testing.T) {
	t.Parallel()
	var got atomic.Int64 // samples the handler received
	f := AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) {
		got.Add(int64(len(in.Samples)))
		return AudioFrame{}, nil
	})
	_, srv := newTestStream(t, f, Audio, Send)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "burst", "format": map[string]any{"encoding": "pcm_s16le", "sample_rate": 16000}})
	c.pingPong()
	pcm := make([]byte, 2*16000*10) // 10 s of silence at 16 kHz (the handler gets 48 kHz)
	c.send(map[string]any{"event": "media", "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(pcm)}})
	w := c.waitType("warning", 5*time.Second)
	if msg := w.str("message"); !strings.Contains(msg, "ahead of real time") {
		t.Errorf("warning %q", msg)
	}
	c.pingPong() // the message was fully processed
	if sec := float64(got.Load()) / 48000; sec > maxInputAhead.Seconds()+0.5 {
		t.Errorf("the handler got %.1f s of audio within a moment; at most %.1f s may run ahead", sec, maxInputAhead.Seconds())
	}
}

// TestVideoQueueBytes: while the handler is busy, a client's large frames queue for the
// decoder up to maxQueuedVideoBytes, not 64 frames of any size (64 x 8 MiB would pin half a
// gigabyte). Not parallel: with other tests loading the CPU, the server does not read its
// socket fast enough, packets are dropped, and the queue never fills.
func TestVideoQueueBytes(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	busy := make(chan struct{})
	h := VideoFunc(func(s *Session, f *VideoFrame) (image.Image, error) {
		once.Do(func() { close(busy) })
		select { // the first call holds the decode loop: everything after it queues
		case <-release:
		case <-s.Context().Done():
		}
		return nil, nil
	})
	s, srv := newTestStream(t, h, Video, Send)
	defer close(release)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true})
	c.connect()
	// One real key frame (so the handler runs and blocks), then junk, on one packetizer.
	pk := vp8rtp.NewPacketizer(1234, 96, 1200)
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{BitrateKbps: 1500, CPUUsed: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	key, _, err := enc.Encode(nil, testPattern(testW, testH, 0), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // until the handler is busy
		_ = pk.Packetize(key, uint32(i*3000), c.video.WriteRTP)
		select {
		case <-busy:
			i = 20
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-busy:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never ran")
	}
	// 64 inter frames of 384 KB each (24 MiB in all), as fast as loopback takes them.
	frame := make([]byte, 384<<10)
	frame[0] = 0x01 // an inter frame (P bit set): queued, never decoded
	peak := int64(0)
	for i := 0; i < 64; i++ {
		n := 0
		_ = pk.Packetize(frame, uint32((100+i)*3000), func(p *rtp.Packet) error {
			if n++; n%40 == 0 {
				time.Sleep(time.Millisecond) // let the socket drain
			}
			return c.video.WriteRTP(p)
		})
		peak = max(peak, s.Stats().QueuedVideoBytes)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		peak = max(peak, s.Stats().QueuedVideoBytes)
		time.Sleep(20 * time.Millisecond)
	}
	if peak > maxQueuedVideoBytes {
		t.Fatalf("%d bytes queued for the decoder, more than the %d allowed", peak, maxQueuedVideoBytes)
	}
	if peak < maxQueuedVideoBytes/2 {
		t.Fatalf("only %d bytes ever queued: the test did not fill the queue", peak)
	}
	t.Logf("peak queue %d KB of %d KB allowed", peak>>10, maxQueuedVideoBytes>>10)
}

// TestIDsCheckedEverywhere: an id that is not a valid connection id (too long, or with
// bytes outside the allowed set) is refused with 400 by every route that names a session,
// and with ErrInvalidID by every Go method that takes one: before, only the offer and
// WebSocket start checked it, and a cluster built NATS subjects from the rest.
func TestIDsCheckedEverywhere(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, AudioFunc(func(_ *Session, in AudioFrame) (AudioFrame, error) { return in, nil }),
		Audio, SendReceive, WithInputs(Number("n", 0)))
	for _, id := range []string{strings.Repeat("a", MaxIDLength+1), "a b", "a/b", "x\x00"} {
		q := url.QueryEscape(id)
		for _, route := range []string{"/stats?webrtc_id=" + q, "/outputs?webrtc_id=" + q} {
			resp, err := http.Get(srv.URL + route)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: %d, want 400", route[:min(len(route), 40)], resp.StatusCode)
			}
		}
		b, _ := json.Marshal(map[string]any{"webrtc_id": id, "n": 1})
		resp, err := http.Post(srv.URL+"/input_hook", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /input_hook id %q: %d, want 400", id[:min(len(id), 20)], resp.StatusCode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, errOut := s.Outputs(ctx, id)
		cancel()
		_, errSess := s.Session(id)
		_, _, errLatest := s.LatestOutput(id)
		for name, err := range map[string]error{"SetInput": s.SetInput(id, map[string]any{"n": 1.0}),
			"Outputs": errOut, "Session": errSess, "LatestOutput": errLatest, "CheckID": CheckID(id)} {
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("%s(%q): %v, want ErrInvalidID", name, id[:min(len(id), 20)], err)
			}
		}
	}
}

// rawOffer is a recvonly video offer from a pion peer that never connects (the test closes
// it): an answered offer that stays pending.
func rawOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// TestPendingOffersBounded: offers answered but not connected are bounded per client address
// and per stream (300 of them held 2,414 file descriptors for 30 s each); past a bound the
// offer gets FastRTC's concurrency failure, and a slot comes back when a pending session
// ends. Behind a trusted proxy the bound is per X-Forwarded-For client.
func TestPendingOffersBounded(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive,
		WithPendingLimit(5, 3), WithTrustedProxies(netip.MustParsePrefix("127.0.0.1/32")))
	offer := func(id, xff string) httpReply {
		b, _ := json.Marshal(map[string]any{"type": "offer", "sdp": rawOffer(t), "webrtc_id": id})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webrtc/offer", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r httpReply
		r.status = resp.StatusCode
		_ = json.NewDecoder(resp.Body).Decode(&r.json)
		return r
	}
	reason := func(r httpReply) string {
		meta, _ := r.json["meta"].(map[string]any)
		if r.json["status"] != "failed" || meta["error"] != failConcurrency {
			return ""
		}
		v, _ := meta["reason"].(string)
		return v
	}
	for i := range 3 {
		if r := offer(fmt.Sprint("a", i), "198.51.100.1"); r.json["type"] != "answer" {
			t.Fatalf("offer %d from client A: %v", i, r.json)
		}
	}
	if got := reason(offer("a3", "198.51.100.1")); got != "pending_source" {
		t.Fatalf("a 4th pending offer from one client: reason %q, want pending_source", got)
	}
	for i := range 2 {
		if r := offer(fmt.Sprint("b", i), "198.51.100.2"); r.json["type"] != "answer" {
			t.Fatalf("offer %d from client B: %v", i, r.json)
		}
	}
	if got := reason(offer("c0", "198.51.100.3")); got != "pending" {
		t.Fatalf("a 6th pending offer: reason %q, want pending", got)
	}
	if n := s.Stats().Refusals["pending_limit"]; n != 2 {
		t.Fatalf("pending_limit refusals %d, want 2", n)
	}
	sess, err := s.Session("a0")
	if err != nil {
		t.Fatal(err)
	}
	_ = sess.Close()
	waitFor(t, 5*time.Second, func() bool { _, err := s.Session("a0"); return err != nil })
	if r := offer("c1", "198.51.100.3"); r.json["type"] != "answer" {
		t.Fatalf("after one pending session ended: %v", r.json)
	}
	for _, id := range []string{"a1", "a2", "b0", "b1", "c1"} {
		if sess, err := s.Session(id); err == nil {
			_ = sess.Close()
		}
	}
}

// TestForwardedHeadersTrustedOnly: X-Forwarded-For counts only from a trusted proxy.
func TestForwardedHeadersTrustedOnly(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "203.0.113.9:5000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1, 10.0.0.2")
	r.Header.Set("X-Forwarded-Host", "evil.example")
	untrusted := &Stream{}
	if a := untrusted.clientAddr(r); a != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("no trusted proxy: client %v, want the peer", a)
	}
	if _, host := untrusted.externalOrigin(r); host == "evil.example" {
		t.Error("no trusted proxy: X-Forwarded-Host was used")
	}
	trusting := &Stream{cfg: config{trustedProxies: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("10.0.0.0/8")}}}
	if a := trusting.clientAddr(r); a != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("trusted proxies: client %v, want 198.51.100.1 (the nearest untrusted hop)", a)
	}
	if _, host := trusting.externalOrigin(r); host != "evil.example" {
		t.Errorf("trusted proxy: host %q, want the forwarded one", host)
	}
	pinned := &Stream{cfg: config{trustedProxies: trusting.cfg.trustedProxies, tel: TelephoneOptions{PublicURL: "https://voice.example.com"}}}
	if scheme, host := pinned.externalOrigin(r); scheme != "https" || host != "voice.example.com" {
		t.Errorf("PublicURL: %s %s, want https voice.example.com", scheme, host)
	}
}

// TestInputAheadNoBankedIdle: idle time is not banked as credit: one frame, a pause, then a
// burst is still held to maxInputAhead (the bound counted from the first frame once let a
// client idle 20 s and then push 20 s of audio in 4 ms).
func TestInputAheadNoBankedIdle(t *testing.T) {
	t.Parallel()
	var got atomic.Int64
	f := AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) {
		got.Add(int64(len(in.Samples)))
		return AudioFrame{}, nil
	})
	_, srv := newTestStream(t, f, Audio, Send)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "idle-burst", "format": map[string]any{"encoding": "pcm_s16le", "sample_rate": 16000}})
	c.pingPong()
	c.send(map[string]any{"event": "media", "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(make([]byte, 640))}})
	c.pingPong()
	time.Sleep(3 * time.Second) // idle: this is what must not turn into credit
	got.Store(0)
	c.send(map[string]any{"event": "media", "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(make([]byte, 2*16000*6))}})
	c.waitType("warning", 5*time.Second)
	c.pingPong()
	if sec := float64(got.Load()) / 48000; sec > maxInputAhead.Seconds()+0.3 {
		t.Errorf("after 3 s idle, a 6 s burst gave the handler %.1f s; at most %.1f s may run ahead", sec, maxInputAhead.Seconds())
	}
}

// TestOnInputSerialized: WithOnInput's calls for one session never overlap; posts made while
// one runs are coalesced (2,000 posts once started 1,999 hooks at once).
func TestOnInputSerialized(t *testing.T) {
	t.Parallel()
	var running, most, calls atomic.Int64
	release := make(chan struct{})
	var seen sync.Map
	_, srv := newTestStream(t, AudioFunc(func(_ *Session, in AudioFrame) (AudioFrame, error) { return in, nil }),
		Audio, SendReceive, WithInputs(Number("n", 0), Text("s", "")),
		WithOnInput(func(_ *Session, names []string) {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			calls.Add(1)
			for _, name := range names {
				seen.Store(name, true)
			}
			<-release
		}))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	post := func(body map[string]any) {
		body["webrtc_id"] = c.id
		if r := postJSON(t, srv.URL+"/input_hook", body); r.status != http.StatusOK {
			t.Fatalf("input_hook: %d %s", r.status, r.body)
		}
	}
	post(map[string]any{"n": 0})
	waitFor(t, 5*time.Second, func() bool { return calls.Load() == 1 })
	for i := range 200 {
		post(map[string]any{"n": i})
	}
	post(map[string]any{"s": "x"})
	// Process-wide, but no other parallel test has an input hook (WithOnInput).
	if n := goroutinesIn("fastrtc.(*Session).runInputHook"); n > 1 {
		t.Fatalf("%d hook goroutines while one runs", n)
	}
	close(release)
	waitFor(t, 5*time.Second, func() bool { return running.Load() == 0 && calls.Load() == 2 })
	if m := most.Load(); m != 1 {
		t.Fatalf("%d hooks ran at once, want 1", m)
	}
	if _, ok := seen.Load("s"); !ok {
		t.Fatal("the coalesced call did not name s")
	}
}

// TestTextInputBounded: a text input longer than DefaultTextInputBytes (or its MaxBytes) is
// refused with 400 naming the field; a shorter one is taken.
func TestTextInputBounded(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, AudioFunc(func(_ *Session, in AudioFrame) (AudioFrame, error) { return in, nil }),
		Audio, SendReceive, WithInputs(Text("prompt", ""), Text("short", "").WithMaxBytes(10)))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	for _, tc := range []struct {
		field string
		n     int
		want  int
	}{{"prompt", DefaultTextInputBytes, 200}, {"prompt", 96 << 10, 400}, {"short", 10, 200}, {"short", 11, 400}} {
		r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, tc.field: strings.Repeat("a", tc.n)})
		if r.status != tc.want || tc.want == 400 && r.json["field"] != tc.field {
			t.Errorf("%s of %d bytes: %d %s, want %d", tc.field, tc.n, r.status, r.body, tc.want)
		}
	}
	if got := s.mustSession(t, c.id).Inputs().Text("short"); got != strings.Repeat("a", 10) {
		t.Errorf("short = %q", got)
	}
}

// TestPendingPerClientIPv6: one IPv6 client is its /64 (it has that many addresses), and a
// released slot comes back.
func TestPendingPerClientIPv6(t *testing.T) {
	t.Parallel()
	s := &Stream{cfg: config{pendingLimit: 64, pendingPerSrc: 2}}
	var releases []func()
	for i := 1; i <= 2; i++ {
		rel, err := s.takePending(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, rel)
	}
	if _, err := s.takePending(netip.MustParseAddr("2001:db8:1:2:ffff::1")); err == nil {
		t.Fatal("a third address of the same /64 got a pending slot")
	}
	if rel, err := s.takePending(netip.MustParseAddr("2001:db8:1:3::1")); err != nil {
		t.Fatalf("another /64: %v", err)
	} else {
		rel()
	}
	releases[0]()
	releases[0]() // idempotent
	if _, err := s.takePending(netip.MustParseAddr("2001:db8:1:2::9")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if s.pending != 2 {
		t.Fatalf("pending %d, want 2", s.pending)
	}
	// RFC 7239's quoted, bracketed IPv6 form names the client.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.2:5000"
	r.Header.Set("Forwarded", `for="[2001:db8:cafe::17]:4711"`)
	ps := &Stream{cfg: config{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	if a := ps.clientAddr(r); a != netip.MustParseAddr("2001:db8:cafe::17") {
		t.Fatalf("Forwarded for=\"[v6]:port\": client %v", a)
	}
}
