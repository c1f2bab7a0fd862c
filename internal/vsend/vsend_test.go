package vsend

import (
	"image"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// sink records the packets a sender writes, with their times.
type sink struct {
	mu    sync.Mutex
	bytes int
	times []time.Time
	pkts  []rtp.Packet
}

func (k *sink) write(p *rtp.Packet) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bytes += p.MarshalSize()
	k.times = append(k.times, time.Now())
	c := rtp.Packet{Header: p.Header, Payload: append([]byte(nil), p.Payload...)}
	k.pkts = append(k.pkts, c)
	return nil
}

// moving returns frame i of a textured 640x480 picture that moves (so that every frame
// costs bits).
func moving(img *image.YCbCr, i int) *image.YCbCr {
	if img == nil {
		img = yuv.NewI420(640, 480)
	}
	for y := range 480 {
		for x := range 640 {
			v := (x+i*4)/2 + (y/16)*8
			if (x/40+y/40+i/4)%2 == 0 { // a checkerboard that scrolls
				v += 60
			}
			img.Y[y*img.YStride+x] = byte(v)
		}
	}
	for j := range img.Cb {
		img.Cb[j], img.Cr[j] = byte(100+(j%320)/8+i), byte(140-(j/320)/8)
	}
	return img
}

// run sends n frames at 30 fps timestamps (as fast as it can) and returns the stats.
func run(t *testing.T, s *Sender, n int) Stats {
	t.Helper()
	var img *image.YCbCr
	for i := range n {
		img = moving(img, i)
		if err := s.Send(img, int64(i)*3000, uint32(i*3000)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second / 30)
	}
	return s.Stats()
}

func TestSenderScalesDownOnALowEstimate(t *testing.T) {
	var k sink
	s, err := New(Config{Write: k.write, StartKbps: 1500, MaxKbps: 1500})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetEstimate(250_000)
	st := run(t, s, 45)
	if st.Width >= 640 || st.Height >= 480 || st.Height < 180 {
		t.Fatalf("at 250 kbit/s encoded %dx%d; want smaller than 640x480, at least 180 high", st.Width, st.Height)
	}
	if st.TargetBps > 250_000 {
		t.Fatalf("target %d above the estimate", st.TargetBps)
	}
	// The decoded stream has the new size.
	dec, err := vpx.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	asm := vp8rtp.NewAssembler()
	var last *image.YCbCr
	k.mu.Lock()
	for i := range k.pkts {
		for data, _, _, ready, _ := asm.Push(&k.pkts[i]); ready; data, _, _, ready, _ = asm.Pop() {
			pic, err := dec.Decode(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if pic != nil {
				last = pic
			}
		}
	}
	k.mu.Unlock()
	if last == nil || last.Rect.Dx() != st.Width || last.Rect.Dy() != st.Height {
		t.Fatalf("decoded last frame %v, want %dx%d", last.Rect, st.Width, st.Height)
	}
}

func TestSenderFullSizeOnAGoodLink(t *testing.T) {
	var k sink
	s, _ := New(Config{Write: k.write, StartKbps: 1500, MaxKbps: 1500})
	defer s.Close()
	s.SetEstimate(3_000_000)
	st := run(t, s, 30)
	if st.Width != 640 || st.Height != 480 || st.FPS != 30 || st.Dropped != 0 {
		t.Fatalf("good link: %+v; want 640x480 at 30 fps, none dropped", st)
	}
	if st.TargetBps != 1_500_000 {
		t.Fatalf("target %d, want the maximum 1500000", st.TargetBps)
	}
}

func TestSenderMaintainResolutionLowersFrameRate(t *testing.T) {
	var k sink
	s, _ := New(Config{Write: k.write, StartKbps: 300, Degradation: MaintainResolution})
	defer s.Close()
	s.SetEstimate(200_000)
	st := run(t, s, 30)
	if st.Width != 640 || st.FPS >= 30 || st.Dropped == 0 {
		t.Fatalf("maintain-resolution at 200 kbit/s: %+v; want 640 wide, fewer fps, frames skipped", st)
	}
}

func TestSenderKeyFrameRequestsRateLimited(t *testing.T) {
	var k sink
	s, _ := New(Config{Write: k.write})
	defer s.Close()
	s.SetEstimate(2_000_000)
	var img *image.YCbCr
	for i := range 30 { // one second at 30 fps, a key frame request before every frame
		img = moving(img, i)
		s.RequestKeyFrame()
		if err := s.Send(img, int64(i)*3000, uint32(i*3000)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second / 30)
	}
	st := s.Stats()
	// The first frame, then one per keyGap (250 ms): 4 or 5 in a second, not 30.
	if st.KeyFrames < 3 || st.KeyFrames > 6 {
		t.Fatalf("%d key frames for 30 requests in 1 s; want one per %v", st.KeyFrames, keyGap)
	}
}

func TestPacerSpreadsABurst(t *testing.T) {
	var k sink
	p := NewPacer(1_000_000, k.write) // 125 kB/s
	defer p.Close()
	pkt := &rtp.Packet{Payload: make([]byte, 1200)}
	for range 50 { // 60 kB at once: about 0.5 s at the rate
		if err := p.Send(pkt); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		k.mu.Lock()
		n := len(k.times)
		k.mu.Unlock()
		if n == 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.times) != 50 {
		t.Fatalf("%d of 50 packets sent", len(k.times))
	}
	// A burst of at most ~10 ms of budget goes at once; the rest follows the rate.
	if span := k.times[49].Sub(k.times[0]); span < 350*time.Millisecond {
		t.Fatalf("50 packets of 1.2 kB left in %v; at 1 Mbit/s they take ~480 ms", span)
	}
	if st := p.Stats(); st.Queued < 40 {
		t.Fatalf("only %d packets waited", st.Queued)
	}
}

func TestControllerHoldsThenSteps(t *testing.T) {
	c := controller{fps: 30}
	t0 := time.Unix(0, 0)
	// 400 kbit/s is short of 640x480 (~490k) but not by half: a step after downAfter.
	if w, _, _ := c.decide(640, 480, 400_000, t0); w != 640 {
		t.Fatalf("stepped down at once to %d", w)
	}
	if w, _, _ := c.decide(640, 480, 400_000, t0.Add(downAfter)); w != 480 {
		t.Fatalf("after %v: width %d, want 480", downAfter, w)
	}
	// Back up only after upAfter of headroom.
	if w, _, _ := c.decide(640, 480, 2_000_000, t0.Add(downAfter+time.Second)); w != 480 {
		t.Fatalf("stepped up at once: %d", w)
	}
	c.decide(640, 480, 2_000_000, t0.Add(downAfter+time.Second))
	if w, _, _ := c.decide(640, 480, 2_000_000, t0.Add(downAfter+time.Second+upAfter)); w != 640 {
		t.Fatalf("after %v of headroom: width %d, want 640", upAfter, w)
	}
	// Far below: straight down without waiting, and frame rate once at the smallest.
	var w, fps int
	for i := range 10 {
		w, _, fps = c.decide(640, 480, 30_000, t0.Add(10*time.Second+time.Duration(i)*time.Millisecond))
	}
	if w != 160 || fps >= 30 || fps < 10 {
		t.Fatalf("at 30 kbit/s: width %d fps %d; want 160 and 10..29 fps", w, fps)
	}
}

// TestHoldRate: the frame-rate hold keeps fps/(source rate) of the frames whatever the
// jitter of their timestamps: a 30 fps source stamped on a 60 Hz grid (Firefox's canvas)
// loses none at 30 fps; a 60 fps source keeps every other frame at 30.
func TestHoldRate(t *testing.T) {
	kept := func(n int, fps int, pts func(i int) int64) int {
		var s Sender
		k := 0
		for i := range n {
			if !s.holdRate(pts(i), fps) {
				k++
			}
		}
		return k
	}
	grid60 := func(i int) int64 { // frame i at 33.3 ms, rounded to the next 16.7 ms tick, with a wobble
		ms := float64(i)*1000/30 + float64(i%3)*6
		tick := int64(ms/(1000.0/60)) + 1
		return tick * 1500
	}
	if k := kept(600, 30, grid60); k < 594 {
		t.Errorf("30 fps on a 60 Hz grid at 30 fps: kept %d of 600", k)
	}
	if k := kept(600, 30, func(i int) int64 { return int64(i) * 1500 }); k < 295 || k > 305 {
		t.Errorf("60 fps at 30 fps: kept %d of 600, want ~300", k)
	}
	if k := kept(600, 15, func(i int) int64 { return int64(i) * 3000 }); k < 295 || k > 305 {
		t.Errorf("30 fps at 15 fps: kept %d of 600, want ~300", k)
	}
	if k := kept(300, 30, func(i int) int64 { return int64(i) * 3000 }); k != 300 {
		t.Errorf("30 fps at 30 fps: kept %d of 300", k)
	}
}

// TestDrainAfterAFall: when the estimate falls sharply, the target stays 40% lower for a
// second (the link's queue holds what was sent at the old rate); a slow decline does not.
func TestDrainAfterAFall(t *testing.T) {
	var s Sender
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	if got := s.drainTarget(1_200_000, 1_500_000, at(0)); got != 1_200_000 {
		t.Fatalf("steady: %d", got)
	}
	for _, c := range []struct{ ms, want int }{{100, 300_000}, {1099, 300_000}, {1101, 500_000}} {
		if got := s.drainTarget(500_000, 600_000, at(c.ms)); got != c.want {
			t.Fatalf("at %d ms after a fall to 600 kbit/s: target %d, want %d", c.ms, got, c.want)
		}
	}
	// 10% less every 1.5 s: never 30% under the peak of the last two seconds.
	link := 600_000
	for ms := 3000; ms < 12000; ms += 1500 {
		link = link * 9 / 10
		if got := s.drainTarget(link*8/10, link, at(ms)); got != link*8/10 {
			t.Fatalf("slow decline at %d ms: target %d, want %d", ms, got, link*8/10)
		}
	}
	if s.stats.Drains != 1 {
		t.Fatalf("drains %d, want 1", s.stats.Drains)
	}
}
