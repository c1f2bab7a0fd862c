package fastrtc

import (
	"context"
	"errors"
	"fmt"
	"image"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

func echoHandler(s *Session, f *VideoFrame) (image.Image, error) { return f.Image, nil }

// TestOfferFailures sends every kind of bad request while a session runs, and checks each
// reply and that the session keeps streaming.
func TestOfferFailures(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithMaxBodyBytes(64<<10),
		WithInputs(Slider("x", 0, 1, 0.1, 0.5)))
	live := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	live.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live.sendVideo(ctx, 600)
	frames := receiveVideo(t, live.remoteTrack(5*time.Second))

	offerURL := srv.URL + "/webrtc/offer"
	cases := []struct {
		name   string
		body   string
		status int
		fail   string // expected meta.error of a 200 failure
		errHas string // expected substring of {"error": ...}
	}{
		{"not json", `{"sdp": "v=0`, 400, "", "malformed JSON"},
		{"garbage", `hello`, 400, "", "malformed JSON"},
		{"trailing", `{"type":"offer","webrtc_id":"a","sdp":"x"} {}`, 400, "", "trailing"},
		{"missing type", `{"webrtc_id":"a","sdp":"v=0"}`, 422, "", "type"},
		{"missing id", `{"type":"offer","sdp":"v=0"}`, 422, "", "webrtc_id"},
		{"missing sdp", `{"type":"offer","webrtc_id":"a"}`, 422, "", "sdp"},
		{"wrong field type", `{"type":"offer","webrtc_id":5,"sdp":"v=0"}`, 422, "", "webrtc_id"},
		{"unknown type", `{"type":"pranswer","webrtc_id":"a"}`, 400, "", "unknown type"},
		{"garbage sdp", `{"type":"offer","webrtc_id":"g1","sdp":"this is not SDP"}`, 400, "", "SDP"},
		{"oversized", `{"type":"offer","webrtc_id":"a","sdp":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "", "larger than"},
		{"id with CR LF", `{"type":"offer","webrtc_id":"a\r\na=evil:1","sdp":"v=0"}`, 422, "", "webrtc_id"},
		{"id too long", `{"type":"offer","webrtc_id":"` + strings.Repeat("a", 129) + `","sdp":"v=0"}`, 422, "", "at most 128"},
		{"id with space", `{"type":"offer","webrtc_id":"a b","sdp":"v=0"}`, 422, "", "allowed"},
		{"duplicate id", `{"type":"offer","webrtc_id":"` + live.id + `","sdp":"v=0"}`, 200, "connection_already_exists", ""},
		{"candidate unknown id", `{"type":"ice-candidate","webrtc_id":"nobody","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`, 200, "unknown_connection", ""},
		{"candidate bad format", `{"type":"ice-candidate","webrtc_id":"` + live.id + `","candidate":"nope"}`, 200, "invalid_candidate_format", ""},
		{"candidate missing", `{"type":"ice-candidate","webrtc_id":"` + live.id + `"}`, 200, "invalid_candidate_format", ""},
		{"candidate garbage", `{"type":"ice-candidate","webrtc_id":"` + live.id + `","candidate":{"candidate":"candidate:garbage"}}`, 200, "invalid_candidate_format", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := postRaw(t, offerURL, "application/json", []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("HTTP %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.fail != "" {
				meta, _ := r.json["meta"].(map[string]any)
				if r.json["status"] != "failed" || meta["error"] != tc.fail {
					t.Fatalf("reply %s, want failure %s", r.body, tc.fail)
				}
			}
			if tc.errHas != "" {
				msg, _ := r.json["error"].(string)
				if !strings.Contains(msg, tc.errHas) {
					t.Fatalf("error %q does not mention %q", msg, tc.errHas)
				}
			}
		})
	}
	// Only JSON bodies: text/plain and untyped bodies are what cross-site pages can post
	// without a CORS preflight.
	good := []byte(`{"type":"offer","webrtc_id":"ct1","sdp":"v=0"}`)
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "", "application/x-www-form-urlencoded", "multipart/form-data"} {
		if r := postRaw(t, offerURL, ct, good); r.status != http.StatusUnsupportedMediaType || !strings.Contains(string(r.body), "application/json") {
			t.Errorf("Content-Type %q: %d %s, want 415 naming application/json", ct, r.status, r.body)
		}
		if r := postRaw(t, srv.URL+"/input_hook", ct, []byte(`{"webrtc_id":"`+live.id+`","x":0.2}`)); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("input_hook Content-Type %q: %d %s, want 415", ct, r.status, r.body)
		}
	}
	// GET is not allowed.
	res, err := http.Get(offerURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET offer: %d", res.StatusCode)
	}
	// Input hook failures.
	hook := srv.URL + "/input_hook"
	hookCases := []struct {
		body   string
		status int
		errHas string
	}{
		{`{"webrtc_id":"nobody","x":0.2}`, 404, "unknown connection"},
		{`{"x":0.2}`, 422, "webrtc_id"},
		{`{"webrtc_id":"` + live.id + `","x":"high"}`, 400, `"x"`},
		{`{"webrtc_id":"` + live.id + `","x":7}`, 400, "outside"},
		{`{"webrtc_id":"` + live.id + `","y":1}`, 400, "no such input"},
		{`[1,2`, 400, "malformed"},
	}
	for _, hc := range hookCases {
		r := postRaw(t, hook, "application/json", []byte(hc.body))
		msg, _ := r.json["error"].(string)
		if r.status != hc.status || !strings.Contains(msg, hc.errHas) {
			t.Errorf("input_hook %s: HTTP %d %s, want %d mentioning %s", hc.body, r.status, r.body, hc.status, hc.errHas)
		}
	}
	if r := postRaw(t, srv.URL+"/outputs?webrtc_id=x", "", nil); r.status != 405 {
		t.Errorf("POST /outputs: %d", r.status)
	}
	res, err = http.Get(srv.URL + "/outputs?webrtc_id=nobody")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("outputs of unknown id: %d", res.StatusCode)
	}
	// The live session still streams.
	drain := time.After(300 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-frames:
		case <-drain:
			done = true
		}
	}
	for i := 0; i < 15; i++ {
		select {
		case <-frames:
		case <-time.After(3 * time.Second):
			t.Fatal("the live session stopped streaming")
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	const limit = 2
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithConcurrencyLimit(limit))
	clients := make([]*testClient, limit+1)
	replies := make([]map[string]any, limit+1)
	for i := range clients {
		clients[i] = newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); replies[i] = clients[i].offer() }()
	}
	wg.Wait()
	answers, refused := 0, 0
	var refusedClient *testClient
	var answered []*testClient
	for i, r := range replies {
		switch {
		case r["type"] == "answer":
			answers++
			answered = append(answered, clients[i])
		case r["status"] == "failed":
			meta := r["meta"].(map[string]any)
			if meta["error"] != "concurrency_limit_reached" || meta["limit"] != float64(limit) {
				t.Errorf("failure %v", r)
			}
			refused++
			refusedClient = clients[i]
		}
	}
	if answers != limit || refused != 1 {
		t.Fatalf("%d answers and %d refusals, want %d and 1", answers, refused, limit)
	}
	for _, c := range answered {
		c.waitState(webrtcConnected, 10*time.Second)
	}
	// Closing one connection frees its slot at once.
	first := answered[0]
	sess := s.mustSession(t, first.id)
	_ = first.pc.Close()
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the closed connection's session did not end")
	}
	retry := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	retry.id = refusedClient.id // the refused id may try again
	retry.connect()
	if n := s.Stats().Sessions; n != limit {
		t.Errorf("%d sessions, want %d", n, limit)
	}
}

func TestTimeLimit(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithTimeLimit(time.Second))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	sess := s.mustSession(t, c.id)
	m := c.waitMsg("end_stream", 5*time.Second)
	if m["data"] == "" {
		t.Error("end_stream without a message")
	}
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session still running after its time limit")
	}
	if s.Stats().Sessions != 0 {
		t.Error("slot not freed")
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive, WithConnectTimeout(500*time.Millisecond))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	// Offer, but never apply the answer: the server never connects.
	offer, _ := c.pc.CreateOffer(nil)
	_ = c.pc.SetLocalDescription(offer)
	r := postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"sdp": offer.SDP, "type": "offer", "webrtc_id": "lonely"})
	if r.json["type"] != "answer" {
		t.Fatalf("offer: %s", r.body)
	}
	sess, err := s.Session("lonely")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("unconnected session not closed")
	}
	if sess.Err() == nil || !strings.Contains(sess.Err().Error(), "not connected") {
		t.Errorf("Err = %v", sess.Err())
	}
}

func TestMountOnChiWithPrefix(t *testing.T) {
	t.Parallel()
	s, err := New(VideoFunc(echoHandler), Video, SendReceive, WithPathPrefix("/cam/"), WithSettingEngine(loopbackOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := chi.NewRouter()
	s.Mount(r)
	srv := httptestServer(t, r)
	c := newTestClient(t, srv+"/cam", clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	res := postJSON(t, srv+"/cam/input_hook", map[string]any{"webrtc_id": c.id})
	if res.status != 200 {
		t.Errorf("input_hook under prefix: %d %s", res.status, res.body)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	src := VideoSource(func(s *Session) iter.Seq2[image.Image, error] { return func(func(image.Image, error) bool) {} })
	cases := []struct {
		name    string
		h       Handler
		mod     Modality
		mode    Mode
		opts    []Option
		mention string
	}{
		{"bad modality", VideoFunc(echoHandler), "smell", SendReceive, nil, "allowed"},
		{"bad mode", VideoFunc(echoHandler), Video, "both", nil, "allowed"},
		{"source for send-receive", src, Video, SendReceive, nil, "VideoFunc"},
		{"func for receive", VideoFunc(echoHandler), Video, Receive, nil, "VideoSource"},
		{"nil handler", nil, Video, SendReceive, nil, "nil"},
		{"nil func handler", VideoFunc(nil), Video, SendReceive, nil, "nil"},
		{"audio handler for video", AudioFunc(silentAudio), Video, Send, nil, "VideoFunc"},
		{"nil audio func", AudioFunc(nil), Audio, SendReceive, nil, "nil"},
		{"video handler for audio", VideoFunc(echoHandler), Audio, SendReceive, nil, "AudioHandlerFactory"},
		{"agent for receive", &AudioAgent{NewHandler: echoFactory()}, Audio, Receive, nil, "AudioSource"},
		{"agent without factory", &AudioAgent{}, Audio, SendReceive, nil, "nil"},
		{"agent's text input undeclared", &AudioAgent{NewHandler: echoFactory(), TextInput: "textbox"}, Audio, SendReceive, nil, "textbox"},
		{"agent's check fails", &AudioAgent{NewHandler: echoFactory(), Check: func(*Stream) error { return fmt.Errorf("%w: no model", ErrInvalidConfig) }}, Audio, SendReceive, nil, "no model"},
		{"audio-video receive", AudioVideoHandlerFactory(func() AudioVideoHandler { return nil }), AudioVideo, Receive, nil, "not receive"},
		{"bad ws message limit", AudioFunc(silentAudio), Audio, SendReceive, []Option{WithWebSocket(WebSocketOptions{MaxMessageBytes: 10})}, "WebSocket max message"},
		{"bad ws ping", AudioFunc(silentAudio), Audio, SendReceive, []Option{WithWebSocket(WebSocketOptions{PingInterval: time.Microsecond})}, "ping interval"},
		{"bad connect timeout", VideoFunc(echoHandler), Video, SendReceive, []Option{WithConnectTimeout(-time.Second)}, "connect timeout"},
		{"negative limit", VideoFunc(echoHandler), Video, SendReceive, []Option{WithConcurrencyLimit(-1)}, "concurrency"},
		{"bad default", VideoFunc(echoHandler), Video, SendReceive, []Option{WithInputs(Slider("a", 0, 1, 0.1, 3))}, "outside"},
		{"dup input", VideoFunc(echoHandler), Video, SendReceive, []Option{WithInputs(Text("a", ""), Text("a", ""))}, "twice"},
		{"bad fps", VideoFunc(echoHandler), Video, SendReceive, []Option{WithFPS(0)}, "fps"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.h, tc.mod, tc.mode, tc.opts...)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q: want ErrInvalidConfig mentioning %q", err, tc.mention)
			}
		})
	}
	// A func literal converted to the handler type is accepted (an unconverted one, or any
	// other type, does not compile: Handler is sealed).
	s, err := New(VideoFunc(func(s *Session, f *VideoFrame) (image.Image, error) { return nil, nil }), Video, Send)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// silentAudio is an AudioFunc that sends nothing back.
func silentAudio(*Session, AudioFrame) (AudioFrame, error) { return AudioFrame{}, nil }
