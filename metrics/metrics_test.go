package metrics_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/loadgen"
	"github.com/fastrtc-go/fastrtc/media"
	"github.com/fastrtc-go/fastrtc/metrics"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }))
}

// scrape parses the Prometheus text of h.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the sample of family name whose labels include want (a histogram's count).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s with labels %v", name, want)
	return 0
}

// TestMetrics: a live WebRTC audio session and a refused one, as Prometheus sees them.
func TestMetrics(t *testing.T) {
	s, err := fastrtc.New(fastrtc.AudioFunc(func(_ *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil }),
		fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithSettingEngine(loadgen.Loopback), fastrtc.WithConcurrencyLimit(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux := http.NewServeMux()
	s.Mount(mux)
	h := metrics.Handler("echo", s)
	mux.Handle("/metrics", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL, &client.Options{ID: "m1", SendAudio: true, ReceiveAudio: true, SettingEngine: loadgen.Loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One second of tone, paced; then read some back.
	pcm := make([]int16, 960)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for k := 0; k < 50; k++ {
		for j := range pcm {
			pcm[j] = int16(8000 * math.Sin(2*math.Pi*440*float64(k*960+j)/48000))
		}
		if err := c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm}); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	for i := 0; i < 10; i++ {
		if _, err := c.ReadAudio(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A second client over the limit of 1.
	if _, err := client.Dial(ctx, srv.URL, &client.Options{ID: "m2", SendAudio: true, SettingEngine: loadgen.Loopback}); err == nil {
		t.Fatal("a second session over the limit of 1 connected")
	}
	fams := scrape(t, h)
	base := map[string]string{"node": "local", "stream": "echo", "modality": "audio"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for a, b := range base {
			m[a] = b
		}
		return m
	}
	if v := value(t, fams, "fastrtc_sessions", with("transport", "webrtc")); v != 1 {
		t.Errorf("live webrtc sessions %v, want 1", v)
	}
	if v := value(t, fams, "fastrtc_session_requests_total", with("transport", "webrtc")); v != 2 {
		t.Errorf("webrtc requests %v, want 2", v)
	}
	if v := value(t, fams, "fastrtc_refusals_total", with("reason", "node_limit")); v != 1 {
		t.Errorf("node_limit refusals %v, want 1", v)
	}
	if v := value(t, fams, "fastrtc_audio_seconds_total", with("direction", "in")); v < 0.5 || v > 1.2 {
		t.Errorf("audio in %v s after sending 1 s", v)
	}
	if v := value(t, fams, "fastrtc_audio_seconds_total", with("direction", "out")); v <= 0 {
		t.Errorf("audio out %v s", v)
	}
	if v := value(t, fams, "fastrtc_codec_seconds", map[string]string{"codec": "opus", "op": "decode"}); v < 25 {
		t.Errorf("%v Opus decodes timed after 50 packets", v)
	}
	if v := value(t, fams, "fastrtc_codec_seconds", map[string]string{"codec": "opus", "op": "encode"}); v < 5 {
		t.Errorf("%v Opus encodes timed", v)
	}
	if v := value(t, fams, "fastrtc_handler_seconds", with("kind", "audio")); v < 25 {
		t.Errorf("%v audio handler calls timed", v)
	}
	for _, ph := range []string{"gathering", "connect"} {
		if v := value(t, fams, "fastrtc_ice_seconds", with("phase", ph)); v != 1 {
			t.Errorf("ICE %s observed %v times, want 1", ph, v)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// The session's own figures, as /stats gives them (the built-in page shows them).
	res, err := http.Get(srv.URL + "/stats?webrtc_id=m1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info struct { // GET /stats: {"id", "node", "stats": SessionStats}
		ID    string
		Stats fastrtc.SessionStats
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil || info.ID != "m1" || info.Stats.Transport != "webrtc" || info.Stats.AudioIn < 500*time.Millisecond || info.Stats.PacketsIn < 40 || info.Stats.BitrateIn <= 0 {
		t.Errorf("/stats: %+v %v", info, err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Sessions > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	fams = scrape(t, h)
	if v := value(t, fams, "fastrtc_sessions", with("transport", "webrtc")); v != 0 {
		t.Errorf("live sessions %v after the end", v)
	}
	if v := value(t, fams, "fastrtc_audio_seconds_total", with("direction", "in")); v < 0.5 {
		t.Errorf("audio in %v s after the session ended: the ended session's counts were lost", v)
	}
}
