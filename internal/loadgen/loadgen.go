// Package loadgen holds what the load tools (cmd/loadtest, cmd/soak) share: the pre-encoded
// VP8 they send and the loopback-only ICE setup of their clients.
package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// ReadIVF returns the VP8 frames of an IVF file.
func ReadIVF(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (make it with: go test -run '^$' -bench VideoPath640 -benchtime 1x .)", err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, err
		}
		frames = append(frames, fr)
	}
}

// Loopback restricts a client's ICE to 127.0.0.1 over UDP, without mDNS.
func Loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}
