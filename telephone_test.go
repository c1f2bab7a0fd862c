package fastrtc

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// twiml is the TwiML of POST /telephone/incoming.
type twiml struct {
	XMLName xml.Name `xml:"Response"`
	Say     []string `xml:"Say"`
	Stream  struct {
		URL    string `xml:"url,attr"`
		Params []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"Parameter"`
	} `xml:"Connect>Stream"`
}

func incoming(t *testing.T, method, u string, hdr http.Header, host string, form url.Values) (int, string, twiml) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if host != "" {
		req.Host = host
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var tw twiml
	if res.StatusCode == http.StatusOK {
		if ct := res.Header.Get("Content-Type"); ct != "application/xml" {
			t.Errorf("Content-Type %q, want application/xml", ct)
		}
		if !strings.HasPrefix(string(b), `<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting to the AI assistant.</Say><Connect><Stream url="`) {
			t.Errorf("TwiML %s", b)
		}
		if err := xml.Unmarshal(b, &tw); err != nil {
			t.Fatalf("TwiML %s: %v", b, err)
		}
	}
	return res.StatusCode, string(b), tw
}

// TestTelephoneIncomingTwiML: the Stream URL is built from the request: host and port,
// proxy headers, scheme, mount prefix; From and To become stream parameters.
func TestTelephoneIncomingTwiML(t *testing.T) {
	t.Parallel()
	loopProxy := WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8"))
	_, srv := newTestStream(t, echoFactory(), Audio, SendReceive, loopProxy)
	_, psrv := newTestStream(t, echoFactory(), Audio, SendReceive, WithPathPrefix("/agent"), loopProxy)
	_, usrv := newTestStream(t, echoFactory(), Audio, SendReceive) // no trusted proxy
	hostport := strings.TrimPrefix(srv.URL, "http://")
	cases := []struct {
		name   string
		srv    string
		prefix string
		method string
		host   string
		hdr    http.Header
		want   string
	}{
		{"plain", srv.URL, "", "POST", "", nil, "ws://" + hostport + "/telephone/handler"},
		{"host with port", srv.URL, "", "POST", "phone.example.com:8443", nil, "ws://phone.example.com:8443/telephone/handler"},
		{"GET", srv.URL, "", "GET", "", nil, "ws://" + hostport + "/telephone/handler"},
		{"X-Forwarded", srv.URL, "", "POST", "", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"abc.ngrok.app"}},
			"wss://abc.ngrok.app/telephone/handler"},
		{"X-Forwarded lists", srv.URL, "", "POST", "", http.Header{"X-Forwarded-Proto": {"https, http"}, "X-Forwarded-Host": {"a.example:444, b.example"}},
			"wss://a.example:444/telephone/handler"},
		{"Forwarded", srv.URL, "", "POST", "", http.Header{"Forwarded": {`for=192.0.2.1;proto=https;host="phone.example.org:8443", for=10.0.0.1`}},
			"wss://phone.example.org:8443/telephone/handler"},
		{"prefix", psrv.URL, "/agent", "POST", "", http.Header{"X-Forwarded-Proto": {"https"}},
			"wss://" + strings.TrimPrefix(psrv.URL, "http://") + "/agent/telephone/handler"},
		{"untrusted X-Forwarded", usrv.URL, "", "POST", "", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"abc.ngrok.app"}},
			"ws://" + strings.TrimPrefix(usrv.URL, "http://") + "/telephone/handler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"CallSid": {"CA1"}, "From": {"+15550001"}, "To": {`+1555 & "0002" <x>`}}
			u := tc.srv + tc.prefix + "/telephone/incoming"
			if tc.method == "GET" {
				u += "?" + form.Encode()
				form = nil
			}
			status, body, tw := incoming(t, tc.method, u, tc.hdr, tc.host, form)
			if status != http.StatusOK {
				t.Fatalf("HTTP %d %s", status, body)
			}
			if tw.Stream.URL != tc.want {
				t.Errorf("Stream url %q, want %q", tw.Stream.URL, tc.want)
			}
			if len(tw.Say) != 2 || tw.Say[1] != "The call has been disconnected." {
				t.Errorf("Say %q", tw.Say)
			}
			params := map[string]string{}
			for _, p := range tw.Stream.Params {
				params[p.Name] = p.Value
			}
			if params["From"] != "+15550001" || params["To"] != `+1555 & "0002" <x>` || len(params) != 2 {
				t.Errorf("stream parameters %v", params)
			}
		})
	}
	t.Run("no parameters", func(t *testing.T) {
		_, body, _ := incoming(t, "POST", srv.URL+"/telephone/incoming", nil, "", url.Values{})
		if !strings.Contains(body, `<Stream url="ws://`+hostport+`/telephone/handler"/></Connect>`) {
			t.Errorf("TwiML %s", body)
		}
	})
	t.Run("PUT", func(t *testing.T) {
		if status, _, _ := incoming(t, "PUT", srv.URL+"/telephone/incoming", nil, "", nil); status != http.StatusMethodNotAllowed {
			t.Errorf("HTTP %d, want 405", status)
		}
	})
}

// TestTwilioSignatureVectors checks the algorithm against Twilio's published examples.
func TestTwilioSignatureVectors(t *testing.T) {
	t.Parallel()
	u := "https://mycompany.com/myapp.php?foo=1&bar=2"
	params := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"},
		"From": {"+14158675309"}, "To": {"+18005551212"}}
	if got := twilioSignature("12345", u, params); got != "RSOYDt4T1cUTdK1PDd93/VVr8B8=" {
		t.Errorf("signature %s, want RSOYDt4T1cUTdK1PDd93/VVr8B8=", got)
	}
	repeated := url.Values{"Sid": {"CA123"}, "SidAccount": {"AC123"}, "Digits": {"5678", "1234", "1234"}}
	if got := twilioSignature("12345", u, repeated); got != "IK+Dwps556ElfBT0I3Rgjkr1wJU=" {
		t.Errorf("signature with repeated parameters %s, want IK+Dwps556ElfBT0I3Rgjkr1wJU=", got)
	}
}

// TestTelephoneSignature: with an auth token, the webhook and the WebSocket handshake need a
// valid X-Twilio-Signature, checked against the URL Twilio called.
func TestTelephoneSignature(t *testing.T) {
	t.Parallel()
	const token = "tok3n"
	_, srv := newTestStream(t, echoFactory(), Audio, SendReceive, WithTelephone(TelephoneOptions{AuthToken: token}),
		WithTrustedProxies(netip.MustParsePrefix("127.0.0.1/32")))
	hostport := strings.TrimPrefix(srv.URL, "http://")
	host, _, _ := strings.Cut(hostport, ":")
	form := url.Values{"CallSid": {"CA1"}, "From": {"+15550001"}, "To": {"+15550002"}}
	proxy := http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"abc.ngrok.app"}}
	sign := func(u string, p url.Values, extra http.Header) http.Header {
		h := http.Header{"X-Twilio-Signature": {twilioSignature(token, u, p)}}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	cases := []struct {
		name string
		hdr  http.Header
		want int
	}{
		{"unsigned", nil, http.StatusForbidden},
		{"signed", sign("http://"+hostport+"/telephone/incoming", form, nil), http.StatusOK},
		{"signed without the port", sign("http://"+host+"/telephone/incoming", form, nil), http.StatusOK},
		{"behind a proxy", sign("https://abc.ngrok.app/telephone/incoming", form, proxy), http.StatusOK},
		{"behind a proxy, default port", sign("https://abc.ngrok.app:443/telephone/incoming", form, proxy), http.StatusOK},
		{"wrong token", http.Header{"X-Twilio-Signature": {twilioSignature("other", "http://"+hostport+"/telephone/incoming", form)}}, http.StatusForbidden},
		{"other parameters", sign("http://"+hostport+"/telephone/incoming", url.Values{"CallSid": {"CA2"}}, nil), http.StatusForbidden},
		{"other URL", sign("http://"+hostport+"/elsewhere", form, nil), http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if status, body, _ := incoming(t, "POST", srv.URL+"/telephone/incoming", tc.hdr, "", form); status != tc.want {
				t.Errorf("HTTP %d %s, want %d", status, body, tc.want)
			}
		})
	}
	// Without a trusted proxy, a signature for another host (another application of the
	// same Twilio account) is refused whatever the forwarded headers claim; with PublicURL
	// the signature is checked against it.
	_, usrv := newTestStream(t, echoFactory(), Audio, SendReceive, WithTelephone(TelephoneOptions{AuthToken: token}))
	if status, _, _ := incoming(t, "POST", usrv.URL+"/telephone/incoming", sign("https://abc.ngrok.app/telephone/incoming", form, proxy), "", form); status != http.StatusForbidden {
		t.Errorf("a signature for a forwarded host from an untrusted peer: HTTP %d, want 403", status)
	}
	_, psrv := newTestStream(t, echoFactory(), Audio, SendReceive, WithTelephone(TelephoneOptions{AuthToken: token, PublicURL: "https://abc.ngrok.app"}))
	if status, body, tw := incoming(t, "POST", psrv.URL+"/telephone/incoming", sign("https://abc.ngrok.app/telephone/incoming", form, nil), "", form); status != http.StatusOK ||
		tw.Stream.URL != "wss://abc.ngrok.app/telephone/handler" {
		t.Errorf("PublicURL: HTTP %d %s, stream %q", status, body, tw.Stream.URL)
	}
	if status, _, _ := incoming(t, "POST", psrv.URL+"/telephone/incoming", sign("http://"+strings.TrimPrefix(psrv.URL, "http://")+"/telephone/incoming", form, nil), "", form); status != http.StatusForbidden {
		t.Errorf("PublicURL set, a signature for the request's own host: HTTP %d, want 403", status)
	}
	t.Run("websocket handshake", func(t *testing.T) {
		_, res, err := websocket.DefaultDialer.Dial(wsURL(srv, "/telephone/handler"), nil)
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("unsigned handshake: %v, want HTTP 403", err)
		}
		res.Body.Close()
		for _, u := range []string{"wss://abc.ngrok.app/telephone/handler", "https://abc.ngrok.app/telephone/handler"} {
			c := dialWS(t, wsURL(srv, "/telephone/handler"), sign(u, nil, proxy), true)
			_ = c.conn.Close()
		}
	})
}

// dtmfEcho is an echo handler that receives DTMF digits itself.
type dtmfEcho struct {
	AudioHandler
	got chan string
}

func (h *dtmfEcho) DTMF(s *Session, digit string) { h.got <- digit }

// TestTelephoneDTMFReceiver: a handler implementing DTMFReceiver gets the digits, and a
// telephone session with bad input from "Twilio" only logs it.
func TestTelephoneDTMFReceiver(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	factory := AudioHandlerFactory(func() AudioHandler { return &dtmfEcho{AudioHandler: echoFactory()(), got: got} })
	s, srv := newTestStream(t, factory, Audio, SendReceive)
	c := dialWS(t, wsURL(srv, "/telephone/handler"), nil, true)
	c.send(map[string]any{"event": "media", "streamSid": "MZd", "media": map[string]string{"payload": "AAAA"}})
	c.send(map[string]any{"event": "start", "streamSid": "MZd", "start": map[string]any{"streamSid": "MZd"}})
	c.sendText(`not json`)
	c.send(map[string]any{"event": "media", "streamSid": "MZd", "media": map[string]string{"payload": "!!"}})
	c.send(map[string]any{"event": "future-event"})
	c.send(map[string]any{"event": "dtmf", "streamSid": "MZd", "dtmf": map[string]string{"digit": "#"}})
	select {
	case d := <-got:
		if d != "#" {
			t.Errorf("digit %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DTMF")
	}
	waitSessions(t, s, 1)
	c.send(map[string]any{"event": "stop", "streamSid": "MZd"})
	c.waitClosed(5 * time.Second)
	if m, ok := c.next(0); ok {
		t.Errorf("Twilio was sent %s", m.raw)
	}
	waitSessions(t, s, 0)
}

func TestValidHost(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"example.com": true, "example.com:8443": true, "127.0.0.1:8000": true, "[::1]:443": true, "[::1]": true,
		"a_b.example": true, "evil.example/x?y=1#": false, "user@host": false, "host:": false, "host:99999": false,
		"": false, "[nope]": false, "-x.example": false, "a..b": false, "host:+80": false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}
