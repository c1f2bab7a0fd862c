package fastrtc

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/gorilla/websocket"
)

// The keys of Session.Metadata on the telephone route. The call's custom parameters (the
// <Parameter> elements of its <Stream>) are added under their own names; they never
// replace these keys. POST /telephone/incoming passes the caller's and callee's numbers as
// the custom parameters "From" and "To".
//
// # The telephone routes
//
// POST (or GET) /telephone/incoming is the Twilio voice webhook: it answers with TwiML that
// says a short greeting and connects the call to /telephone/handler. The Stream URL is built
// from TelephoneOptions.PublicURL when set, else from the request: the host with its port
// (X-Forwarded-Host or the Forwarded header from a proxy named by WithTrustedProxies), wss
// or ws after the scheme (X-Forwarded-Proto or Forwarded proto from such a proxy, else
// whether the request came over TLS), and the path the webhook was called under (so the
// mount prefix is kept). Twilio only connects to wss URLs: serve over HTTPS or behind a TLS proxy.
//
// GET /telephone/handler speaks Twilio Media Streams. The session's id is the stream's
// streamSid. Twilio's audio (8 kHz mu-law) is resampled to the handler's input rate, and the
// handler's audio is sent back as 8 kHz mu-law media messages of 20 ms, paced in real time.
// Session.ClearAudio (which voice.ReplyOnPause calls on an interruption) also sends Twilio a
// "clear" message, so that the caller stops hearing the interrupted reply at once. DTMF
// digits reach the handler (DTMFReceiver, TelephoneOptions.DTMF); "mark" events are accepted; "stop", or
// the connection closing, ends the session. Control messages (Session.Send, Log, Warn, and
// errors) are not sent to Twilio, which accepts only media, mark and clear messages; they
// are logged at debug level. Closing the session (Session.End) closes the
// WebSocket, after the queued audio was sent, and Twilio goes on with the TwiML after
// <Connect>: it says "The call has been disconnected." and hangs up.
//
// Both routes check X-Twilio-Signature when TelephoneOptions.AuthToken is set (WithTelephone).
const (
	// MetaStreamSID is the Twilio Media Stream's id, also the session's ID.
	MetaStreamSID = "streamSid"
	// MetaCallSID is the id of the call.
	MetaCallSID = "callSid"
	// MetaAccountSID is the id of the Twilio account.
	MetaAccountSID = "accountSid"
)

// twilioStart is the "start" object of Twilio's start message.
type twilioStart = wire.TwilioStart

// twilioMetadata returns the session metadata of a telephone call.
func twilioMetadata(st *twilioStart, streamSID string) map[string]string {
	meta := make(map[string]string, 3+len(st.CustomParameters))
	for k, v := range st.CustomParameters {
		if s, ok := v.(string); ok {
			meta[k] = s
		} else if b, err := json.Marshal(v); err == nil {
			meta[k] = string(b)
		}
	}
	meta[MetaStreamSID] = streamSID
	for k, v := range map[string]string{MetaCallSID: st.CallSID, MetaAccountSID: st.AccountSID} {
		if v != "" {
			meta[k] = v
		} else {
			delete(meta, k)
		}
	}
	return meta
}

// twilioDialect is Twilio Media Streams (GET /telephone/handler). Twilio accepts only media,
// mark and clear messages (anything else is a protocol error that may end the call), so
// control messages and notices of bad messages are only logged.
func twilioDialect() *wsDialect {
	return &wsDialect{
		name:        "telephone",
		start:       twilioStartSession,
		inboundOnly: true,
		events: map[string]func(t *wsConn, m *wsMessage){
			wire.EventConnected: func(*wsConn, *wsMessage) {},
			wire.EventDTMF: func(t *wsConn, m *wsMessage) {
				if m.DTMF != nil && m.DTMF.Digit != "" {
					t.s.deliverDTMF(t.sess, m.DTMF.Digit)
				}
			},
			wire.EventMark: func(t *wsConn, m *wsMessage) {
				if m.Mark != nil {
					t.log.Debug("telephone: mark", "name", m.Mark.Name)
				}
			},
		},
		mediaPrefix: func(t *wsConn) []byte { return wire.AppendMediaPrefix(nil, t.streamSID) },
		onClear:     sendClear,
	}
}

// twilioStartSession reads Twilio's start message: the streamSid is the session's id, the
// call's details its metadata, and the audio 8 kHz mono mu-law both ways.
func twilioStartSession(t *wsConn, m *wsMessage) (id string, meta map[string]string, f wsFormat, ok bool) {
	st := m.Start
	if st == nil {
		st = &twilioStart{}
	}
	id = st.StreamSID
	if id == "" {
		id = m.StreamSID
	}
	if id == "" {
		t.log.Warn("telephone: start without streamSid")
		t.closeAndDrain(websocket.ClosePolicyViolation, "start without streamSid")
		return "", nil, f, false
	}
	if err := checkID(id); err != nil {
		t.log.Warn("telephone: bad streamSid", "err", err)
		t.closeAndDrain(websocket.ClosePolicyViolation, "invalid streamSid")
		return "", nil, f, false
	}
	t.streamSID = id
	return id, twilioMetadata(st, id), wsFormat{inRate: 8000, outRate: 8000, channels: 1, rateFixed: true}, true
}

// deliverDTMF gives a digit to the handler and to the TelephoneOptions.DTMF function.
func (s *Stream) deliverDTMF(sess *Session, digit string) {
	sess.log.Debug("telephone: dtmf", "digit", digit)
	if r, ok := sess.handler.(DTMFReceiver); ok {
		r.DTMF(sess, digit)
	}
	if fn := s.cfg.tel.DTMF; fn != nil {
		fn(sess, digit)
	}
}

// sendClear tells Twilio to drop the audio it buffered (the session's audioOut.onClear).
func sendClear(t *wsConn) {
	if err := t.write(wire.EncodeClear(t.streamSID)); err != nil {
		t.log.Debug("telephone: clear", "err", err)
	}
}

// serveTelephoneHandler is GET /telephone/handler: Twilio Media Streams.
func (s *Stream) serveTelephoneHandler(w http.ResponseWriter, r *http.Request) {
	if s.cfg.tel.AuthToken != "" && !s.twilioSignatureValid(r, nil, true) {
		writeError(w, http.StatusForbidden, "invalid or missing X-Twilio-Signature")
		return
	}
	// Twilio never sends Origin, browsers always do: a handshake with an Origin comes from a
	// web page, which may use this route only if WebSocketOptions.CheckOrigin accepts it
	// (otherwise any page could stream audio to the handler and take a slot).
	if r = s.authorize(w, r, RouteTelephone, ""); r == nil {
		return
	}
	release, ok := s.pendingHandshake(w, r)
	if !ok {
		return
	}
	conn, err := s.upgrader(func(r *http.Request) bool {
		if r.Header.Get("Origin") == "" {
			return true
		}
		return s.cfg.ws.CheckOrigin != nil && s.cfg.ws.CheckOrigin(r)
	}).Upgrade(w, r, nil)
	if err != nil {
		release()
		s.log.Debug("telephone upgrade", "err", err)
		return
	}
	s.serveWS(r.Context(), conn, twilioDialect(), release)
}

// serveTelephoneIncoming is POST /telephone/incoming: the Twilio voice webhook.
func (s *Stream) serveTelephoneIncoming(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "POST, GET")
		writeError(w, http.StatusMethodNotAllowed, "use POST (or GET)")
		return
	}
	if r = s.authorize(w, r, RouteTelephone, ""); r == nil {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.maxBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid form: %v", err))
		return
	}
	if s.cfg.tel.AuthToken != "" && !s.twilioSignatureValid(r, r.PostForm, false) {
		writeError(w, http.StatusForbidden, "invalid or missing X-Twilio-Signature")
		return
	}
	scheme, host := s.externalOrigin(r)
	if host == "" {
		writeError(w, http.StatusBadRequest, "no Host in the request")
		return
	}
	wsScheme := "ws"
	if scheme == "https" {
		wsScheme = "wss"
	}
	streamURL := wsScheme + "://" + host + basePath(r, "/telephone/incoming", s.cfg.prefix) + "/telephone/handler"

	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting to the AI assistant.</Say><Connect><Stream url="`)
	xmlEscape(&b, streamURL)
	b.WriteString(`"`)
	var params []string
	for _, name := range []string{"From", "To"} {
		if v := r.Form.Get(name); v != "" {
			params = append(params, name, v)
		}
	}
	if len(params) == 0 {
		b.WriteString(`/>`)
	} else {
		b.WriteString(`>`)
		for i := 0; i < len(params); i += 2 {
			b.WriteString(`<Parameter name="`)
			xmlEscape(&b, params[i])
			b.WriteString(`" value="`)
			xmlEscape(&b, params[i+1])
			b.WriteString(`"/>`)
		}
		b.WriteString(`</Stream>`)
	}
	b.WriteString(`</Connect><Say>The call has been disconnected.</Say></Response>`)
	w.Header().Set("Content-Type", "application/xml")
	_, _ = io.WriteString(w, b.String())
}

func xmlEscape(b *strings.Builder, s string) {
	_ = xml.EscapeText(b, []byte(s))
}

// validHost reports whether h is host[:port] with a DNS name, an IPv4 address or a bracketed
// IPv6 address, and a numeric port.
func validHost(h string) bool {
	name := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		var port string
		name, port = h[:i], h[i+1:]
		if port == "" {
			return false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return false
		}
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		a, err := netip.ParseAddr(name[1 : len(name)-1])
		return err == nil && a.Is6()
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// firstHeaderValue returns the first of a comma-separated header's values.
func firstHeaderValue(r *http.Request, name string) string {
	v, _, _ := strings.Cut(r.Header.Get(name), ",")
	return strings.TrimSpace(v)
}

// basePath returns the path under which the route ending in suffix was called (the request
// line's, so that prefixes stripped by an outer router are kept), or prefix when the path
// does not end in suffix.
func basePath(r *http.Request, suffix, prefix string) string {
	p := r.URL.EscapedPath()
	if r.RequestURI != "" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
			p = u.EscapedPath()
		}
	}
	if strings.HasSuffix(p, suffix) {
		return strings.TrimSuffix(p, suffix)
	}
	return strings.TrimRight(prefix, "/")
}

// twilioSignatureValid checks the request's X-Twilio-Signature against the URL Twilio called
// and the POST parameters. For a WebSocket handshake both the ws(s) and http(s) forms of the
// URL are accepted.
func (s *Stream) twilioSignatureValid(r *http.Request, params url.Values, websocket bool) bool {
	sig := r.Header.Get("X-Twilio-Signature")
	if sig == "" {
		return false
	}
	scheme, host := s.externalOrigin(r)
	uri := r.RequestURI
	if uri == "" || !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	schemes := []string{scheme}
	if websocket {
		schemes = append(schemes, map[string]string{"https": "wss", "http": "ws"}[scheme])
	}
	ok := false
	for _, sc := range schemes {
		for _, u := range urlPortVariants(sc, host, uri) {
			want := twilioSignature(s.cfg.tel.AuthToken, u, params)
			if hmac.Equal([]byte(want), []byte(sig)) {
				ok = true
			}
		}
	}
	return ok
}

// urlPortVariants returns the URL with and without its port (the scheme's default port is
// added when there is none), as Twilio may sign either.
func urlPortVariants(scheme, host, uri string) []string {
	hostname, port, err := net.SplitHostPort(host)
	if err != nil { // no port
		hostname, port = strings.Trim(host, "[]"), ""
	}
	bare := hostname
	if strings.Contains(hostname, ":") {
		bare = "[" + hostname + "]"
	}
	def := "80"
	if scheme == "https" || scheme == "wss" {
		def = "443"
	}
	if port == "" {
		port = def
	}
	return []string{
		scheme + "://" + bare + uri,
		scheme + "://" + net.JoinHostPort(hostname, port) + uri,
	}
}

// TwilioSignature computes the X-Twilio-Signature of a request to fullURL with the POST
// parameters params (nil for GET requests and WebSocket handshakes): the base64 HMAC-SHA1,
// keyed with authToken, of the URL followed by each parameter's name and value, sorted by
// name (and by value for repeated names). It is exported for tests and for clients that
// sign their own requests.
func twilioSignature(authToken, fullURL string, params url.Values) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	_, _ = io.WriteString(mac, fullURL)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals := slices.Clone(params[k])
		slices.Sort(vals)
		vals = slices.Compact(vals)
		for _, v := range vals {
			_, _ = io.WriteString(mac, k)
			_, _ = io.WriteString(mac, v)
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
