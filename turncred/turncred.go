// Package turncred gets short-lived TURN credentials from the hosted TURN services FastRTC
// users use, Cloudflare Realtime (Calls) TURN and Twilio Network Traversal, for a Stream's
// GET /webrtc/config:
//
//	cf := turncred.Cloudflare{KeyID: os.Getenv("TURN_KEY_ID"), APIToken: os.Getenv("TURN_KEY_API_TOKEN")}
//	stream, err := fastrtc.New(handler, fastrtc.Audio, fastrtc.SendReceive,
//		fastrtc.WithRTCConfiguration(turncred.Configuration(cf)))
//
// Each request to the route asks the service for fresh credentials. The services are not
// reachable from this project's test machines: the tests run against local servers that
// answer as the services' documented APIs do.
package turncred

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc"
)

// Provider is a source of ICE servers with fresh credentials. Its methods are safe for
// concurrent use.
type Provider interface {
	ICEServers(ctx context.Context) ([]webrtc.ICEServer, error)
}

// Configuration adapts p to fastrtc.WithRTCConfiguration, through Cached: the public config
// route calls the (paid) service at most once per half of the credentials' lifetime.
func Configuration(p Provider) func(r *http.Request) (fastrtc.RTCConfiguration, error) {
	c := Cached(p, 0)
	return func(r *http.Request) (fastrtc.RTCConfiguration, error) {
		s, err := c.ICEServers(r.Context())
		return fastrtc.RTCConfiguration{ICEServers: s}, err
	}
}

// Lifetimer is a Provider whose credentials live a known time.
type Lifetimer interface {
	Lifetime() time.Duration
}

// Cached returns a Provider that asks p again only every `every` (0: half of p's Lifetime,
// or 30 min): credentials handed out are then valid for at least the other half. Callers
// that arrive while p is being asked wait for that answer (each as long as its context
// lets it); a failure is remembered for a second, so that an outage does not become one
// paid request per page load. p is asked with a 10 s bound, whatever the callers'
// contexts. Safe for concurrent use.
func Cached(p Provider, every time.Duration) Provider {
	if every <= 0 {
		every = 30 * time.Minute
		if l, ok := p.(Lifetimer); ok && l.Lifetime() > 0 {
			every = l.Lifetime() / 2
		}
	}
	return &cached{p: p, every: every, failFor: time.Second}
}

type cached struct {
	p       Provider
	every   time.Duration
	failFor time.Duration
	mu      sync.Mutex
	at      time.Time
	val     []webrtc.ICEServer
	errAt   time.Time
	err     error
	pending chan struct{} // closed when the request in flight ends; nil when none
}

func (c *cached) ICEServers(ctx context.Context) ([]webrtc.ICEServer, error) {
	for {
		c.mu.Lock()
		switch {
		case c.val != nil && time.Since(c.at) < c.every:
			v := slices.Clone(c.val)
			c.mu.Unlock()
			return v, nil
		case c.err != nil && time.Since(c.errAt) < c.failFor:
			err := c.err
			c.mu.Unlock()
			return nil, err
		case c.pending == nil:
			done := make(chan struct{})
			c.pending = done
			c.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			v, err := c.p.ICEServers(rctx)
			cancel()
			c.mu.Lock()
			if err == nil {
				c.val, c.at, c.err = v, time.Now(), nil
			} else {
				c.err, c.errAt = err, time.Now()
			}
			c.pending = nil
			close(done)
			c.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return slices.Clone(v), nil
		}
		done := c.pending
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrService wraps an error answer of a TURN service.
var ErrService = errors.New("turncred: the TURN service refused")

// Cloudflare asks Cloudflare Realtime TURN for credentials: POST
// {BaseURL}/v1/turn/keys/{KeyID}/credentials/generate-ice-servers with the key's API token
// as a bearer token and {"ttl": seconds}; the 201 answer is {"iceServers": [...]}.
type Cloudflare struct {
	KeyID    string        // the TURN key's id
	APIToken string        // the TURN key's API token (keep it server-side)
	TTL      time.Duration // credential lifetime (default 1 h)
	BaseURL  string        // default https://rtc.live.cloudflare.com
	Client   *http.Client  // default http.DefaultClient
}

// Lifetime returns the credentials' lifetime.
func (c Cloudflare) Lifetime() time.Duration { return ttl(c.TTL) }

// ICEServers implements Provider.
func (c Cloudflare) ICEServers(ctx context.Context) ([]webrtc.ICEServer, error) {
	if c.KeyID == "" || c.APIToken == "" {
		return nil, errors.New("turncred: Cloudflare: KeyID and APIToken are required")
	}
	base := strings.TrimRight(orDefault(c.BaseURL, "https://rtc.live.cloudflare.com"), "/")
	body := fmt.Sprintf(`{"ttl":%d}`, int(ttl(c.TTL).Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/v1/turn/keys/"+url.PathEscape(c.KeyID)+"/credentials/generate-ice-servers", strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("turncred: Cloudflare: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.APIToken)
	req.Header.Set("Content-Type", "application/json")
	var out struct {
		ICEServers []struct {
			URLs       urls   `json:"urls"`
			Username   string `json:"username"`
			Credential string `json:"credential"`
		} `json:"iceServers"`
	}
	if err := do(c.Client, req, "Cloudflare", &out); err != nil {
		return nil, err
	}
	servers := make([]webrtc.ICEServer, 0, len(out.ICEServers))
	for _, s := range out.ICEServers {
		servers = append(servers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: Cloudflare: no iceServers in the answer", ErrService)
	}
	return servers, nil
}

// Twilio asks Twilio Network Traversal for a token: POST
// {BaseURL}/2010-04-01/Accounts/{AccountSID}/Tokens.json with HTTP basic auth (account SID
// and auth token, or an API key SID and secret) and the form value Ttl; the 201 answer
// carries "ice_servers".
type Twilio struct {
	AccountSID string
	AuthToken  string
	TTL        time.Duration // credential lifetime (default 1 h)
	BaseURL    string        // default https://api.twilio.com
	Client     *http.Client  // default http.DefaultClient
	// KeySID, if set, authenticates with an API key (KeySID and AuthToken as its secret)
	// instead of the account's own credentials.
	KeySID string
}

// Lifetime returns the credentials' lifetime.
func (t Twilio) Lifetime() time.Duration { return ttl(t.TTL) }

// ICEServers implements Provider.
func (t Twilio) ICEServers(ctx context.Context) ([]webrtc.ICEServer, error) {
	if t.AccountSID == "" || t.AuthToken == "" {
		return nil, errors.New("turncred: Twilio: AccountSID and AuthToken are required")
	}
	base := strings.TrimRight(orDefault(t.BaseURL, "https://api.twilio.com"), "/")
	form := url.Values{"Ttl": {strconv.Itoa(int(ttl(t.TTL).Seconds()))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/2010-04-01/Accounts/"+url.PathEscape(t.AccountSID)+"/Tokens.json", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("turncred: Twilio: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(orDefault(t.KeySID, t.AccountSID), t.AuthToken)
	var out struct {
		ICEServers []struct {
			URLs       urls   `json:"urls"`
			URL        string `json:"url"`
			Username   string `json:"username"`
			Credential string `json:"credential"`
		} `json:"ice_servers"`
	}
	if err := do(t.Client, req, "Twilio", &out); err != nil {
		return nil, err
	}
	servers := make([]webrtc.ICEServer, 0, len(out.ICEServers))
	for _, s := range out.ICEServers {
		u := []string(s.URLs)
		if len(u) == 0 && s.URL != "" {
			u = []string{s.URL}
		}
		servers = append(servers, webrtc.ICEServer{URLs: u, Username: s.Username, Credential: s.Credential})
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: Twilio: no ice_servers in the answer", ErrService)
	}
	return servers, nil
}

// urls decodes a "urls" field that is a string or a list of strings.
type urls []string

func (u *urls) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*u = urls{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("urls: want a string or a list of strings: %w", err)
	}
	*u = many
	return nil
}

func do(c *http.Client, req *http.Request, service string, out any) error {
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("turncred: %s: %w", service, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("turncred: %s: %w", service, err)
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrService, service, res.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("turncred: %s: the answer is not the documented JSON: %w", service, err)
	}
	return nil
}

func ttl(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Hour
	}
	return d
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
