// Package netflags gives every example the same network flags: -udp-port (one UDP port for
// every session), -public-ip (the address to announce behind 1:1 NAT) and -turn (an embedded
// TURN server on HOST:PORT, its credentials handed out by GET /webrtc/config) and
// -trusted-proxy (the proxies whose forwarded headers are believed).
package netflags

import (
	"flag"
	"net"
	"net/netip"
	"strings"

	"github.com/fastrtc-go/fastrtc"
)

// Register adds the flags to fs; call the returned function after fs.Parse for the options.
func Register(fs *flag.FlagSet) func() fastrtc.Option {
	udpPort := fs.Int("udp-port", 0, "serve every session's media on this one UDP port (0: a port per session)")
	publicIP := fs.String("public-ip", "", "address to announce in ICE candidates (a server behind 1:1 NAT)")
	turnAddr := fs.String("turn", "", "run a TURN server on HOST:PORT (UDP) for clients no direct path reaches")
	proxies := fs.String("trusted-proxy", "", "comma-separated prefixes of the proxies in front (e.g. 127.0.0.1/32 for ngrok on this host): their X-Forwarded-* headers are believed")
	return func() fastrtc.Option {
		var opts []fastrtc.Option
		if *proxies != "" {
			var ps []netip.Prefix
			for _, p := range strings.Split(*proxies, ",") {
				pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
				if err != nil {
					a, aerr := netip.ParseAddr(strings.TrimSpace(p))
					if aerr != nil {
						continue // reported by fastrtc.New as no proxy: keep the flag simple
					}
					pfx = netip.PrefixFrom(a, a.BitLen())
				}
				ps = append(ps, pfx)
			}
			opts = append(opts, fastrtc.WithTrustedProxies(ps...))
		}
		if *udpPort != 0 {
			opts = append(opts, fastrtc.WithUDPPort(*udpPort))
		}
		if *publicIP != "" {
			opts = append(opts, fastrtc.WithPublicIPs(*publicIP))
		}
		if *turnAddr != "" {
			t := fastrtc.TURNOptions{Addr: *turnAddr, PublicIP: *publicIP}
			if host, _, err := net.SplitHostPort(*turnAddr); err == nil && host != "" && !strings.HasPrefix(host, "0.") && t.PublicIP == "" {
				t.PublicIP = host
			}
			opts = append(opts, fastrtc.WithTURN(t))
		}
		return fastrtc.WithOptions(opts...)
	}
}
