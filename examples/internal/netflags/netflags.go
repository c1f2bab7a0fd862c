// Package netflags gives every example the same network flags: -udp-port (one UDP port for
// every session), -public-ip (the address to announce behind 1:1 NAT) and -turn (an embedded
// TURN server on HOST:PORT, its credentials handed out by GET /webrtc/config).
package netflags

import (
	"flag"
	"net"
	"strings"

	"github.com/fastrtc-go/fastrtc"
)

// Register adds the flags to fs; call the returned function after fs.Parse for the options.
func Register(fs *flag.FlagSet) func() fastrtc.Option {
	udpPort := fs.Int("udp-port", 0, "serve every session's media on this one UDP port (0: a port per session)")
	publicIP := fs.String("public-ip", "", "address to announce in ICE candidates (a server behind 1:1 NAT)")
	turnAddr := fs.String("turn", "", "run a TURN server on HOST:PORT (UDP) for clients no direct path reaches")
	return func() fastrtc.Option {
		var opts []fastrtc.Option
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
