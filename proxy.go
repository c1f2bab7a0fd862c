package fastrtc

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// WithTrustedProxies names the reverse proxies and load balancers in front of the server
// (as address prefixes, e.g. netip.MustParsePrefix("10.0.0.0/8")). Forwarded headers
// (Forwarded, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto) are read only from
// requests whose peer address is one of them: anyone else could claim any host (a Twilio
// signature made for another application of the same account would then open a session
// here) or any client address (escaping the per-client limits). By default no proxy is
// trusted and the headers are ignored. Every place that reads a client's address, host or
// scheme goes through this one setting.
func WithTrustedProxies(prefixes ...netip.Prefix) Option {
	return func(c *config) { c.trustedProxies = append([]netip.Prefix(nil), prefixes...) }
}

// peerAddr returns the address of the request's direct peer.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// trusted reports whether a is a configured proxy.
func (s *Stream) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range s.cfg.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// fromProxy reports whether r came through a trusted proxy.
func (s *Stream) fromProxy(r *http.Request) bool { return s.trusted(peerAddr(r)) }

// clientAddr returns the client's address: the request's peer, or behind trusted proxies
// the nearest address in X-Forwarded-For (or Forwarded's for=) that is not one of them.
func (s *Stream) clientAddr(r *http.Request) netip.Addr {
	a := peerAddr(r)
	if !s.trusted(a) {
		return a
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	if len(hops) == 0 {
		for _, v := range r.Header.Values("Forwarded") {
			for _, elem := range strings.Split(v, ",") {
				for _, pair := range strings.Split(elem, ";") {
					if k, val, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && strings.EqualFold(k, "for") {
						hops = append(hops, strings.Trim(strings.TrimSpace(val), `"`)) // "[2001:db8::17]:4711"
					}
				}
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		b, err := netip.ParseAddr(strings.Trim(h, "[]"))
		if err != nil {
			return a // a malformed hop: the proxy's own address is all we know
		}
		if b = b.Unmap(); !s.trusted(b) {
			return b
		}
		a = b
	}
	return a
}

// externalOrigin returns the scheme ("http" or "https") and host (with its port) the client
// used: from TelephoneOptions.PublicURL when set; else, behind a trusted proxy
// (WithTrustedProxies), as the proxy reports them (X-Forwarded-Proto and X-Forwarded-Host
// first, then the Forwarded header); else as the request shows them.
func (s *Stream) externalOrigin(r *http.Request) (scheme, host string) {
	if u := s.cfg.tel.PublicURL; u != "" {
		if p, err := url.Parse(u); err == nil {
			return strings.ToLower(p.Scheme), p.Host
		}
	}
	scheme, host = "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if s.fromProxy(r) {
		scheme, host = forwardedOrigin(r, scheme, host)
	}
	// The host goes into a URL that Twilio connects to: only a DNS name or an IP literal,
	// with an optional numeric port. Anything else (a path, a query, user info smuggled in a
	// forwarded header) falls back to the request's own Host.
	if !validHost(host) {
		host = r.Host
		if !validHost(host) {
			host = ""
		}
	}
	switch strings.ToLower(scheme) {
	case "https", "wss":
		scheme = "https"
	default:
		scheme = "http"
	}
	return scheme, host
}

// forwardedOrigin reads a proxy's Forwarded, X-Forwarded-Proto and X-Forwarded-Host.
func forwardedOrigin(r *http.Request, scheme, host string) (string, string) {
	if fwd := r.Header.Get("Forwarded"); fwd != "" {
		first, _, _ := strings.Cut(fwd, ",")
		for _, pair := range strings.Split(first, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(k) {
			case "proto":
				scheme = v
			case "host":
				host = v
			}
		}
	}
	if v := firstHeaderValue(r, "X-Forwarded-Proto"); v != "" {
		scheme = v
	}
	if v := firstHeaderValue(r, "X-Forwarded-Host"); v != "" {
		host = v
	}
	return scheme, host
}
