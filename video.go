package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"

	"errors"
	"fmt"
	"image"
	"io"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// videoOut sends a session's video: it converts, encodes and packetizes images. Used by one
// goroutine at a time, except forceKey, which the RTCP reader sets.
type videoOut struct {
	write    func(*rtp.Packet) error // sends one packet (a track's WriteRTP)
	pk       *vp8rtp.Packetizer
	enc      *vpx.Encoder
	closeEnc func() // closes enc and uncounts it
	forceKey atomic.Bool
	i420     *image.YCbCr
	buf      []byte
	lastPTS  int64
	frames   int
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
func (s *Stream) setupVideo(sess *Session, pc *webrtc.PeerConnection) (onTrack func(*webrtc.TrackRemote), err error) {
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
		out = &videoOut{write: track.WriteRTP, pk: vp8rtp.NewPacketizer(0, 96, 1200)}
		sess.goFn(func() { rtcmedia.ReadSenderRTCP(sender, func() { out.forceKey.Store(true) }) })
	}
	if s.mode == Receive && s.videoSrc != nil {
		sess.goFn(func() { s.runVideoSource(sess, out) })
	}
	if !s.mode.clientSends() {
		return nil, nil
	}
	return func(track *webrtc.TrackRemote) {
		s.runVideoTrack(sess, pc, track, out)
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

// runVideoTrack reads an incoming VP8 track: a reader goroutine assembles frames, and this
// goroutine decodes them, runs the handler and sends the result.
func (s *Stream) runVideoTrack(sess *Session, pc *webrtc.PeerConnection, track *webrtc.TrackRemote, out *videoOut) {
	frames := make(chan compressedFrame, 64)
	free := make(chan []byte, 8) // recycled frame buffers: the queue is rarely deeper than a few frames
	ssrc := uint32(track.SSRC())
	var lastPLI atomic.Int64
	var dropped atomic.Bool      // a frame was dropped: the decoder must wait for a key frame
	var queuedBytes atomic.Int64 // bytes of the frames in the queue
	requestKey := func() {
		now := time.Now().UnixNano()
		if last := lastPLI.Load(); now-last < int64(200*time.Millisecond) || !lastPLI.CompareAndSwap(last, now) {
			return
		}
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
	// Reader: RTP -> complete frames. Ends when the track ends (the peer connection closes).
	sess.goFn(func() {
		defer close(frames)
		asm := vp8rtp.NewAssembler()
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			n, _, err := track.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			// One packet may complete several frames (a late packet filling a gap).
			for data, ts, key, ready, lost := asm.Push(&pkt); ready || lost; data, ts, key, ready, lost = asm.Pop() {
				if lost {
					requestKey()
				}
				if !ready {
					break
				}
				// The queue is bounded in bytes as well as frames: 64 frames of up to
				// 8 MiB each would let a client pin half a gigabyte.
				if queuedBytes.Load()+int64(len(data)) > maxQueuedVideoBytes {
					dropped.Store(true)
					requestKey()
					continue
				}
				var b []byte
				select {
				case b = <-free:
				default:
				}
				f := compressedFrame{data: append(b[:0], data...), ts: ts, key: key}
				select {
				case frames <- f:
					queuedBytes.Add(int64(len(f.data)))
					s.videoQueued.Add(int64(len(f.data)))
				default: // the decoder is far behind: drop, and restart from a key frame
					dropped.Store(true)
					requestKey()
				}
			}
		}
	})

	dec, err := vpx.NewDecoder()
	if err != nil {
		sess.fail(err)
		return
	}
	defer s.codecOpened(dec.Close)()
	if out != nil {
		defer out.close(s)
	}
	frame := &VideoFrame{} // reused: the handler may not keep it past its return
	var (
		lastTS    uint32
		unwrapped int64
		started   bool
		needKey   = true
		index     int
		lastSent  int64 = -1 << 62
		minGap    int64
	)
	if s.cfg.fpsSet {
		minGap = int64(90000/s.cfg.fps) * 85 / 100
	}
	defer func() { // uncount what is left in the queue (the reader closes it on its way out)
		for f := range frames {
			queuedBytes.Add(-int64(len(f.data)))
			s.videoQueued.Add(-int64(len(f.data)))
		}
	}()
	for f := range frames {
		if sess.ctx.Err() != nil {
			return // the session ended: drop what is queued
		}
		// Decode every queued frame (decoding is cheap and keeps the reference chain); run
		// the handler only on the newest one when skipping.
		var img *image.YCbCr
		var ts uint32
		for {
			if dropped.Swap(false) {
				needKey = true
			}
			if f.key {
				if w, h, ok := vp8KeyFrameSize(f.data); !ok || w > maxVideoWidth || h > maxVideoHeight {
					sess.fail(fmt.Errorf("fastrtc: the client sent a %dx%d video frame; the maximum is %dx%d", w, h, maxVideoWidth, maxVideoHeight))
					return
				}
			}
			if needKey && !f.key {
				requestKey()
			} else {
				t0 := time.Now()
				pic, err := dec.Decode(f.data)
				s.metrics.vp8Dec.since(t0)
				if err != nil {
					needKey = true
					requestKey()
					sess.log.Debug("decode error", "err", err)
				} else if pic != nil {
					needKey = false
					img, ts = pic, f.ts
				}
			}
			queuedBytes.Add(-int64(len(f.data)))
			s.videoQueued.Add(-int64(len(f.data)))
			if cap(f.data) <= 1<<20 { // recycle ordinary buffers; let rare huge ones go
				select {
				case free <- f.data:
				default:
				}
			}
			if !s.cfg.skipFrames || len(frames) == 0 {
				break
			}
			next, ok := <-frames
			if !ok {
				break
			}
			f = next
		}
		if img == nil {
			continue
		}
		if !started {
			lastTS, started = ts, true
		}
		unwrapped += int64(int32(ts - lastTS))
		lastTS = ts
		if minGap > 0 && unwrapped-lastSent < minGap {
			continue
		}
		lastSent = unwrapped
		frame.Image, frame.RTPTimestamp, frame.Index = img, ts, index
		frame.Timestamp = time.Duration(unwrapped) * time.Second / 90000
		index++
		sess.counters.videoIn.Add(1)
		t0 := time.Now()
		res, err := s.callVideo(sess, frame)
		s.metrics.handlerVideo.since(t0)
		if err != nil {
			sess.fail(err)
			return
		}
		if out == nil || res == nil {
			continue
		}
		if err := out.send(s, res, unwrapped, ts); err != nil {
			sess.fail(err)
			return
		}
		sess.counters.videoOut.Add(1)
	}
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
	if o.enc == nil {
		enc, err := vpx.NewEncoder(vpx.EncoderConfig{BitrateKbps: s.cfg.bitrateKbps, FPS: s.cfg.fps, CPUUsed: s.cfg.vp8Speed, Threads: 1})
		if err != nil {
			return fmt.Errorf("fastrtc: VP8 encoder: %w", err)
		}
		o.enc, o.closeEnc = enc, s.codecOpened(enc.Close)
	}
	if o.frames > 0 && pts <= o.lastPTS {
		pts = o.lastPTS + 1
	}
	o.lastPTS = pts
	var src *image.YCbCr
	if y, ok := img.(*image.YCbCr); ok && y.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		src = y // encoded as is (libvpx only reads it)
	} else {
		o.i420 = yuv.ToI420(o.i420, img) // into our own buffer, never the handler's image
		src = o.i420
	}
	if b := src.Rect; b.Dx() > maxVideoWidth || b.Dy() > maxVideoHeight {
		return fmt.Errorf("fastrtc: the handler returned a %dx%d image; the maximum is %dx%d", b.Dx(), b.Dy(), maxVideoWidth, maxVideoHeight)
	}
	t0 := time.Now()
	data, _, err := o.enc.Encode(o.buf, src, pts, o.forceKey.Swap(false) || o.frames == 0)
	s.metrics.vp8Enc.since(t0)
	if err != nil {
		return fmt.Errorf("fastrtc: VP8 encode: %w", err)
	}
	o.buf = data
	o.frames++
	if len(data) == 0 {
		return nil
	}
	err = o.pk.Packetize(data, rtpTS, o.write)
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return fmt.Errorf("fastrtc: send video: %w", err)
	}
	return nil
}

func (o *videoOut) close(s *Stream) {
	if o.enc != nil {
		o.closeEnc()
		o.enc, o.closeEnc = nil, nil
	}
}

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
		sess.CloseStream("")
	}
}
