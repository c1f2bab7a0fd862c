// Command soak measures what sessions cost a fastrtc server process and whether it gives it
// all back: resident memory (VmRSS from /proc/PID/status), open file descriptors
// (/proc/PID/fd), goroutines and codec contexts (the server's GET /debug/stats, as
// cmd/e2eserver serves it). It only talks to a server on loopback, and stops by itself.
//
// Rounds: -rounds R of -video N flip sessions (640x480@30 VP8 from -ivf) and -audio M echo
// sessions, each held -hold, then closed; RSS is read while they are live and -settle after
// they ended. Soak: -cycles C connect/disconnect cycles of mixed sessions, -parallel at a
// time, each living -life; the counts before and after are compared.
//
//	./scripts/soak.sh                       # both, with the defaults below
//	go run ./cmd/soak -url http://127.0.0.1:8100 -pid PID -rounds 5 -video 6 -audio 0
package main

import (
	"github.com/fastrtc-go/fastrtc/internal/loadgen"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/media"
)

type config struct {
	url, videoPrefix, audioPrefix string
	pid                           int
	rounds, video, audio          int
	hold, settle                  time.Duration
	cycles, parallel, chunks      int
	life                          time.Duration
	frames                        [][]byte
}

func main() {
	var c config
	var ivfPath string
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8100", "server base URL (loopback only)")
	flag.StringVar(&c.videoPrefix, "video-prefix", "/flip", "route prefix of the video send-receive stream")
	flag.StringVar(&c.audioPrefix, "audio-prefix", "/echo", "route prefix of the audio echo stream")
	flag.IntVar(&c.pid, "pid", 0, "server process id (required)")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds of live sessions")
	flag.IntVar(&c.video, "video", 6, "video sessions per round")
	flag.IntVar(&c.audio, "audio", 20, "audio sessions per round")
	flag.DurationVar(&c.hold, "hold", 5*time.Second, "how long a round's sessions stay live")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "wait after a round before reading memory")
	flag.IntVar(&c.cycles, "cycles", 1000, "soak: connect/disconnect cycles (0: no soak)")
	flag.IntVar(&c.parallel, "parallel", 8, "soak: sessions at a time")
	flag.IntVar(&c.chunks, "chunks", 4, "soak: readings during the cycles")
	flag.DurationVar(&c.life, "life", 300*time.Millisecond, "soak: how long each session lives")
	flag.StringVar(&ivfPath, "ivf", "testdata/video/noisy640.ivf", "VP8 file the video sessions send")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, c, ivfPath); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, ivfPath string) error {
	if !strings.HasPrefix(c.url, "http://127.0.0.1:") && !strings.HasPrefix(c.url, "http://localhost:") {
		return errors.New("-url must be on loopback")
	}
	if c.pid <= 0 {
		return errors.New("-pid is required")
	}
	var err error
	if c.frames, err = loadgen.ReadIVF(ivfPath); err != nil {
		return err
	}
	base, err := measure(ctx, c)
	if err != nil {
		return err
	}
	report("start", base, nil)
	var first *sample
	for r := 1; r <= c.rounds; r++ {
		live, err := round(ctx, c)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		time.Sleep(c.settle)
		after, err := measure(ctx, c)
		if err != nil {
			return err
		}
		if first == nil {
			first = &after
		}
		perVideo, perVoice := math.NaN(), math.NaN()
		switch {
		case c.video > 0 && c.audio == 0:
			perVideo = float64(live.rssKB-base.rssKB) / 1024 / float64(c.video)
		case c.audio > 0 && c.video == 0:
			perVoice = float64(live.rssKB-base.rssKB) / 1024 / float64(c.audio)
		}
		report(fmt.Sprintf("round %d", r), after, map[string]any{
			"live_rss_mb": mb(live.rssKB), "live_sessions": live.sessions, "live_go_heap_mb": mb(live.goHeapKB),
			"mb_per_video_session_over_start": perVideo, "mb_per_voice_session_over_start": perVoice,
			"after_vs_round1_mb": mb(after.rssKB - first.rssKB),
		})
	}
	if c.cycles > 0 {
		before, err := measure(ctx, c)
		if err != nil {
			return err
		}
		// The cycles run in chunks with a reading after each: a leak grows chunk after
		// chunk, allocator noise does not.
		var failed int64
		var took time.Duration
		var after sample
		chunk := max(1, c.cycles/c.chunks)
		for done := 0; done < c.cycles; done += chunk {
			part := c
			part.cycles = min(chunk, c.cycles-done)
			start := time.Now()
			f, err := soak(ctx, part)
			if err != nil {
				return err
			}
			took += time.Since(start)
			failed += f
			// The clients' idle keep-alive connections would hold a goroutine and an fd
			// in the server each: close them, so that only what sessions left is counted.
			http.DefaultClient.CloseIdleConnections()
			time.Sleep(c.settle)
			if after, err = measure(ctx, c); err != nil {
				return err
			}
			report(fmt.Sprintf("soak %d/%d", done+part.cycles, c.cycles), after, map[string]any{"rss_delta_mb": mb(after.rssKB - before.rssKB)})
		}
		report("soak", after, map[string]any{
			"cycles": c.cycles, "failed_cycles": failed, "seconds": took.Seconds(),
			"goroutines_delta": after.goroutines - before.goroutines, "fds_delta": after.fds - before.fds,
			"codecs_after": after.codecs, "sessions_after": after.sessions, "rss_delta_mb": mb(after.rssKB - before.rssKB),
		})
		if after.sessions != 0 || after.codecs != 0 || after.goroutines > before.goroutines || after.fds > before.fds {
			return fmt.Errorf("leak after the soak: %+v, before %+v", after, before)
		}
	}
	return nil
}

// round connects the round's sessions, holds them, measures, and closes them all.
func round(ctx context.Context, c config) (sample, error) {
	var conns []*conn
	defer func() {
		for _, s := range conns {
			s.close()
		}
	}()
	for i := 0; i < c.video+c.audio; i++ {
		s, err := dial(ctx, c, i < c.video, fmt.Sprintf("r%d-%d", time.Now().UnixNano()%1e6, i))
		if err != nil {
			return sample{}, err
		}
		conns = append(conns, s)
		time.Sleep(30 * time.Millisecond) // stagger, as users arrive
	}
	time.Sleep(c.hold)
	return measure(ctx, c)
}

// soak runs c.cycles short sessions, c.parallel at a time, alternating video and audio.
func soak(ctx context.Context, c config) (failed int64, err error) {
	var next, fails atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < c.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(c.cycles) || ctx.Err() != nil {
					return
				}
				s, err := dial(ctx, c, i%2 == 0, fmt.Sprintf("s%d", i))
				if err != nil {
					fails.Add(1)
					continue
				}
				time.Sleep(c.life)
				s.close()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fails.Load(), fmt.Errorf("soak stopped: %w", ctx.Err())
	}
	return fails.Load(), nil
}

type conn struct {
	c      *client.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *conn) close() {
	s.cancel()
	_ = s.c.Close()
	s.wg.Wait()
}

// dial connects a video session that sends the VP8 file at 30 fps, or an audio session that
// sends a 440 Hz tone in real time; both read what comes back.
func dial(ctx context.Context, c config, video bool, id string) (*conn, error) {
	o := &client.Options{ID: id, SettingEngine: loadgen.Loopback, PaceAudio: true}
	prefix := c.audioPrefix
	if video {
		o.SendVideo, o.ReceiveVideo, prefix = true, true, c.videoPrefix
	} else {
		o.SendAudio, o.ReceiveAudio = true, true
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, c.url+prefix, o)
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithCancel(ctx)
	s := &conn{c: cl, cancel: scancel}
	s.wg.Add(2)
	go func() { // read what comes back
		defer s.wg.Done()
		for sctx.Err() == nil {
			var err error
			if video {
				_, err = cl.ReadVideoRTP(sctx)
			} else {
				_, err = cl.ReadAudioRTP(sctx)
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // send
		defer s.wg.Done()
		if video {
			tick := time.NewTicker(time.Second / 30)
			defer tick.Stop()
			for i := 0; sctx.Err() == nil; i++ {
				_ = cl.WriteVP8(c.frames[i%len(c.frames)], uint32(i*3000))
				select {
				case <-tick.C:
				case <-sctx.Done():
				}
			}
			return
		}
		tone := make([]int16, 960)
		for i := 0; sctx.Err() == nil; i++ {
			for j := range tone {
				tone[j] = int16(8000 * math.Sin(2*math.Pi*440*float64(i*960+j)/48000))
			}
			if cl.SendAudio(sctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: tone}) != nil {
				return
			}
		}
	}()
	return s, nil
}

type sample struct {
	rssKB, fds                      int
	goroutines, sessions, codecs    int
	goHeapKB, goSysKB, goReleasedKB int // the Go runtime's view: the rest of RSS is C (libvpx, libopus) and stacks
}

// measure reads the server's memory, descriptors and /debug/stats.
func measure(ctx context.Context, c config) (sample, error) {
	var s sample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/debug/stats", nil)
	if err != nil {
		return s, err
	}
	req.Close = true // no idle keep-alive connection: it would count as the server's goroutine and fd
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	var stats map[string]map[string]int
	if err := json.NewDecoder(res.Body).Decode(&stats); err != nil {
		return s, fmt.Errorf("/debug/stats: %w", err)
	}
	for k, v := range stats {
		if k == "process" {
			s.goroutines = v["goroutines"]
			s.goHeapKB, s.goSysKB, s.goReleasedKB = v["go_heap_inuse_kb"], v["go_sys_kb"], v["go_heap_released_kb"]
			continue
		}
		s.sessions += v["sessions"]
		s.codecs += v["codecs"]
	}
	return s, nil
}

func mb(kb int) float64 { return math.Round(float64(kb)/1024*10) / 10 }

func report(what string, s sample, extra map[string]any) {
	m := map[string]any{"at": what, "rss_mb": mb(s.rssKB), "fds": s.fds, "goroutines": s.goroutines,
		"sessions": s.sessions, "codecs": s.codecs, "go_heap_mb": mb(s.goHeapKB),
		"go_not_released_mb": mb(s.goSysKB - s.goReleasedKB)}
	for k, v := range extra {
		if f, ok := v.(float64); ok && math.IsNaN(f) {
			continue
		}
		m[k] = v
	}
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}
