package fastrtc

import (
	"context"
	"image"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// topBright is a 640x480 frame whose top half is bright and bottom half dark, with a bar
// that moves with i (so that every frame costs bits).
func topBright(img *image.YCbCr, i int) *image.YCbCr {
	if img == nil {
		img = yuv.NewI420(640, 480)
	}
	for y := range 480 {
		for x := range 640 {
			v := byte(40 + (x+y)%24)
			if y < 240 {
				v = byte(200 + (x*y)%20)
			}
			if (x+i*8)%640 < 32 {
				v = 128
			}
			img.Y[y*img.YStride+x] = v
		}
	}
	for j := range img.Cb {
		img.Cb[j], img.Cr[j] = 128, 128
	}
	return img
}

// meanLuma returns the mean luma of rows [y0, y1) of img.
func meanLuma(img *image.YCbCr, y0, y1 int) float64 {
	var sum, n float64
	r := img.Rect
	for y := y0; y < y1; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			sum += float64(img.Y[img.YOffset(x, y+r.Min.Y)])
			n++
		}
	}
	return sum / n
}

// flipClient connects a Go client that sends topBright frames at 30 fps to a flip stream and
// reads the flipped frames back, until ctx ends. It returns the last frame's size and luma
// of its top and bottom quarters, and how many frames came back.
type flipResult struct {
	mu       sync.Mutex
	w, h     int
	top, bot float64
	frames   int
}

func runFlipClient(ctx context.Context, t *testing.T, conn *client.Conn, res *flipResult) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		var img *image.YCbCr
		for i := 0; ctx.Err() == nil; i++ {
			img = topBright(img, i)
			if err := conn.SendVideo(ctx, img, uint32(i*3000)); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	}()
	for {
		f, err := conn.ReadVideo(ctx)
		if err != nil {
			break
		}
		img := f.Image
		h := img.Rect.Dy()
		res.mu.Lock()
		res.w, res.h, res.frames = img.Rect.Dx(), h, res.frames+1
		res.top, res.bot = meanLuma(img, 0, h/4), meanLuma(img, h*3/4, h)
		res.mu.Unlock()
	}
	wg.Wait()
}

func dialFlip(t *testing.T, base string, o client.Options) *client.Conn {
	t.Helper()
	o.SendVideo, o.ReceiveVideo, o.SettingEngine = true, true, loopbackOnly
	conn, err := client.New(base, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := conn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestCongestionControlPerfectLink: on loopback the estimate comes from the client's
// transport-wide feedback, the video stays at the handler's size and the page's figures
// (Session.Stats, Metrics) show it. Not parallel: the other tests' load on the CPU and on
// loopback reads as congestion (the estimate falls, the video is scaled down).
func TestCongestionControlPerfectLink(t *testing.T) {
	s, srv := newTestStream(t, VideoFunc(func(_ *Session, f *VideoFrame) (image.Image, error) {
		return yuv.FlipVertical(nil, f.Image), nil
	}), Video, SendReceive)
	conn := dialFlip(t, srv.URL, client.Options{ID: "cc-perfect"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var res flipResult
	runFlipClient(ctx, t, conn, &res)
	sess, err := s.Session("cc-perfect")
	if err != nil {
		t.Fatal(err)
	}
	st := sess.Stats()
	if st.BandwidthEstimate <= 0 || st.VideoTargetBitrate <= 0 {
		t.Fatalf("no estimate from the client's feedback: %+v", st)
	}
	if st.VideoWidthOut != 640 || st.VideoHeightOut != 480 || st.VideoFPSTarget != 30 {
		t.Fatalf("sent %dx%d at %d fps on loopback; want 640x480 at 30", st.VideoWidthOut, st.VideoHeightOut, st.VideoFPSTarget)
	}
	if m := s.Stats(); m.VideoSendHeights[480] != 1 || m.VideoSendBitrate <= 0 {
		t.Fatalf("metrics: heights %v, bitrate %d", m.VideoSendHeights, m.VideoSendBitrate)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.frames < 60 || res.w != 640 || res.h != 480 || res.top > res.bot-60 {
		t.Fatalf("client got %d frames, last %dx%d, top %.0f bottom %.0f; want >= 60 flipped 640x480 frames", res.frames, res.w, res.h, res.top, res.bot)
	}
	if cs := conn.VideoSendStats(); cs.EstimateBps <= 0 || cs.Width != 640 {
		t.Fatalf("client's own sender: %+v", cs)
	}
}

// TestCongestionControlScalesHandlerFrames: with the bit rate held low (as a slow link's
// estimate would), the handler's 640x480 frames go out scaled down, still flipped, and the
// handler still gets and returns full-size frames. Not parallel: the other tests' load reads
// as congestion to the client's sender too, which then scales its own frames down.
func TestCongestionControlScalesHandlerFrames(t *testing.T) {
	var mu sync.Mutex
	var handlerH int
	s, srv := newTestStream(t, VideoFunc(func(_ *Session, f *VideoFrame) (image.Image, error) {
		mu.Lock()
		handlerH = f.Image.Bounds().Dy()
		mu.Unlock()
		return yuv.FlipVertical(nil, f.Image), nil
	}), Video, SendReceive, WithBandwidth(Bandwidth{MinKbps: 100, StartKbps: 150, MaxKbps: 150}))
	conn := dialFlip(t, srv.URL, client.Options{ID: "cc-low"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var res flipResult
	runFlipClient(ctx, t, conn, &res)
	st, err := s.Session("cc-low")
	if err != nil {
		t.Fatal(err)
	}
	ss := st.Stats()
	res.mu.Lock()
	defer res.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if handlerH != 480 {
		t.Fatalf("the handler got %d-line frames; want the client's 480", handlerH)
	}
	if ss.VideoHeightOut >= 480 || ss.VideoHeightOut < 180 || ss.VideoTargetBitrate > 150_000 {
		t.Fatalf("at 150 kbit/s the server sends %dx%d at %d bit/s; want scaled down, at least 180 lines", ss.VideoWidthOut, ss.VideoHeightOut, ss.VideoTargetBitrate)
	}
	if res.h != ss.VideoHeightOut || res.frames < 30 || res.top > res.bot-60 {
		t.Fatalf("client got %d frames, last %dx%d (server says %d lines), top %.0f bottom %.0f", res.frames, res.w, res.h, ss.VideoHeightOut, res.top, res.bot)
	}
}

// TestIncomingVideoCap: the server asks its client to send no more than
// Bandwidth.MaxInKbps (RTCP REMB), and the Go client's sender holds to it; with a negative
// cap it follows its own estimate above it. Not parallel with other tests (their load reads
// as congestion, and the uncapped estimate falls); its two cases run at once.
func TestIncomingVideoCap(t *testing.T) {
	for _, c := range []struct {
		name  string
		maxIn int
	}{{"capped", 300}, {"uncapped", -1}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, srv := newTestStream(t, VideoFunc(func(_ *Session, f *VideoFrame) (image.Image, error) {
				return yuv.FlipVertical(nil, f.Image), nil
			}), Video, SendReceive, WithBandwidth(Bandwidth{MaxInKbps: c.maxIn}))
			conn := dialFlip(t, srv.URL, client.Options{ID: "cap-" + c.name})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var res flipResult
			runFlipClient(ctx, t, conn, &res)
			cs := conn.VideoSendStats()
			if c.maxIn > 0 && (cs.EstimateBps <= 0 || cs.EstimateBps > c.maxIn*1000 || cs.TargetBps > c.maxIn*1000) {
				t.Fatalf("client's sender with a %d kbit/s cap: %+v", c.maxIn, cs)
			}
			if c.maxIn < 0 && cs.EstimateBps <= 300_000 {
				t.Fatalf("client's sender without a cap: estimate %d, want above 300 kbit/s on loopback", cs.EstimateBps)
			}
		})
	}
}

// TestVideoSessionsFreeMemory: sessions that send video under congestion control leave no
// heap behind once they end. A no-op pacer shared by every estimator of the stream once
// kept each ended connection's stream writer, and with it about 180 KB of peer connection
// per session. Not parallel: it measures the process's heap.
func TestVideoSessionsFreeMemory(t *testing.T) {
	s, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	img := testPattern(320, 240, 0)
	run := func(n int) {
		for range n {
			c, err := client.Dial(context.Background(), srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopbackOnly})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			for i := 0; ctx.Err() == nil && i < 5; i++ {
				_ = c.SendVideo(ctx, img, uint32(i*3000))
			}
			cancel()
			_ = c.Close()
		}
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	run(10) // warm up: pools, caches, the codecs' first allocations
	waitFor(t, 5*time.Second, func() bool { return len(s.Sessions()) == 0 })
	before := heap()
	const n = 40
	run(n)
	waitFor(t, 5*time.Second, func() bool { return len(s.Sessions()) == 0 })
	time.Sleep(500 * time.Millisecond) // the peer connections' last timers
	per := (heap() - before) / n
	t.Logf("heap after %d sessions: %+d KB per session", n, per>>10)
	if per > 40<<10 {
		t.Fatalf("each ended video session left %d KB of heap (want < 40)", per>>10)
	}
}
