// Command loadtest drives many WebRTC sessions against a fastrtc server on loopback and reports
// what the server process spent: CPU (from /proc/PID/stat) and, for video, the frame rate each
// session got back. Clients are light package client connections that send a pre-encoded VP8 file (no
// encoding on the client side) or, for audio, stay connected and idle, or (voice) loop a
// spoken fixture against a ReplyOnPause server and report the turn latency, p50/p95.
//
//	go build -o /tmp/e2eserver ./cmd/e2eserver && /tmp/e2eserver -kind flip -addr 127.0.0.1:8100 &
//	go run ./cmd/loadtest -url http://127.0.0.1:8100 -pid $! -n 8 -kind video -ivf testdata/video/noisy640.ivf
//	./scripts/load.sh voice 100    # e2eserver -kind pause; Silero when its model is installed
//
// It stops by itself after -duration; it only ever talks to -url.
package main

import (
	"github.com/fastrtc-go/fastrtc/internal/loadgen"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/fastrtc-go/fastrtc/client"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8100", "server base URL (loopback)")
	pid := flag.Int("pid", 0, "server process id, for its CPU time")
	n := flag.Int("n", 4, "sessions")
	kind := flag.String("kind", "video", "video (send-receive VP8 from -ivf), audio-idle (connected, silent) or voice (spoken fixture, turn latency), or cluster (echo sessions through a round-robin proxy over -nodes; per-node figures)")
	ivf := flag.String("ivf", "testdata/video/noisy640.ivf", "VP8 file to send (video)")
	duration := flag.Duration("duration", 10*time.Second, "measurement time, after all sessions connected")
	audioDir := flag.String("audio", "testdata/audio", "folder of the spoken fixture (voice)")
	nodes := flag.String("nodes", "", "cluster: the nodes' base URLs, comma-separated (named n1, n2, ... by their -node flags)")
	metricsURLs := flag.String("metrics", "", "cluster: the nodes' metrics base URLs (their -metrics-addr), comma-separated, in -nodes' order (default: the nodes' URLs)")
	flag.Parse()
	if *kind == "cluster" {
		nodeURLs := strings.Split(*nodes, ",")
		mURLs := nodeURLs
		if *metricsURLs != "" {
			mURLs = strings.Split(*metricsURLs, ",")
		}
		if len(mURLs) != len(nodeURLs) {
			fmt.Fprintln(os.Stderr, "loadtest: -metrics must list one URL per node")
			os.Exit(2)
		}
		if err := runCluster(nodeURLs, mURLs, *n, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*url, *pid, *n, *kind, *ivf, *audioDir, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(base string, pid, n int, kind, ivfPath, audioDir string, duration time.Duration) error {
	if !strings.HasPrefix(base, "http://127.0.0.1:") && !strings.HasPrefix(base, "http://localhost:") {
		return errors.New("-url must be on loopback")
	}
	var frames [][]byte
	if kind == "video" {
		var err error
		if frames, err = loadgen.ReadIVF(ivfPath); err != nil {
			return err
		}
	}
	var voice *voiceFixture
	if kind == "voice" {
		var err error
		if voice, err = loadVoiceFixture(audioDir); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+60*time.Second)
	defer cancel()
	clients := make([]*session, n)
	voices := make([]*voiceSession, n)
	for i := range clients {
		c, err := dial(ctx, base, fmt.Sprintf("load%d-%d", os.Getpid(), i), kind == "video", kind == "voice")
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		defer c.close()
		clients[i] = c
		switch kind {
		case "video":
			go c.sendVideo(ctx, frames)
		case "voice":
			voices[i] = &voiceSession{}
			c.wg.Add(1)
			go c.readVoice(voices[i])
			go c.sendVoice(ctx, voice, voices[i])
		}
		time.Sleep(50 * time.Millisecond) // stagger, as real users arrive
	}
	time.Sleep(2 * time.Second) // warm up
	for i, c := range clients {
		c.frames.Store(0)
		if v := voices[i]; v != nil {
			v.mu.Lock()
			v.measure = true
			v.mu.Unlock()
		}
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
	if kind == "voice" {
		voiceReport(res, voices)
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

type session struct {
	c      *client.Conn
	frames atomic.Int64 // complete frames received back
	wg     sync.WaitGroup
}

// dial connects one session: VP8 send-receive (frames counted at the marker bit, nothing
// decoded) or Opus send-receive left silent.
func dial(ctx context.Context, base, id string, video, voice bool) (*session, error) {
	o := &client.Options{ID: id, SettingEngine: loadgen.Loopback}
	if video {
		o.SendVideo, o.ReceiveVideo = true, true
	} else {
		o.SendAudio, o.ReceiveAudio = true, true
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, base, o)
	if err != nil {
		return nil, err
	}
	s := &session{c: c}
	if voice {
		return s, nil // readVoice reads (and decodes) the replies
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			var p *rtp.Packet
			var err error
			if video {
				p, err = c.ReadVideoRTP(context.Background()) // Close ends the read; no per-packet context cost
			} else {
				p, err = c.ReadAudioRTP(context.Background())
			}
			if err != nil {
				return
			}
			if video && p.Marker {
				s.frames.Add(1)
			}
		}
	}()
	return s, nil
}

// close ends the session and waits for its reader.
func (s *session) close() {
	_ = s.c.Close()
	s.wg.Wait()
}

// sendVideo loops the file at 30 fps from its first (key) frame; a key frame request is
// answered by the file's next key frame (every 2 s).
func (s *session) sendVideo(ctx context.Context, frames [][]byte) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		_ = s.c.WriteVP8(frames[i%len(frames)], uint32(i*3000))
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
