package fastrtc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"iter"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

const testW, testH = 320, 240

// sendVideo encodes testPattern frames at 30 fps on the client's video track, frame i with
// RTP timestamp i*3000, until ctx is done or n frames were sent.
func (c *testClient) sendVideo(ctx context.Context, n int) {
	c.sendVideoWith(ctx, n, func(int) (int, int) { return testW, testH }, nil)
}

// sendVideoWith is sendVideo with a per-frame size and an optional packet filter (return
// false to drop packet p of frame i: loss).
func (c *testClient) sendVideoWith(ctx context.Context, n int, size func(i int) (w, h int), keep func(i, p int) bool) {
	c.t.Helper()
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{BitrateKbps: 1500, CPUUsed: 10})
	if err != nil {
		c.t.Fatal(err)
	}
	pk := vp8rtp.NewPacketizer(1234, 96, 1200)
	go func() {
		defer enc.Close()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		var buf []byte
		for i := 0; i < n; i++ {
			w, h := size(i)
			buf, _, err = enc.Encode(buf, testPattern(w, h, i), int64(i*3000), i%30 == 0)
			if err != nil {
				return
			}
			if len(buf) > 0 {
				j := 0
				_ = pk.Packetize(buf, uint32(i*3000), func(p *rtp.Packet) error {
					j++
					if keep != nil && !keep(i, j-1) {
						return nil
					}
					return c.video.WriteRTP(p)
				})
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// receivedFrame is a decoded frame the client got back.
type receivedFrame struct {
	key bool
	ts  uint32
	img *image.YCbCr // a copy
	at  time.Time
}

// receiveVideo decodes the remote video track and delivers copies of its frames.
func receiveVideo(t *testing.T, tr *webrtc.TrackRemote) <-chan receivedFrame {
	t.Helper()
	out := make(chan receivedFrame, 512)
	go func() {
		defer close(out)
		dec, err := vpx.NewDecoder()
		if err != nil {
			return
		}
		defer dec.Close()
		asm := vp8rtp.NewAssembler()
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			data, ts, key, ready, _ := asm.Push(&pkt)
			if !ready {
				continue
			}
			img, err := dec.Decode(data)
			if err != nil || img == nil {
				continue
			}
			cp := yuv.FlipVertical(nil, yuv.FlipVertical(nil, img)) // a deep copy
			select {
			case out <- receivedFrame{key: key, ts: ts, img: cp, at: time.Now()}:
			default:
			}
		}
	}()
	return out
}

func flipHandler(s *Session, f *VideoFrame) (image.Image, error) { return f.FlipVertical(), nil }

func TestVideoFlipRoundTrip(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendVideo(ctx, 90)
	frames := receiveVideo(t, c.remoteTrack(5*time.Second))
	got, good := 0, 0
	timeout := time.After(10 * time.Second)
	for got < 40 {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("remote track ended after %d frames", got)
			}
			got++
			if f.ts%3000 != 0 {
				t.Fatalf("returned RTP timestamp %d is not one the client sent", f.ts)
			}
			want := yuv.FlipVertical(nil, testPattern(testW, testH, int(f.ts/3000)))
			if p := yuv.PSNR(f.img, want); p > 30 {
				good++
			} else if got > 5 {
				t.Errorf("frame ts %d: PSNR %.1f dB against the flipped source, want > 30", f.ts, p)
			}
			// And it must be flipped: the unflipped source must match far worse.
			if got == 20 {
				if p := yuv.PSNR(f.img, testPattern(testW, testH, int(f.ts/3000))); p > 20 {
					t.Errorf("returned frame matches the unflipped source (%.1f dB)", p)
				}
			}
		case <-timeout:
			t.Fatalf("got %d frames in 10 s, want 40", got)
		}
	}
	if good < 35 {
		t.Errorf("%d of %d frames above 30 dB", good, got)
	}
}

func TestVideoReceiveModePacing(t *testing.T) {
	t.Parallel()
	src := VideoSource(func(s *Session) iter.Seq2[image.Image, error] {
		return func(yield func(image.Image, error) bool) {
			for i := 0; ; i++ {
				if !yield(testPattern(testW, testH, i), nil) {
					return
				}
			}
		}
	})
	_, srv := newTestStream(t, src, Video, Receive, WithFPS(30))
	c := newTestClient(t, srv.URL, clientOpts{recvVideo: true})
	c.connect()
	frames := receiveVideo(t, c.remoteTrack(5*time.Second))
	var first, last receivedFrame
	n := 0
	for f := range frames {
		if n == 0 {
			first = f
		}
		last = f
		n++
		if n == 5 {
			want := testPattern(testW, testH, int(f.ts/3000))
			if p := yuv.PSNR(f.img, want); p < 30 {
				t.Errorf("generated frame PSNR %.1f dB, want > 30", p)
			}
		}
		if f.at.Sub(first.at) >= 3*time.Second {
			break
		}
	}
	elapsed := last.at.Sub(first.at).Seconds()
	fps := float64(n-1) / elapsed
	if math.Abs(fps-30)/30 > 0.10 {
		t.Errorf("received %.1f fps over %.2f s, want 30 within 10%%", fps, elapsed)
	}
	if d := last.ts - first.ts; math.Abs(float64(d)/90000-elapsed) > 0.3 {
		t.Errorf("RTP time advanced %.2f s over %.2f s of wall time", float64(d)/90000, elapsed)
	}
}

// readSSE reads `event: output` data lines from GET /outputs.
func readSSE(t *testing.T, ctx context.Context, url string) (<-chan string, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, res.StatusCode
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	ch := make(chan string, 256)
	go func(body io.ReadCloser) {
		defer close(ch)
		defer body.Close()
		sc := bufio.NewScanner(body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "output":
				ch <- strings.TrimPrefix(line, "data: ")
			}
		}
	}(res.Body)
	return ch, res.StatusCode
}

func TestVideoSendModeOutputs(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := func(s *Session, f *VideoFrame) (image.Image, error) {
		calls.Add(1)
		if f.Index < 10 {
			return nil, s.Emit(map[string]int{"n": f.Index})
		}
		return nil, nil
	}
	_, srv := newTestStream(t, VideoFunc(h), Video, Send, WithOutputs(Output{Name: "n"}))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendVideo(ctx, 60)
	c.waitMsg("fetch_output", 5*time.Second)
	ch, status := readSSE(t, ctx, srv.URL+"/outputs?webrtc_id="+c.id)
	if status != 200 {
		t.Fatalf("outputs: HTTP %d", status)
	}
	for want := 0; want < 10; want++ {
		select {
		case got := <-ch:
			if exp := fmt.Sprintf(`{"n":%d}`, want); got != exp {
				t.Fatalf("output %d = %s, want %s", want, got, exp)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("output %d did not arrive", want)
		}
	}
	// The SSE stream ends when the connection ends.
	_ = c.pc.Close()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SSE stream still open 10 s after the client left")
	}
}

func TestVideoInputsChangeNextFrame(t *testing.T) {
	t.Parallel()
	// The handler paints the whole frame with luma = 16 + level*200.
	h := func(s *Session, f *VideoFrame) (image.Image, error) {
		img := image.NewYCbCr(f.Image.Rect, image.YCbCrSubsampleRatio420)
		v := uint8(16 + s.Inputs().Float("level")*200)
		for i := range img.Y {
			img.Y[i] = v
		}
		for i := range img.Cb {
			img.Cb[i], img.Cr[i] = 128, 128
		}
		return img, nil
	}
	s, srv := newTestStream(t, VideoFunc(h), Video, SendReceive, WithInputs(Slider("level", 0, 1, 0.01, 0.25)))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	c.waitMsg("send_input", 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendVideo(ctx, 300)
	frames := receiveVideo(t, c.remoteTrack(5*time.Second))
	meanY := func(img *image.YCbCr) float64 {
		sum := 0
		for _, v := range img.Y {
			sum += int(v)
		}
		return float64(sum) / float64(len(img.Y))
	}
	waitLevel := func(want float64) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case f := <-frames:
				if math.Abs(meanY(f.img)-want) < 4 {
					return
				}
			case <-deadline:
				t.Fatalf("no frame with mean luma %.0f", want)
			}
		}
	}
	waitLevel(16 + 0.25*200) // the default, from the first frame
	r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "level": 0.9})
	if r.status != 200 {
		t.Fatalf("input_hook: %d %s", r.status, r.body)
	}
	if got := s.mustSession(t, c.id).Inputs().Float("level"); got != 0.9 {
		t.Fatalf("Inputs().Float = %v", got)
	}
	waitLevel(16 + 0.9*200)
	if err := s.SetInput(c.id, map[string]any{"level": 0.0}); err != nil {
		t.Fatal(err)
	}
	waitLevel(16)
}

func (s *Stream) mustSession(t *testing.T, id string) *Session {
	t.Helper()
	sess, err := s.Session(id)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

func TestHandlerPanicEndsOnlyItsSession(t *testing.T) {
	t.Parallel()
	h := func(s *Session, f *VideoFrame) (image.Image, error) {
		if s.Inputs().Bool("boom") && f.Index > 3 {
			panic("boom")
		}
		return f.Image, nil
	}
	s, srv := newTestStream(t, VideoFunc(h), Video, SendReceive, WithInputs(Checkbox("boom", false)))
	good := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	bad := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	good.connect()
	bad.connect()
	if err := s.SetInput(bad.id, map[string]any{"boom": true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	good.sendVideo(ctx, 300)
	bad.sendVideo(ctx, 300)
	m := bad.waitMsg("error", 10*time.Second)
	if msg, _ := m["message"].(string); !strings.Contains(msg, "boom") {
		t.Errorf("error message %q does not say what failed", msg)
	}
	sess := s.mustSession(t, good.id)
	badSess, err := s.Session(bad.id)
	if err == nil {
		<-badSess.Done()
		if !errors.Is(badSess.Err(), ErrHandlerPanic) {
			t.Errorf("bad session Err = %v", badSess.Err())
		}
	}
	frames := receiveVideo(t, good.remoteTrack(5*time.Second))
	for i := 0; i < 30; i++ {
		select {
		case <-frames:
		case <-time.After(5 * time.Second):
			t.Fatal("the other session stopped receiving video")
		}
	}
	if sess.Context().Err() != nil {
		t.Fatal("the good session ended")
	}
}

// TestVideoKeyFramesAndResolutionChange: a PLI from the client gets a key frame; a lost
// packet makes the server ask the client for one; a resolution change mid-stream comes back
// at the new size.
func TestVideoKeyFramesAndResolutionChange(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, VideoFunc(flipHandler), Video, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 320x240 for 2 s, then 640x480; frame 20 loses its first packet.
	size := func(i int) (int, int) {
		if i < 60 {
			return 320, 240
		}
		return 640, 480
	}
	c.sendVideoWith(ctx, 150, size, func(i, p int) bool { return !(i == 20 && p == 0) })
	tr := c.remoteTrack(5 * time.Second)
	frames := receiveVideo(t, tr)
	var sawBig bool
	pliSent := false
	deadline := time.After(15 * time.Second)
	for !sawBig {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("track ended")
			}
			if !pliSent && f.ts/3000 > 10 {
				// Ask for a key frame: the next frames must include one soon.
				if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err != nil {
					t.Fatal(err)
				}
				pliSent = true
				for k := 0; ; k++ {
					g := <-frames
					if g.key {
						break
					}
					if k > 10 {
						t.Fatal("no key frame within 10 frames of a PLI")
					}
				}
			}
			if f.img.Rect.Dx() == 640 {
				sawBig = true
				want := yuv.FlipVertical(nil, testPattern(640, 480, int(f.ts/3000)))
				if p := yuv.PSNR(f.img, want); p < 28 {
					t.Errorf("after the resolution change: PSNR %.1f dB", p)
				}
			}
		case <-deadline:
			t.Fatal("no 640x480 frame came back after the resolution change")
		}
	}
	for i := 0; c.plis.Load() == 0; i++ {
		if i == 50 {
			t.Fatal("the server did not ask for a key frame after a lost packet")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSkipFrames: a handler slower than the input is given the newest frame (latency does
// not grow); with skipping off it gets every frame in order.
func TestSkipFrames(t *testing.T) {
	t.Parallel()
	for _, skip := range []bool{true, false} {
		t.Run(fmt.Sprint("skip=", skip), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []uint32
			slow := func(s *Session, f *VideoFrame) (image.Image, error) {
				mu.Lock()
				seen = append(seen, f.RTPTimestamp/3000)
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
				return f.Image, nil
			}
			_, srv := newTestStream(t, VideoFunc(slow), Video, SendReceive, WithSkipFrames(skip))
			c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
			c.connect()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c.sendVideo(ctx, 90)
			time.Sleep(3500 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			last := seen[len(seen)-1]
			if skip {
				// ~35 calls in 3.5 s; the last one saw one of the last frames sent.
				if last < 80 {
					t.Errorf("handler's latest frame is %d of 90: it fell behind", last)
				}
				gaps := 0
				for i := 1; i < len(seen); i++ {
					if seen[i] > seen[i-1]+1 {
						gaps++
					}
				}
				if gaps == 0 {
					t.Error("no frames were skipped")
				}
			} else {
				for i := 1; i < len(seen); i++ {
					if seen[i] != seen[i-1]+1 {
						t.Fatalf("frame %d followed by %d: frames were skipped", seen[i-1], seen[i])
					}
				}
				if last > 45 {
					t.Errorf("handler at frame %d after 3.5 s at 100 ms per frame", last)
				}
			}
		})
	}
}

// TestDataChannelMessages: every client message is answered with "Server received", and a
// handler error reaches the client as an error message and ends the session.
func TestDataChannelMessages(t *testing.T) {
	t.Parallel()
	h := func(s *Session, f *VideoFrame) (image.Image, error) {
		if s.Inputs().Bool("fail") {
			return nil, errors.New("model not loaded")
		}
		return f.Image, nil
	}
	s, srv := newTestStream(t, VideoFunc(h), Video, SendReceive, WithInputs(Checkbox("fail", false)))
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	c.waitMsg("send_input", 5*time.Second)
	if err := c.dc.SendText("hello"); err != nil {
		t.Fatal(err)
	}
	if m := c.waitMsg("log", 5*time.Second); m["data"] != "Server received: hello" {
		t.Errorf("log %v", m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendVideo(ctx, 300)
	sess := s.mustSession(t, c.id)
	if err := s.SetInput(c.id, map[string]any{"fail": true}); err != nil {
		t.Fatal(err)
	}
	m := c.waitMsg("error", 5*time.Second)
	if msg, _ := m["message"].(string); !strings.Contains(msg, "model not loaded") {
		t.Errorf("error message %q", msg)
	}
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end after its handler failed")
	}
}
