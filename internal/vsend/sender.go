// Package vsend sends video over a link whose capacity is not known in advance: it encodes
// images to VP8 at the bit rate a bandwidth estimator allows, lowers the resolution and then
// the frame rate when that rate is too low for the size (scaling the images itself), paces
// the packets, and answers key frame requests at once but not more often than useful.
//
// The server's video path and the Go client share it.
package vsend

import (
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

var errClosed = io.ErrClosedPipe

// Config configures a Sender.
type Config struct {
	// Write sends one RTP packet (a track's WriteRTP). Required.
	Write func(*rtp.Packet) error
	// StartKbps, MinKbps and MaxKbps bound the video bit rate (kbit/s). Start applies
	// until the first estimate.
	StartKbps, MinKbps, MaxKbps int
	// FPS is the source's nominal frame rate (default 30).
	FPS int
	// Speed is VP8's cpu-used (see vpx.EncoderConfig.CPUUsed).
	Speed int
	// Degradation says whether resolution or frame rate gives way first.
	Degradation Degradation
	// OnEncoder, if set, is called with each encoder the sender opens and returns the
	// function the sender calls to close it (the server counts its codecs this way).
	OnEncoder func(closeFn func() error) (closeAndUncount func())
	// Unpaced sends every packet at once and never skips a frame for the pacer's queue
	// (benchmarks that encode faster than real time).
	Unpaced bool
	// Audio, if set, returns the bit rate (bit/s) the connection's audio takes, which
	// the video leaves free.
	Audio func() int
}

// Stats is a snapshot of a Sender.
type Stats struct {
	EstimateBps  int // the link's bandwidth estimate (0: none yet)
	TargetBps    int // the encoder's target bit rate
	Width        int // the size encoded last
	Height       int
	FPS          int           // the frame rate the sender keeps
	Frames       uint64        // frames encoded and sent
	Dropped      uint64        // frames skipped to keep the rate or the pacer's queue short
	KeyFrames    uint64        // key frames sent
	KeyRequests  uint64        // key frame requests received
	PacerDelay   time.Duration // how long the packets waiting in the pacer take to leave
	PacerQueued  uint64        // packets that waited in the pacer
	ScaleChanges uint64        // resolution changes
	Drains       uint64        // sharp falls of the estimate, each followed by a second at a lower target
}

// Sender encodes and sends one video stream. Send is called by one goroutine at a time;
// SetEstimate, SetREMB, RequestKeyFrame and Stats may be called from any goroutine. Close
// releases the encoder and stops the pacer; it is idempotent, and Send after Close returns
// io.ErrClosedPipe.
type Sender struct {
	cfg   Config
	pk    *vp8rtp.Packetizer
	pacer *Pacer

	estimate atomic.Int64 // bit/s from the estimator; 0 none
	remb     atomic.Int64 // bit/s from the receiver's REMB; 0 none
	keyReq   atomic.Bool
	keyReqs  atomic.Uint64

	mu      sync.Mutex // guards the encoder state against Close and Stats
	closed  bool
	enc     *vpx.Encoder
	closer  func()
	ctl     controller
	i420    *image.YCbCr
	small   *image.YCbCr
	buf     []byte
	frames  int
	seenIn  bool
	lastIn  int64     // pts of the last frame given (90 kHz)
	srcIv   float64   // the source's mean frame interval (90 kHz ticks, smoothed)
	credit  float64   // frames the rate hold lets through now (up to 1)
	peak    int       // the highest link estimate of the last drainPeakAge
	peakAt  time.Time // when it was seen
	drain   time.Time // until then, the target is drainFactor lower (a queue to empty)
	lastKey time.Time
	target  int
	stats   Stats
}

// keyGap is the least time between two key frames sent on request: a request that comes
// sooner is answered when it is over (the receiver asked before the last one arrived).
const keyGap = 250 * time.Millisecond

// pacingFactor is the pacing rate over the target, as in libwebrtc: frames leave within a
// fraction of the frame interval, key frames spread over a few.
const pacingFactor = 2.5

// New returns a Sender. Its pacer's goroutine runs until Close.
func New(cfg Config) (*Sender, error) {
	if cfg.Write == nil {
		return nil, errors.New("vsend: Config.Write is nil")
	}
	if cfg.FPS <= 0 {
		cfg.FPS = 30
	}
	if cfg.MaxKbps <= 0 {
		cfg.MaxKbps = vpx.DefaultBitrateKbps
	}
	cfg.MinKbps = min(max(cfg.MinKbps, 30), cfg.MaxKbps)
	if cfg.StartKbps <= 0 {
		cfg.StartKbps = cfg.MaxKbps
	}
	cfg.StartKbps = min(max(cfg.StartKbps, cfg.MinKbps), cfg.MaxKbps)
	s := &Sender{cfg: cfg, pk: vp8rtp.NewPacketizer(0, 96, 1200), ctl: controller{pref: cfg.Degradation, fps: cfg.FPS}}
	s.target = cfg.StartKbps * 1000
	rate := int(float64(s.target) * pacingFactor)
	if cfg.Unpaced {
		rate = 1 << 40
	}
	s.pacer = NewPacer(rate, cfg.Write)
	return s, nil
}

// SetEstimate sets the link's bandwidth estimate in bit/s (the congestion controller's
// target for the whole connection).
func (s *Sender) SetEstimate(bps int) { s.estimate.Store(int64(bps)) }

// SetREMB sets the receiver's estimate of the maximum bit rate (RTCP REMB), which caps the
// sender when the receiver sends no transport-wide feedback.
func (s *Sender) SetREMB(bps int) { s.remb.Store(int64(bps)) }

// RequestKeyFrame asks for a key frame (the receiver sent PLI or FIR).
func (s *Sender) RequestKeyFrame() {
	s.keyReq.Store(true)
	s.keyReqs.Add(1)
}

// Link returns the link's bandwidth estimate (bit/s): the lower of the estimator's and the
// receiver's REMB, or 0 when neither is known.
func (s *Sender) Link() int { return s.link() }

// link returns the bit rate the link allows for the whole connection, or 0 if unknown.
func (s *Sender) link() int {
	est, remb := int(s.estimate.Load()), int(s.remb.Load())
	switch {
	case est > 0 && remb > 0:
		return min(est, remb)
	case est > 0:
		return est
	default:
		return remb
	}
}

// videoTarget returns the encoder's target (bit/s) for a link of link bit/s.
func (s *Sender) videoTarget(link int) int {
	if link <= 0 {
		return s.cfg.StartKbps * 1000
	}
	audio := 0
	if s.cfg.Audio != nil {
		audio = s.cfg.Audio()
	}
	// RTP, SRTP, UDP and IP headers take about 5% at 1200-byte packets, retransmissions
	// a few more on a lossy link, and the encoder overshoots its target on motion: aim
	// 15% under the estimate so that the bottleneck's queue stays short.
	v := int(float64(link-audio) * 0.85)
	return min(max(v, s.cfg.MinKbps*1000), s.cfg.MaxKbps*1000)
}

// Send encodes img (scaled as the link requires) with presentation time pts (90 kHz) and
// sends it with RTP timestamp rtpTS. It may skip the frame: to keep a lower frame rate, or
// while the pacer's queue is long. The image is not retained.
func (s *Sender) Send(img image.Image, pts int64, rtpTS uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := time.Now()
	var src *image.YCbCr
	if y, ok := img.(*image.YCbCr); ok && y.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		src = y // read only
	} else {
		s.i420 = yuv.ToI420(s.i420, img)
		src = s.i420
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	if w <= 0 || h <= 0 {
		return fmt.Errorf("vsend: empty %dx%d image", w, h)
	}
	link := s.link()
	// The size and rate follow the steady target: a drain is too short to be worth the key
	// frame a size change costs (on a 1 Mbit/s link, one froze the picture for a second).
	steady := s.videoTarget(link)
	ew, eh, fps := s.ctl.decide(w, h, steady, now)
	target := s.drainTarget(steady, link, now)
	s.stats.EstimateBps, s.stats.FPS = link, fps
	key := s.frames == 0 || s.keyReq.Load() && now.Sub(s.lastKey) >= keyGap
	hold := s.holdRate(pts, fps)
	if !key {
		// Hold the frame rate, and let the pacer's queue drain: a frame encoded now
		// would wait behind it and arrive late.
		if hold || s.pacer.Delay() > 2*time.Second/time.Duration(fps)+40*time.Millisecond {
			s.stats.Dropped++
			return nil
		}
	}
	if ew != w || eh != h {
		s.small = yuv.Scale(s.small, src, ew, eh)
		src = s.small
	}
	if s.enc == nil {
		enc, err := vpx.NewEncoder(vpx.EncoderConfig{BitrateKbps: target / 1000, FPS: s.cfg.FPS, CPUUsed: s.cfg.Speed, Threads: 1})
		if err != nil {
			return fmt.Errorf("vsend: VP8 encoder: %w", err)
		}
		s.enc, s.closer = enc, func() { _ = enc.Close() }
		if s.cfg.OnEncoder != nil {
			s.closer = s.cfg.OnEncoder(enc.Close)
		}
		s.target = target
	}
	if d := target - s.target; d > s.target/20 || -d > s.target/20 {
		if err := s.enc.SetBitrate(max(target/1000, 1)); err != nil {
			return fmt.Errorf("vsend: %w", err)
		}
		s.target = target
		if !s.cfg.Unpaced {
			s.pacer.SetRate(int(float64(target) * pacingFactor))
		}
	}
	if ew != s.stats.Width || eh != s.stats.Height {
		if s.frames > 0 {
			s.stats.ScaleChanges++
		}
		s.stats.Width, s.stats.Height = ew, eh
	}
	if key {
		s.keyReq.Store(false)
	}
	data, isKey, err := s.enc.Encode(s.buf, src, pts, key)
	if err != nil {
		return fmt.Errorf("vsend: VP8 encode: %w", err)
	}
	s.buf = data
	s.frames++
	if len(data) == 0 {
		s.stats.Dropped++
		return nil
	}
	if isKey {
		s.lastKey = now
		s.stats.KeyFrames++
	}
	s.stats.Frames++
	if err := s.pk.Packetize(data, rtpTS, s.pacer.Send); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return nil // the track closed: the session is ending
		}
		return fmt.Errorf("vsend: send video: %w", err)
	}
	return nil
}

// When the estimate falls under drainDrop of its peak of the last drainPeakAge, the link
// has just narrowed and its queue holds what was sent at the old rate: for drainFor the
// target is drainFactor of what the new estimate allows, so that the queue empties in about
// a second instead of three (at 85% of a 600 kbit/s link, the 0.8 s queue of a link that
// fell from 4 Mbit/s drained at 90 kbit/s). libwebrtc's congestion window pushback does the
// same from the bytes in flight.
const (
	drainDrop    = 0.7
	drainPeakAge = 2 * time.Second
	drainFor     = time.Second
	drainFactor  = 0.6
)

// drainTarget returns target, lowered while a queue drains.
func (s *Sender) drainTarget(target, link int, now time.Time) int {
	if link <= 0 {
		return target
	}
	if link >= s.peak || now.Sub(s.peakAt) > drainPeakAge {
		s.peak, s.peakAt = link, now
	} else if float64(link) < drainDrop*float64(s.peak) {
		s.drain = now.Add(drainFor)
		s.stats.Drains++
		s.peak, s.peakAt = link, now
	}
	if now.Before(s.drain) {
		return max(int(float64(target)*drainFactor), s.cfg.MinKbps*1000)
	}
	return target
}

// holdRate reports whether the frame at pts is to be skipped to hold fps: it keeps the
// share fps/(the source's mean rate) of the frames, evenly (a credit per frame), so that
// the decision follows the source's mean rate, not the gap to the previous frame. Firefox
// stamps a 30 fps canvas on its 60 Hz refresh (gaps of 17, 33 and 50 ms): a gap test
// skipped 142 of its 600 frames on a perfect link.
func (s *Sender) holdRate(pts int64, fps int) bool {
	if s.seenIn {
		if d := float64(pts - s.lastIn); d > 0 && d < 90000 {
			if s.srcIv == 0 {
				s.srcIv = d
			} else {
				s.srcIv += (d - s.srcIv) / 16
			}
		}
	}
	s.seenIn, s.lastIn = true, pts
	keep := 1.0
	if s.srcIv > 0 {
		// Within 5% of the target rate, every frame goes: no beat between the two clocks.
		keep = min(1, s.srcIv*float64(fps)/90000*1.05)
	}
	s.credit = min(s.credit+keep, 1)
	if s.credit < 0.999 {
		return true
	}
	s.credit--
	return false
}

// Stats returns a snapshot of the sender.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.TargetBps = s.target
	s.mu.Unlock()
	st.KeyRequests = s.keyReqs.Load()
	st.PacerDelay = s.pacer.Delay()
	st.PacerQueued = s.pacer.Stats().Queued
	return st
}

// Close stops the pacer and closes the encoder. It is idempotent.
func (s *Sender) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	closer := s.closer
	s.enc, s.closer = nil, nil
	s.mu.Unlock()
	s.pacer.Close()
	if closer != nil {
		closer()
	}
}
