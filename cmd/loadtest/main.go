// Command loadtest drives many WebRTC sessions against a fastrtc server on loopback and reports
// what the server process spent: CPU (from /proc/PID/stat) and, for video, the frame rate each
// session got back. Clients are light pion peers that send a pre-encoded VP8 file (no
// encoding on the client side) or, for audio, stay connected and idle.
//
//	go build -o /tmp/e2eserver ./cmd/e2eserver && /tmp/e2eserver -kind flip -addr 127.0.0.1:8100 &
//	go run ./cmd/loadtest -url http://127.0.0.1:8100 -pid $! -n 8 -kind video -ivf testdata/video/noisy640.ivf
//
// It stops by itself after -duration; it only ever talks to -url.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8100", "server base URL (loopback)")
	pid := flag.Int("pid", 0, "server process id, for its CPU time")
	n := flag.Int("n", 4, "sessions")
	kind := flag.String("kind", "video", "video (send-receive VP8 from -ivf) or audio-idle (connected, silent)")
	ivf := flag.String("ivf", "testdata/video/noisy640.ivf", "VP8 file to send (video)")
	duration := flag.Duration("duration", 10*time.Second, "measurement time, after all sessions connected")
	flag.Parse()
	if err := run(*url, *pid, *n, *kind, *ivf, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(base string, pid, n int, kind, ivfPath string, duration time.Duration) error {
	if !strings.HasPrefix(base, "http://127.0.0.1:") && !strings.HasPrefix(base, "http://localhost:") {
		return errors.New("-url must be on loopback")
	}
	var frames [][]byte
	if kind == "video" {
		var err error
		if frames, err = readIVF(ivfPath); err != nil {
			return err
		}
	}
	api := newAPI()
	ctx, cancel := context.WithTimeout(context.Background(), duration+60*time.Second)
	defer cancel()
	clients := make([]*client, n)
	for i := range clients {
		c, err := dial(ctx, api, base, fmt.Sprintf("load%d-%d", os.Getpid(), i), kind == "video")
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		defer c.pc.Close()
		clients[i] = c
		if kind == "video" {
			go c.sendVideo(ctx, frames, i)
		}
		time.Sleep(50 * time.Millisecond) // stagger, as real users arrive
	}
	time.Sleep(2 * time.Second) // warm up
	for _, c := range clients {
		c.frames.Store(0)
	}
	cpu0, err := cpuTicks(pid)
	if err != nil && pid != 0 {
		return err
	}
	start := time.Now()
	time.Sleep(duration)
	wall := time.Since(start)
	cpu1, _ := cpuTicks(pid)
	var fps []float64
	for _, c := range clients {
		fps = append(fps, float64(c.frames.Load())/wall.Seconds())
	}
	sort.Float64s(fps)
	res := map[string]any{"sessions": n, "kind": kind, "seconds": wall.Seconds()}
	if pid != 0 {
		res["server_cpu_percent_of_one_core"] = 100 * float64(cpu1-cpu0) / 100 / wall.Seconds() // USER_HZ = 100
	}
	if kind == "video" {
		res["fps_min"], res["fps_median"] = fps[0], fps[len(fps)/2]
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// cpuTicks returns utime+stime of a process in clock ticks.
func cpuTicks(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

func readIVF(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (make it with the benchmarks: go test -run x -bench VideoPath .)", err)
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

func newAPI() *webrtc.API {
	me := &webrtc.MediaEngine{}
	_ = me.RegisterDefaultCodecs()
	ir := &interceptor.Registry{}
	_ = webrtc.RegisterDefaultInterceptors(me, ir)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

type client struct {
	pc     *webrtc.PeerConnection
	video  *webrtc.TrackLocalStaticRTP
	frames atomic.Int64 // complete frames received back
}

func dial(ctx context.Context, api *webrtc.API, base, id string, video bool) (*client, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &client{pc: pc}
	if video {
		c.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "load")
		if _, err := pc.AddTransceiverFromTrack(c.video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			return nil, err
		}
	} else {
		audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "load")
		if _, err := pc.AddTransceiverFromTrack(audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			return nil, err
		}
	}
	if _, err := pc.CreateDataChannel("text", nil); err != nil {
		return nil, err
	}
	var once sync.Once
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) == nil && p.Marker {
				c.frames.Add(1)
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	<-gathered
	body, _ := json.Marshal(map[string]string{"sdp": pc.LocalDescription().SDP, "type": "offer", "webrtc_id": id})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webrtc/offer", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var ans map[string]any
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil {
		return nil, err
	}
	sdp, _ := ans["sdp"].(string)
	if sdp == "" {
		return nil, fmt.Errorf("refused: %v", ans)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return nil, err
	}
	select {
	case <-connected:
		return c, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("not connected within 10 s")
	}
}

// sendVideo loops the file at 30 fps from its first (key) frame; a key frame request is
// answered by the file's next key frame (every 2 s).
func (c *client) sendVideo(ctx context.Context, frames [][]byte, ssrc int) {
	pk := vp8rtp.NewPacketizer(uint32(ssrc+1), 96, 1200)
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		_ = pk.Packetize(frames[i%len(frames)], uint32(i*3000), c.video.WriteRTP)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
