package turncred

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// cloudflare answers as Cloudflare's documented generate-ice-servers endpoint does.
func cloudflare(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/turn/keys/key1/credentials/generate-ice-servers" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"message":"invalid token"}]}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"ttl":600}` {
			t.Errorf("body %s", b)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"iceServers":[{"urls":["stun:stun.cloudflare.com:3478","stun:stun.cloudflare.com:53"]},`+
			`{"urls":["turn:turn.cloudflare.com:3478?transport=udp","turns:turn.cloudflare.com:443?transport=tcp"],"username":"u1","credential":"c1"}]}`)
	}))
}

func TestCloudflare(t *testing.T) {
	srv := cloudflare(t)
	defer srv.Close()
	s, err := Cloudflare{KeyID: "key1", APIToken: "tok", TTL: 10 * time.Minute, BaseURL: srv.URL}.ICEServers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || len(s[1].URLs) != 2 || s[1].Username != "u1" || s[1].Credential != "c1" || s[0].URLs[1] != "stun:stun.cloudflare.com:53" {
		t.Fatalf("servers %+v", s)
	}
	_, err = Cloudflare{KeyID: "key1", APIToken: "bad", TTL: 10 * time.Minute, BaseURL: srv.URL}.ICEServers(context.Background())
	if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := (Cloudflare{}).ICEServers(context.Background()); err == nil {
		t.Fatal("empty config accepted")
	}
}

func TestTwilio(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		if r.URL.Path != "/2010-04-01/Accounts/AC1/Tokens.json" || user != "AC1" || pass != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":20003,"message":"Authenticate","status":401}`)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("Ttl") != "3600" {
			t.Errorf("form %v (%v)", r.PostForm, err)
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"account_sid":"AC1","date_created":"Wed, 02 Dec 2026 00:00:00 +0000","password":"pw","ttl":"3600","username":"un",`+
			`"ice_servers":[{"url":"stun:global.stun.twilio.com:3478","urls":"stun:global.stun.twilio.com:3478"},`+
			`{"url":"turn:global.turn.twilio.com:3478?transport=udp","username":"un","urls":"turn:global.turn.twilio.com:3478?transport=udp","credential":"pw"}]}`)
	}))
	defer srv.Close()
	s, err := Twilio{AccountSID: "AC1", AuthToken: "secret", BaseURL: srv.URL}.ICEServers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[1].URLs[0] != "turn:global.turn.twilio.com:3478?transport=udp" || s[1].Username != "un" || s[1].Credential != "pw" {
		t.Fatalf("servers %+v", s)
	}
	_, err = Twilio{AccountSID: "AC1", AuthToken: "wrong", BaseURL: srv.URL}.ICEServers(context.Background())
	if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad token: %v", err)
	}
}

// TestConfiguration: the adapter gives a Stream's route fresh credentials per request.
func TestConfiguration(t *testing.T) {
	srv := cloudflare(t)
	defer srv.Close()
	fn := Configuration(Cloudflare{KeyID: "key1", APIToken: "tok", TTL: 10 * time.Minute, BaseURL: srv.URL})
	cfg, err := fn(httptest.NewRequest(http.MethodGet, "/webrtc/config", nil))
	if err != nil || len(cfg.ICEServers) != 2 {
		t.Fatalf("%+v %v", cfg, err)
	}
}

// countingProvider counts its calls and can fail.
type countingProvider struct {
	calls atomic.Int64
	fail  atomic.Bool
}

func (p *countingProvider) ICEServers(context.Context) ([]webrtc.ICEServer, error) {
	p.calls.Add(1)
	if p.fail.Load() {
		return nil, errors.New("service down: account AC123")
	}
	return []webrtc.ICEServer{{URLs: []string{"turn:example.com"}, Username: fmt.Sprint(p.calls.Load())}}, nil
}
func (p *countingProvider) Lifetime() time.Duration { return 200 * time.Millisecond }

// TestCached: the public config route asks the paid service once per half lifetime, and an
// error is not cached.
func TestCached(t *testing.T) {
	p := &countingProvider{}
	c := Cached(p, 0)
	c.(*cached).failFor = 50 * time.Millisecond
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := c.ICEServers(context.Background()); err != nil || len(s) != 1 {
				t.Errorf("%v %v", s, err)
			}
		}()
	}
	wg.Wait()
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("50 requests called the service %d times, want 1", n)
	}
	time.Sleep(150 * time.Millisecond) // past half the lifetime
	p.fail.Store(true)
	if _, err := c.ICEServers(context.Background()); err == nil {
		t.Fatal("an expired entry served while the service fails")
	}
	if _, err := c.ICEServers(context.Background()); err == nil || p.calls.Load() != 2 {
		t.Fatalf("a failure is remembered: %v, %d calls", err, p.calls.Load())
	}
	p.fail.Store(false)
	time.Sleep(60 * time.Millisecond)
	if s, err := c.ICEServers(context.Background()); err != nil || s[0].Username != "3" {
		t.Fatalf("after the failure: %v %v, want a fresh credential", s, err)
	}
}
