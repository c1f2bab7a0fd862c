package fastrtc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"image"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// pageConfig fetches the page from h at path and returns its body and injected config.
func pageConfig(t *testing.T, h http.Handler, path string) (string, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q", ct)
	}
	body := rec.Body.String()
	if strings.Contains(body, "/*FASTRTC_CONFIG*/null") {
		t.Fatal("config placeholder not replaced")
	}
	m := regexp.MustCompile(`window\.FASTRTC_CONFIG = (.*);\n`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no window.FASTRTC_CONFIG in the page")
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, m[1])
	}
	return body, cfg
}

func TestUIInjectsConfig(t *testing.T) {
	t.Parallel()
	s, err := New(VideoFunc(echoHandler), Video, SendReceive,
		WithTitle("Detect", "Objects, live"),
		WithPathPrefix("/cam"),
		WithInputs(Slider("conf_threshold", 0, 1, 0.01, 0.3).WithLabel("Confidence"),
			Dropdown("model", []string{"small", "large"}, "small"), Checkbox("boxes", true),
			Text("prompt", "cat"), Number("k", 3).WithRange(1, 10)),
		WithOutputs(Output{Name: "count", Label: "Detections"}),
		WithICEServers(webrtc.ICEServer{URLs: []string{"stun:stun.example.org:3478"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, cfg := pageConfig(t, s.Handler(), "/cam/")
	want := map[string]any{"title": "Detect", "subtitle": "Objects, live", "modality": "video", "mode": "send-receive",
		"prefix": "/cam", "pause_detection": false}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("config %s = %v, want %v", k, cfg[k], v)
		}
	}
	inputs, _ := cfg["inputs"].([]any)
	if len(inputs) != 5 {
		t.Fatalf("inputs = %v", cfg["inputs"])
	}
	slider := inputs[0].(map[string]any)
	if slider["name"] != "conf_threshold" || slider["kind"] != "slider" || slider["label"] != "Confidence" ||
		slider["min"] != 0.0 || slider["max"] != 1.0 || slider["step"] != 0.01 || slider["default"] != 0.3 {
		t.Errorf("slider = %v", slider)
	}
	if dd := inputs[1].(map[string]any); dd["kind"] != "dropdown" || len(dd["choices"].([]any)) != 2 || dd["default"] != "small" {
		t.Errorf("dropdown = %v", dd)
	}
	if cb := inputs[2].(map[string]any); cb["kind"] != "checkbox" || cb["default"] != true {
		t.Errorf("checkbox = %v", cb)
	}
	if n := inputs[4].(map[string]any); n["kind"] != "number" || n["min"] != 1.0 || n["max"] != 10.0 {
		t.Errorf("number = %v", n)
	}
	outs, _ := cfg["outputs"].([]any)
	if len(outs) != 1 || outs[0].(map[string]any)["label"] != "Detections" {
		t.Errorf("outputs = %v", cfg["outputs"])
	}
	ice, _ := cfg["ice_servers"].([]any)
	if len(ice) != 1 || !strings.Contains(string(mustJSON(t, ice[0])), "stun:stun.example.org:3478") {
		t.Errorf("ice_servers = %v", cfg["ice_servers"])
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUIDefaultsAndAudioConfig(t *testing.T) {
	t.Parallel()
	s, err := New(&AudioAgent{NewHandler: echoFactory(), TurnTaking: true}, Audio, SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, cfg := pageConfig(t, s.UI(), "/")
	if cfg["title"] != "fastrtc" || cfg["modality"] != "audio" || cfg["pause_detection"] != true || cfg["prefix"] != "" {
		t.Errorf("config = %v", cfg)
	}
	if in, ok := cfg["inputs"].([]any); !ok || len(in) != 0 {
		t.Errorf("inputs = %#v, want []", cfg["inputs"])
	}
	if out, ok := cfg["outputs"].([]any); !ok || len(out) != 0 {
		t.Errorf("outputs = %#v, want []", cfg["outputs"])
	}
	// A voice agent's microphone: echo cancellation, noise suppression, gain control on.
	ac, _ := cfg["audio_constraints"].(map[string]any)
	for _, k := range []string{"echoCancellation", "noiseSuppression", "autoGainControl"} {
		if ac[k] != true {
			t.Errorf("voice stream: audio constraint %s = %v, want true", k, ac[k])
		}
	}
}

// TestUITrackConstraints: a plain audio stream keeps the microphone's processing off;
// WithTrackConstraints replaces the constraints; values JSON cannot carry are refused.
func TestUITrackConstraints(t *testing.T) {
	t.Parallel()
	s, err := New(echoFactory(), Audio, SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, cfg := pageConfig(t, s.UI(), "/")
	if ac, _ := cfg["audio_constraints"].(map[string]any); ac["echoCancellation"] != false || ac["channelCount"] != 1.0 {
		t.Errorf("echo stream constraints %v, want processing off", ac)
	}
	s2, err := New(echoFactory(), Audio, SendReceive, WithTrackConstraints(TrackConstraints{
		Audio: map[string]any{"echoCancellation": true, "sampleRate": 16000},
		Video: map[string]any{"width": map[string]any{"ideal": 1280}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_, cfg = pageConfig(t, s2.UI(), "/")
	ac, _ := cfg["audio_constraints"].(map[string]any)
	vc, _ := cfg["video_constraints"].(map[string]any)
	if ac["echoCancellation"] != true || ac["sampleRate"] != 16000.0 || ac["noiseSuppression"] != nil || vc["width"] == nil {
		t.Errorf("constraints %v %v, want the given ones", ac, vc)
	}
	_, err = New(echoFactory(), Audio, SendReceive, WithTrackConstraints(TrackConstraints{Audio: map[string]any{"bad": func() {}}}))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unencodable constraint: %v, want ErrInvalidConfig", err)
	}
}

// A title cannot end the page's script element or inject markup.
func TestUIEscapesConfig(t *testing.T) {
	t.Parallel()
	evil := `</script><script>alert("x")</script><!--`
	s, err := New(VideoFunc(echoHandler), Video, SendReceive, WithTitle(evil, "a & b <i>"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body, cfg := pageConfig(t, s.UI(), "/")
	if strings.Contains(body, `<script>alert`) || strings.Contains(body, `<!--`) {
		t.Error("title escaped the script element")
	}
	if cfg["title"] != evil || cfg["subtitle"] != "a & b <i>" {
		t.Errorf("title round trip: %q %q", cfg["title"], cfg["subtitle"])
	}
}

func TestUIOffAndMethods(t *testing.T) {
	t.Parallel()
	s, err := New(VideoFunc(echoHandler), Video, SendReceive, WithoutUI())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	for _, path := range []string{"/", "/index.html"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("WithoutUI: GET %s = %d, want 404", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	s.UI().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("WithoutUI: UI() = %d, want 404", rec.Code)
	}
	// The routes are still there.
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/webrtc/offer", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("WithoutUI: POST /webrtc/offer {} = %d, want 422", rec.Code)
	}

	on, err := New(VideoFunc(echoHandler), Video, SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	rec = httptest.NewRecorder()
	on.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST / = %d (Allow %q), want 405", rec.Code, rec.Header().Get("Allow"))
	}
}

// The page is self-contained: nothing is loaded from the network at run time.
func TestUIPageSelfContained(t *testing.T) {
	t.Parallel()
	page, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		t.Fatal(err)
	}
	p := string(page)
	if n := strings.Count(p, "/*FASTRTC_CONFIG*/null"); n != 1 {
		t.Errorf("placeholder occurs %d times, want 1", n)
	}
	for _, re := range []string{`(?i)<script[^>]+src=`, `(?i)<link[^>]+href=`, `(?i)@import`, `(?i)url\(\s*['"]?https?:`, `(?i)\bimport\s*\(`, `(?i)from\s+['"]https?:`} {
		if loc := regexp.MustCompile(re).FindStringIndex(p); loc != nil {
			t.Errorf("page loads an external resource (%s): %q", re, p[loc[0]:min(len(p), loc[1]+40)])
		}
	}
	// The protocol strings the page depends on.
	for _, s := range []string{`createDataChannel("text")`, `"/webrtc/offer"`, `"/input_hook"`, `"/outputs?webrtc_id="`,
		`"output"`, "concurrency_limit_reached", "cfg.audio_constraints", "cfg.video_constraints",
		"started_talking", "pause_detected", "response_starting", "end_stream", "send_input", "msg.message || msg.data"} {
		if !strings.Contains(p, s) {
			t.Errorf("page lacks %s", s)
		}
	}
}

// captureURL is a slog handler that hands the "url" attribute of log records to a channel.
type captureURL struct{ urls chan string }

func (c captureURL) Enabled(context.Context, slog.Level) bool { return true }
func (c captureURL) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "url" {
			select {
			case c.urls <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}
func (c captureURL) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c captureURL) WithGroup(string) slog.Handler      { return c }

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	logs := captureURL{urls: make(chan string, 4)}
	s, err := New(VideoFunc(func(s *Session, f *VideoFrame) (image.Image, error) { return f.Image, s.Emit(f.Index) }),
		Video, SendReceive, WithPathPrefix("/v"), WithSettingEngine(loopbackOnly), WithLogger(slog.New(logs)),
		WithTitle("Launcher", ""))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	var url string
	select {
	case url = <-logs.urls:
	case err := <-done:
		t.Fatalf("ListenAndServe returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no URL logged")
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/v/$`).MatchString(url) {
		t.Fatalf("logged URL %q", url)
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"title":"Launcher"`) {
		t.Fatalf("GET %s: %d", url, res.StatusCode)
	}

	// A live session with an open /outputs stream must not hold up the shutdown.
	base := strings.TrimSuffix(url, "/")
	c := newTestClient(t, base, clientOpts{sendVideo: true, recvVideo: true})
	t0 := time.Now()
	c.connect()
	t.Logf("connected in %v", time.Since(t0))
	sse, err := http.Get(base + "/outputs?webrtc_id=" + c.id)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	if sse.StatusCode != http.StatusOK {
		t.Fatalf("outputs: %d", sse.StatusCode)
	}
	sseDone := make(chan struct{})
	go func(body io.Reader) { _, _ = io.Copy(io.Discard, bufio.NewReader(body)); close(sseDone) }(sse.Body)

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe after cancel: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("ListenAndServe did not return after ctx was done")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	select {
	case <-sseDone:
	case <-time.After(3 * time.Second):
		t.Error("the /outputs stream did not end")
	}
	if st := s.Stats(); st.Sessions != 0 || st.CodecContexts != 0 {
		t.Errorf("after shutdown: %+v", st)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/v/"), "http://"), time.Second); err == nil {
		t.Error("still listening after shutdown")
	}
}

func TestListenAndServeBadAddr(t *testing.T) {
	t.Parallel()
	s, err := New(VideoFunc(echoHandler), Video, SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.ListenAndServe(context.Background(), "127.0.0.1:-1"); err == nil {
		t.Fatal("ListenAndServe on a bad address returned nil")
	}
}

func TestPageURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ addr, prefix, want string }{
		{"127.0.0.1:8000", "", "http://127.0.0.1:8000/"},
		{"0.0.0.0:8000", "/cam", "http://127.0.0.1:8000/cam/"},
		{"[::]:9000", "", "http://127.0.0.1:9000/"},
		{"[::1]:9000", "", "http://[::1]:9000/"},
		{"192.168.1.5:80", "", "http://192.168.1.5:80/"},
	} {
		a, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := pageURL(a, c.prefix); got != c.want {
			t.Errorf("pageURL(%s, %q) = %q, want %q", c.addr, c.prefix, got, c.want)
		}
	}
}

// TestSecurityHeaders: the page may not be framed by other sites, and no answer is sniffed.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	page := httptest.NewServer(s.UI())
	defer page.Close()
	res, err := http.Get(page.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") || res.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("page: CSP %q, X-Frame-Options %q", csp, res.Header.Get("X-Frame-Options"))
	}
	for _, u := range []string{page.URL, srv.URL + "/webrtc/config", srv.URL + "/stats?webrtc_id=nobody"} {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", u)
		}
	}
}
