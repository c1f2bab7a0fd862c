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

// runVideoTrack reads an incoming VP8 track: a reader goroutine assembles frames, and this
// goroutine decodes them, runs the handler and sends the result.
func (s *Stream) runVideoTrack(sess *Session, pc *webrtc.PeerConnection, track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, out *videoOut) {
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
		sess.keyReqs.Add(1)
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
	// Reader: RTP -> complete frames. Ends when the track ends (the peer connection closes).
	sess.goFn(func() {
		defer close(frames)
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
				if in := s.cfg.bandwidth.MaxInKbps; in > 0 {
					_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(in) * 1000, SSRCs: []uint32{ssrc}}})
				}
			}
			if seqs := nt.Push(pkt.SequenceNumber, now); len(seqs) > 0 {
				sess.nacks.Add(uint64(len(seqs)))
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
			}
			asm.SetMaxDelay(rtcmedia.Ticks90k(nt.RecoveryWait()))
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
			// Skip to the newest frame only when the handler is really behind: a few
			// frames that completed together (a retransmission filled the gap that held
			// them) are each handled, or every lost packet would cost the picture frames.
			if !s.cfg.skipFrames || len(frames) <= maxBurstFrames {
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
		sess.CloseStream("")
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
