package fastrtc

import (
	"context"
	"image"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc/client"
)

// bearer is the examples' kind of AuthFunc: "Authorization: Bearer <user>-token" is user.
func bearer(r *http.Request, route, id string) (string, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", ErrUnauthorized
	}
	user, ok := strings.CutSuffix(tok, "-token")
	if !ok || user == "" {
		return "", ErrForbidden
	}
	return user, nil
}

// TestAuth: with WithAuth, every route refuses a request without credentials (401) or with
// bad ones (403) in the protocol's failure shape; a session belongs to the identity that
// opened it (another identity's inputs, outputs, stats and candidates get 403), and the
// handler sees its identity.
func TestAuth(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 1)
	s, srv := newTestStream(t, VideoFunc(func(sess *Session, f *VideoFrame) (image.Image, error) {
		select {
		case seen <- sess.Identity():
		default:
		}
		return flipHandler(sess, f)
	}), Video, SendReceive, WithAuth(bearer), WithInputs(Number("n", 0)))
	do := func(method, path, who string, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if who != "" {
			req.Header.Set("Authorization", "Bearer "+who)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, res.Body)
		return res.StatusCode, b.String()
	}
	for _, route := range []struct{ method, path, body string }{
		{"GET", "/webrtc/config", ""},
		{"POST", "/webrtc/offer", `{"type":"offer","sdp":"v=0","webrtc_id":"x1"}`},
		{"POST", "/input_hook", `{"webrtc_id":"x1","n":1}`},
		{"GET", "/outputs?webrtc_id=x1", ""},
		{"GET", "/stats?webrtc_id=x1", ""},
	} {
		if code, body := do(route.method, route.path, "", route.body); code != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) {
			t.Errorf("%s %s without credentials: %d %s, want 401", route.method, route.path, code, body)
		}
		if code, body := do(route.method, route.path, "garbage", route.body); code != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("%s %s with bad credentials: %d %s, want 403", route.method, route.path, code, body)
		}
	}
	_, asrv := newTestStream(t, echoFactory(), Audio, SendReceive, WithAuth(bearer))
	for _, route := range []string{"/websocket/offer", "/telephone/handler"} {
		_, res, err := websocket.DefaultDialer.Dial(wsURL(asrv, route), nil)
		if res != nil {
			res.Body.Close()
		}
		if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s handshake without credentials: %v, want 401", route, err)
		}
		c, res, err := websocket.DefaultDialer.Dial(wsURL(asrv, route), http.Header{"Authorization": {"Bearer carol-token"}})
		if res != nil {
			res.Body.Close()
		}
		if err != nil {
			t.Errorf("%s handshake with credentials: %v", route, err)
		} else {
			c.Close()
		}
	}
	// Alice opens a session with her token; the handler sees her.
	hdr := http.Header{"Authorization": {"Bearer alice-token"}}
	c, err := client.Dial(context.Background(), srv.URL, &client.Options{ID: "alice-1", SendVideo: true, ReceiveVideo: true,
		SettingEngine: loopbackOnly, Header: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flipRoundTrip(t, c)
	select {
	case who := <-seen:
		if who != "alice" {
			t.Fatalf("handler saw identity %q, want alice", who)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never ran")
	}
	// Bob may not touch her session (it is unknown to him: no id probing); she may.
	for _, route := range []struct{ method, path, body string }{
		{"POST", "/input_hook", `{"webrtc_id":"alice-1","n":1}`},
		{"GET", "/stats?webrtc_id=alice-1", ""},
		{"GET", "/outputs?webrtc_id=alice-1", ""},
		{"POST", "/webrtc/offer", `{"type":"ice-candidate","webrtc_id":"alice-1","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`},
	} {
		code, body := do(route.method, route.path, "bob-token", route.body)
		if !(code == http.StatusNotFound || code == http.StatusOK && strings.Contains(body, "unknown_connection")) {
			t.Errorf("bob: %s %s: %d %s, want unknown connection", route.method, route.path, code, body)
		}
	}
	if code, body := do("POST", "/input_hook", "alice-token", `{"webrtc_id":"alice-1","n":1}`); code != http.StatusOK {
		t.Errorf("alice's own input: %d %s", code, body)
	}
	if code, _ := do("GET", "/stats?webrtc_id=alice-1", "alice-token", ""); code != http.StatusOK {
		t.Errorf("alice's own stats: %d", code)
	}
	if got := s.Stats().Refusals["unauthorized"]; got < 10 {
		t.Errorf("unauthorized refusals %d", got)
	}
}
