package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"

	"errors"
	"fmt"
	"image"
	"io"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/vsend"
)

// videoOut sends a session's video through a vsend.Sender: encoded at the rate the link
// allows (the connection's bandwidth estimate), scaled down when that rate is too low for
// the handler's size, paced. Used by one goroutine at a time; the sender's setters (the
// estimate, key frame requests) are safe from any goroutine.
type videoOut struct {
	snd     *vsend.Sender
	lastPTS int64
	frames  int
}

// newVideoOut makes the sender of a session's outgoing video track.
func (s *Stream) newVideoOut(write func(*rtp.Packet) error, audio func() int) (*videoOut, error) {
	b := s.cfg.bandwidth
	snd, err := vsend.New(vsend.Config{
		Write: write, StartKbps: b.StartKbps, MinKbps: b.MinKbps, MaxKbps: b.MaxKbps,
		FPS: s.cfg.fps, Speed: s.cfg.vp8Speed, Degradation: vsend.Degradation(s.cfg.degradation),
		OnEncoder: s.codecOpened, Audio: audio,
	})
	if err != nil {
		return nil, fmt.Errorf("fastrtc: video sender: %w", err)
	}
	return &videoOut{snd: snd}, nil
}

// The largest video frame accepted from a client or a handler: 4K UHD. A VP8 key frame
// declares its size in a few header bytes, and libvpx allocates for it before decoding, so a
// client could otherwise make the server allocate gigabytes with one small packet.
const maxVideoWidth, maxVideoHeight = 3840, 2160

// vp8KeyFrameSize reads a VP8 key frame's width and height (RFC 6386, 9.1).
func vp8KeyFrameSize(b []byte) (w, h int, ok bool) {
	if len(b) < 10 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, false
	}
	return int(b[6]) | int(b[7]&0x3f)<<8, int(b[8]) | int(b[9]&0x3f)<<8, true
}

// maxQueuedVideoBytes bounds the compressed video a session queues for its decoder: a few
// seconds of 4K at a high bitrate. Frames beyond it are dropped (and a key frame requested).
const maxQueuedVideoBytes = 16 << 20

// compressedFrame is one assembled VP8 frame waiting to be decoded.
type compressedFrame struct {
	data []byte
	ts   uint32
	key  bool
}

// setupVideo adds the outgoing video track when the client receives video, and returns the
// function that runs an incoming video track when the client sends video.
func (s *Stream) setupVideo(sess *Session, pc *webrtc.PeerConnection, est cc.BandwidthEstimator) (onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver), err error) {
	if !hasTransceiver(pc, webrtc.RTPCodecTypeVideo) {
		return nil, fmt.Errorf("fastrtc: the offer has no video section, but this is a %s stream", s.modality)
	}
	var out *videoOut
	if s.mode.clientReceives() {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "fastrtc-"+sess.id)
		if err != nil {
			return nil, fmt.Errorf("fastrtc: video track: %w", err)
		}
		sender, err := pc.AddTrack(track)
		if err != nil {
			return nil, fmt.Errorf("fastrtc: add video track: %w", err)
		}
		var audio func() int
		if s.modality == AudioVideo {
			audio = func() int { return int(sess.opusBitrate.Load()) }
		}
		if out, err = s.newVideoOut(track.WriteRTP, audio); err != nil {
			return nil, err
		}
		sess.onEnd(func() { out.close(s) })
		if est != nil {
			est.OnTargetBitrateChange(func(bps int) { out.snd.SetEstimate(bps) })
		}
		sess.video.Store(out)
		sess.goFn(func() {
			rtcmedia.ReadSenderRTCP(sender, rtcmedia.RTCPHandlers{KeyFrame: out.snd.RequestKeyFrame, REMB: out.snd.SetREMB})
		})
	}
	if s.mode == Receive && s.videoSrc != nil {
		sess.goFn(func() { s.runVideoSource(sess, out) })
	}
	if !s.mode.clientSends() {
		return nil, nil
	}
	return func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		s.runVideoTrack(sess, pc, track, recv, out)
	}, nil
}

func hasTransceiver(pc *webrtc.PeerConnection, kind webrtc.RTPCodecType) bool {
	for _, t := range pc.GetTransceivers() {
		if t.Kind() == kind {
			return true
		}
	}
	return false
}

// runVideoTrack runs an incoming VP8 track, in three steps: a reader goroutine turns RTP
// into complete frames and queues them (readRTP), this goroutine decodes them (decode), and
// each picture goes through the handler and back to the client (handle).
func (s *Stream) runVideoTrack(sess *Session, pc *webrtc.PeerConnection, track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, out *videoOut) {
	in := &videoIn{s: s, sess: sess, pc: pc, ssrc: uint32(track.SSRC()),
		frames: make(chan compressedFrame, 64), free: make(chan []byte, 8), needKey: true}
	if !sess.goFn(func() { in.readRTP(track, recv) }) {
		return // the session is ending: nothing would close the queue
	}
	dec, err := vpx.NewDecoder()
	if err != nil {
		sess.fail(err)
		return
	}
	defer s.codecOpened(dec.Close)()
	if out != nil {
		defer out.close(s)
	}
	defer in.drain()
	var clock videoClock
	if s.cfg.fpsSet {
		clock.minGap = int64(90000/s.cfg.fps) * 85 / 100
	}
	frame := &VideoFrame{} // reused: the handler may not keep it past its return
	for f := range in.frames {
		if sess.ctx.Err() != nil {
			return // the session ended: drop what is queued
		}
		img, ts, err := in.decode(dec, f)
		if err != nil {
			sess.fail(err)
			return
		}
		if img == nil {
			continue
		}
		pts, keep := clock.advance(ts)
		if !keep {
			continue
		}
		frame.Image, frame.RTPTimestamp, frame.Index = img, ts, clock.index
		frame.Timestamp = time.Duration(pts) * time.Second / 90000
		clock.index++
		if err := s.handleVideo(sess, frame, out, pts); err != nil {
			sess.fail(err)
			return
		}
	}
}

// videoIn is the receiving side of one incoming video track: the frame queue between the
// RTP reader and the decoder, and the key-frame requests both make. The reader goroutine
// owns the assembler; the decoding goroutine owns needKey; the rest is atomic or channels.
type videoIn struct {
	s      *Stream
	sess   *Session
	pc     *webrtc.PeerConnection
	ssrc   uint32
	frames chan compressedFrame
	free   chan []byte // recycled frame buffers: the queue is rarely deeper than a few frames

	lastPLI     atomic.Int64 // when a key frame was last asked for (Unix ns)
	dropped     atomic.Bool  // a frame was dropped: the decoder must wait for a key frame
	queuedBytes atomic.Int64 // bytes of the frames in the queue
	needKey     bool         // the decoder waits for a key frame (decoding goroutine only)
}

// requestKey asks the client for a key frame (PLI), at most every 200 ms.
func (v *videoIn) requestKey() {
	now := time.Now().UnixNano()
	if last := v.lastPLI.Load(); now-last < int64(200*time.Millisecond) || !v.lastPLI.CompareAndSwap(last, now) {
		return
	}
	v.sess.keyReqs.Add(1)
	_ = v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: v.ssrc}})
}

// readRTP turns the track's RTP into complete frames (asking again for lost packets, NACK)
// and queues them. It closes the queue when the track ends (the peer connection closes).
func (v *videoIn) readRTP(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	defer close(v.frames)
	asm := vp8rtp.NewAssembler()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var nt rtcmedia.NackTracker
	var wait recoveryWait
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		if wait.due(now) {
			nt.SetRTT(rtcmedia.RTT(recv.Transport()))
			if in := v.s.cfg.bandwidth.MaxInKbps; in > 0 {
				_ = v.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(in) * 1000, SSRCs: []uint32{v.ssrc}}})
			}
		}
		if seqs := nt.Push(pkt.SequenceNumber, now); len(seqs) > 0 {
			v.sess.nacks.Add(uint64(len(seqs)))
			_ = v.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: v.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
		}
		asm.SetMaxDelay(rtcmedia.Ticks90k(nt.RecoveryWait()))
		// One packet may complete several frames (a late packet filling a gap).
		for data, ts, key, ready, lost := asm.Push(&pkt); ready || lost; data, ts, key, ready, lost = asm.Pop() {
			if lost {
				v.requestKey()
			}
			if !ready {
				break
			}
			v.enqueue(data, ts, key)
		}
	}
}

// enqueue queues a complete frame for the decoder, or drops it (and asks for a key frame)
// when the queue is full in frames or bytes: 64 frames of up to 8 MiB each would otherwise
// let a client pin half a gigabyte.
func (v *videoIn) enqueue(data []byte, ts uint32, key bool) {
	if v.queuedBytes.Load()+int64(len(data)) > maxQueuedVideoBytes {
		v.dropped.Store(true)
		v.requestKey()
		return
	}
	var b []byte
	select {
	case b = <-v.free:
	default:
	}
	f := compressedFrame{data: append(b[:0], data...), ts: ts, key: key}
	select {
	case v.frames <- f:
		v.queuedBytes.Add(int64(len(f.data)))
		v.s.videoQueued.Add(int64(len(f.data)))
	default: // the decoder is far behind: drop, and restart from a key frame
		v.dropped.Store(true)
		v.requestKey()
	}
}

// decode decodes f and, when the handler is behind, the frames queued after it (decoding is
// cheap and keeps the reference chain), and returns the newest picture: nil when none could
// be decoded. Its error (an oversized key frame) ends the session.
func (v *videoIn) decode(dec *vpx.Decoder, f compressedFrame) (img *image.YCbCr, ts uint32, err error) {
	s := v.s
	for {
		if v.dropped.Swap(false) {
			v.needKey = true
		}
		if f.key {
			if w, h, ok := vp8KeyFrameSize(f.data); !ok || w > maxVideoWidth || h > maxVideoHeight {
				return nil, 0, fmt.Errorf("fastrtc: the client sent a %dx%d video frame; the maximum is %dx%d", w, h, maxVideoWidth, maxVideoHeight)
			}
		}
		if v.needKey && !f.key {
			v.requestKey()
		} else {
			t0 := time.Now()
			pic, err := dec.Decode(f.data)
			s.metrics.vp8Dec.since(t0)
			if err != nil {
				v.needKey = true
				v.requestKey()
				v.sess.log.Debug("decode error", "err", err)
			} else if pic != nil {
				v.needKey = false
				img, ts = pic, f.ts
			}
		}
		v.release(f)
		// Skip to the newest frame only when the handler is really behind: a few frames
		// that completed together (a retransmission filled the gap that held them) are
		// each handled, or every lost packet would cost the picture frames.
		if !s.cfg.skipFrames || len(v.frames) <= maxBurstFrames {
			return img, ts, nil
		}
		next, ok := <-v.frames
		if !ok {
			return img, ts, nil
		}
		f = next
	}
}

// release uncounts a frame taken off the queue and recycles its buffer.
func (v *videoIn) release(f compressedFrame) {
	v.queuedBytes.Add(-int64(len(f.data)))
	v.s.videoQueued.Add(-int64(len(f.data)))
	if cap(f.data) <= 1<<20 { // recycle ordinary buffers; let rare huge ones go
		select {
		case v.free <- f.data:
		default:
		}
	}
}

// drain uncounts what is left in the queue (the reader closes it on its way out).
func (v *videoIn) drain() {
	for f := range v.frames {
		v.release(f)
	}
}

// videoClock unwraps a track's 32-bit RTP timestamps and applies WithFPS: frames closer
// than minGap (85% of the frame interval) to the last one kept are skipped.
type videoClock struct {
	last     uint32
	pts      int64 // unwrapped, 90 kHz
	started  bool
	lastKept int64
	minGap   int64
	index    int // frames given to the handler
}

// advance takes the next picture's RTP timestamp and returns its unwrapped time and whether
// the handler gets it.
func (c *videoClock) advance(ts uint32) (pts int64, keep bool) {
	if !c.started {
		c.last, c.started, c.lastKept = ts, true, -1<<62
	}
	c.pts += int64(int32(ts - c.last))
	c.last = ts
	if c.minGap > 0 && c.pts-c.lastKept < c.minGap {
		return c.pts, false
	}
	c.lastKept = c.pts
	return c.pts, true
}

// handleVideo gives a frame to the handler and sends what it returns (pts: 90 kHz).
func (s *Stream) handleVideo(sess *Session, frame *VideoFrame, out *videoOut, pts int64) error {
	sess.counters.videoIn.Add(1)
	rtpTS := frame.RTPTimestamp // the handler may change the frame
	t0 := time.Now()
	res, err := s.callVideo(sess, frame)
	s.metrics.handlerVideo.since(t0)
	if err != nil {
		return err
	}
	if out == nil || res == nil {
		return nil
	}
	if err := out.send(s, res, pts, rtpTS); err != nil {
		return err
	}
	sess.counters.videoOut.Add(1)
	return nil
}

// callVideo runs the handler, turning a panic into an error.
func (s *Stream) callVideo(sess *Session, f *VideoFrame) (img image.Image, err error) {
	fn := s.videoFn
	if fn == nil { // audio-video
		fn = sess.handler.(AudioVideoHandler).Video
	}
	err = safely(func() (err error) {
		img, err = fn(sess, f)
		return err
	})
	return img, handlerError(err)
}

// send encodes img and sends it with the given presentation time (90 kHz) and RTP timestamp.
func (o *videoOut) send(s *Stream, img image.Image, pts int64, rtpTS uint32) error {
	if b := img.Bounds(); b.Dx() > maxVideoWidth || b.Dy() > maxVideoHeight {
		return fmt.Errorf("fastrtc: the handler returned a %dx%d image; the maximum is %dx%d", b.Dx(), b.Dy(), maxVideoWidth, maxVideoHeight)
	}
	if o.frames > 0 && pts <= o.lastPTS {
		pts = o.lastPTS + 1
	}
	o.lastPTS = pts
	o.frames++
	t0 := time.Now()
	err := o.snd.Send(img, pts, rtpTS)
	s.metrics.vp8Enc.since(t0)
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return fmt.Errorf("fastrtc: %w", err)
	}
	return nil
}

// close stops the pacer and frees the encoder; idempotent.
func (o *videoOut) close(*Stream) { o.snd.Close() }

// runVideoSource paces a receive-mode generator at the stream's fps once connected.
func (s *Stream) runVideoSource(sess *Session, out *videoOut) {
	select {
	case <-sess.connected:
	case <-sess.ctx.Done():
		return
	}
	defer out.close(s)
	interval := time.Second / time.Duration(s.cfg.fps)
	tick := int64(90000 / s.cfg.fps)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	next := time.Now()
	var i int64
	for img, err := range s.videoSrc(sess) {
		if err != nil {
			sess.fail(handlerError(err))
			return
		}
		if sess.ctx.Err() != nil {
			return
		}
		if img == nil {
			continue
		}
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-sess.ctx.Done():
				return
			}
		} else if d < -interval {
			next = time.Now() // fell behind (slow generator): do not burst to catch up
		}
		if err := out.send(s, img, i*tick, uint32(i*tick)); err != nil {
			sess.fail(err)
			return
		}
		i++
		next = next.Add(interval)
	}
	if sess.ctx.Err() == nil {
		sess.End("")
	}
}

// maxBurstFrames is how many queued frames a skipping handler still takes in order: about
// 130 ms of 30 fps video, the burst one recovered packet releases.
const maxBurstFrames = 4

// recoveryWait refreshes, once a second, the transport's round trip, which spaces NACKs and
// sets the assembler's wait for a missing packet (rtcmedia.NackTracker.RecoveryWait), and
// sends the client the incoming video's cap (Bandwidth.MaxInKbps, as REMB).
type recoveryWait struct{ next time.Time }

func (w *recoveryWait) due(now time.Time) bool {
	if now.Before(w.next) {
		return false
	}
	w.next = now.Add(time.Second)
	return true
}
