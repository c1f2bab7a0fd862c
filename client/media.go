package client

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/pcm"
	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"
	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/vsend"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
	"github.com/fastrtc-go/fastrtc/media"
)

// maxVideoDim is the largest frame SendVideo encodes (4K UHD, the server's limit too).
const maxVideoW, maxVideoH = 3840, 2160

// videoSend is the state of the outgoing video, guarded by mu.
type videoSend struct {
	mu      sync.Mutex
	snd     *vsend.Sender // SendVideo's encoder, scaler and pacer; set at setup, never changed
	pk      *vp8rtp.Packetizer
	i420    *image.YCbCr
	started bool
	lastTS  uint32
	pts     int64
	closed  bool
}

// videoRecv is the state of the incoming video, guarded by mu.
type videoRecv struct {
	mu      sync.Mutex
	asm     *vp8rtp.Assembler
	dec     *vpx.Decoder
	buf     []byte
	pkt     rtp.Packet
	pop     bool // the assembler may hold more completed frames
	frame   media.VideoFrame
	lastPLI time.Time
	started bool
	lastTS  uint32
	unwrap  int64
	closed  bool
	count   int
	rawBuf  []byte
	rawPkt  rtp.Packet
	nt      rtcmedia.NackTracker
	nextRTT time.Time
}

// audioSend is the state of the outgoing audio, guarded by mu.
type audioSend struct {
	mu      sync.Mutex
	enc     *opus.Encoder
	rs      *resample.Resampler
	rsRate  int
	rsCh    int
	mixed   []int16 // input converted to the wire's channel count
	pending []int16 // 48 kHz samples waiting for a whole 20 ms frame
	out     []byte
	pkt     rtp.Packet
	clock   pacer
	closed  bool
}

// audioRecv is the state of the incoming audio, guarded by mu.
type audioRecv struct {
	mu        sync.Mutex
	dec       *opus.Decoder
	pcm       []int16
	buf       []byte
	pkt       rtp.Packet
	ro        rtcmedia.Reorder // puts overtaken packets back in place (as the server does)
	jitter    float64          // RFC 3550 interarrival jitter, seconds
	lastAt    time.Time
	lastTS    uint32
	frameSize int
	closed    bool
	rawBuf    []byte
	rawPkt    rtp.Packet
}

// closeMedia frees the codecs (Close, after every goroutine has stopped).
func (c *Conn) closeMedia() {
	c.vs.mu.Lock()
	c.vs.closed = true
	if c.vs.snd != nil {
		c.vs.snd.Close()
	}
	c.vs.mu.Unlock()
	c.vr.mu.Lock()
	c.vr.closed = true
	if c.vr.dec != nil {
		_ = c.vr.dec.Close()
	}
	c.vr.mu.Unlock()
	c.as.mu.Lock()
	c.as.closed = true
	if c.as.enc != nil {
		_ = c.as.enc.Close()
	}
	c.as.mu.Unlock()
	c.ar.mu.Lock()
	c.ar.closed = true
	if c.ar.dec != nil {
		_ = c.ar.dec.Close()
	}
	c.ar.mu.Unlock()
}

func writeErr(what string, err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return ErrClosed
	}
	return fmt.Errorf("client: %s: %w", what, err)
}

// SendVideo encodes img as VP8 and sends it with the given 90 kHz RTP timestamp (frame i
// of a 30 fps stream: i*3000). FastRTC servers return each processed frame with the RTP
// timestamp it came with, so the timestamp matches replies to frames. The first frame is a
// key frame, and a key frame request from the server is answered with the next frame (at
// most one per 250 ms). On a slow link frames are scaled down or skipped to keep to the
// connection's bandwidth estimate (Options.VideoDegradation; VideoSendStats). A *image.YCbCr
// 4:2:0 image is encoded in place (read only, not retained); other images are converted
// first. The caller paces the frames; ctx is checked before encoding.
func (c *Conn) SendVideo(ctx context.Context, img image.Image, rtpTimestamp uint32) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: send video: %w", err)
	}
	if c.videoTrack == nil {
		return fmt.Errorf("client: send video: %w", ErrNoTrack)
	}
	vs := &c.vs
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.closed {
		return ErrClosed
	}
	var src *image.YCbCr
	if y, ok := img.(*image.YCbCr); ok && y.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		src = y
	} else {
		vs.i420 = yuv.ToI420(vs.i420, img)
		src = vs.i420
	}
	if b := src.Rect; b.Dx() > maxVideoW || b.Dy() > maxVideoH || b.Dx() <= 0 || b.Dy() <= 0 {
		return fmt.Errorf("client: send video: %dx%d image: want 1x1 to %dx%d", b.Dx(), b.Dy(), maxVideoW, maxVideoH)
	}
	// Presentation time: the RTP timestamp unwrapped, strictly increasing.
	if vs.started {
		d := int64(int32(rtpTimestamp - vs.lastTS))
		if d <= 0 {
			d = 1
		}
		vs.pts += d
	}
	vs.started, vs.lastTS = true, rtpTimestamp
	if err := vs.snd.Send(src, vs.pts, rtpTimestamp); err != nil {
		return writeErr("send video", err)
	}
	return nil
}

// VideoSendStats is a snapshot of SendVideo's congestion control.
type VideoSendStats struct {
	EstimateBps   int // the link's bandwidth estimate (0: no feedback yet)
	TargetBps     int // the encoder's target bit rate
	Width, Height int // the size encoded last (frames are scaled down on a slow link)
	FPS           int // the frame rate kept
	Frames        uint64
	Dropped       uint64 // frames skipped to keep the rate or let the pacer's queue drain
	KeyFrames     uint64
}

// VideoSendStats returns SendVideo's figures (zero when the client sends no video).
func (c *Conn) VideoSendStats() VideoSendStats {
	if c.vs.snd == nil {
		return VideoSendStats{}
	}
	s := c.vs.snd.Stats()
	return VideoSendStats{EstimateBps: s.EstimateBps, TargetBps: s.TargetBps, Width: s.Width, Height: s.Height,
		FPS: s.FPS, Frames: s.Frames, Dropped: s.Dropped, KeyFrames: s.KeyFrames}
}

// WriteVP8 sends one pre-encoded VP8 frame with the given 90 kHz RTP timestamp,
// packetized (RFC 7741) without decoding or re-encoding: the light path for load tools.
// The caller answers key frame requests (see KeyFrameRequested) with its next key frame.
// frame is not retained.
func (c *Conn) WriteVP8(frame []byte, rtpTimestamp uint32) error {
	if c.videoTrack == nil {
		return fmt.Errorf("client: send video: %w", ErrNoTrack)
	}
	c.vs.mu.Lock()
	defer c.vs.mu.Unlock()
	if c.vs.closed {
		return ErrClosed
	}
	return c.writeVP8Locked(frame, rtpTimestamp)
}

func (c *Conn) writeVP8Locked(frame []byte, ts uint32) error {
	if len(frame) == 0 {
		return nil
	}
	if c.vs.pk == nil {
		c.vs.pk = vp8rtp.NewPacketizer(0, 96, vp8rtp.DefaultMTU) // the track rewrites SSRC and payload type
	}
	if err := c.vs.pk.Packetize(frame, ts, c.videoTrack.WriteRTP); err != nil {
		return writeErr("send video", err)
	}
	return nil
}

// WriteVideoRTP sends one raw RTP packet on the video track (its SSRC and payload type
// are rewritten to the negotiated ones). It does not retain p.
func (c *Conn) WriteVideoRTP(p *rtp.Packet) error {
	if c.videoTrack == nil {
		return fmt.Errorf("client: send video: %w", ErrNoTrack)
	}
	c.vs.mu.Lock()
	defer c.vs.mu.Unlock()
	if err := c.videoTrack.WriteRTP(p); err != nil {
		return writeErr("send video", err)
	}
	return nil
}

// ReadVideo returns the next video frame from the server, decoded. Frames that cannot be
// decoded (after loss, until the next key frame) are skipped, and a key frame is requested
// (RTCP PLI, at most every 200 ms). The returned frame, its Image and the buffers of its
// methods are reused: they are valid until the next ReadVideo or Close and must not be
// modified (use Writable or copy). Timestamp counts from the first frame ReadVideo
// returned.
func (c *Conn) ReadVideo(ctx context.Context) (*media.VideoFrame, error) {
	tr, err := c.waitTrack(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		return nil, err
	}
	vr := &c.vr
	vr.mu.Lock()
	defer vr.mu.Unlock()
	if vr.closed {
		return nil, ErrClosed
	}
	if vr.dec == nil {
		if vr.dec, err = vpx.NewDecoder(); err != nil {
			return nil, fmt.Errorf("client: VP8 decoder: %w", err)
		}
		vr.asm = vp8rtp.NewAssembler()
		vr.buf = make([]byte, 1500)
	}
	for {
		var (
			data             []byte
			ts               uint32
			key, ready, lost bool
		)
		if vr.pop {
			data, ts, key, ready, lost = vr.asm.Pop()
		} else {
			n, err := c.readRTP(ctx, tr, vr.buf)
			if err != nil {
				return nil, err
			}
			if vr.pkt.Unmarshal(vr.buf[:n]) != nil {
				continue
			}
			c.nack(tr, vr, time.Now())
			data, ts, key, ready, lost = vr.asm.Push(&vr.pkt)
		}
		vr.pop = ready
		if lost || (ready && vr.asm.NeedKeyFrame()) {
			c.requestKeyFrame(tr)
		}
		if !ready || vr.asm.NeedKeyFrame() {
			continue
		}
		_ = key
		pic, err := vr.dec.Decode(data)
		if err != nil || pic == nil {
			c.log.Debug("VP8 decode", "err", err)
			c.requestKeyFrame(tr)
			continue
		}
		if !vr.started {
			vr.started, vr.lastTS = true, ts
		}
		vr.unwrap += int64(int32(ts - vr.lastTS))
		vr.lastTS = ts
		f := &vr.frame
		f.Image, f.RTPTimestamp, f.Index = pic, ts, vr.count
		vr.count++
		f.Timestamp = time.Duration(vr.unwrap) * time.Second / 90000
		return f, nil
	}
}

// nack asks the server for the packets of its video that are missing and keeps the
// assembler's wait for them at the tracker's (rtcmedia.NackTracker.RecoveryWait).
func (c *Conn) nack(tr *webrtc.TrackRemote, vr *videoRecv, now time.Time) {
	if now.After(vr.nextRTT) {
		vr.nextRTT = now.Add(time.Second)
		var rtt time.Duration
		if r := c.remote[0].recv; r != nil {
			rtt = rtcmedia.RTT(r.Transport())
		}
		vr.nt.SetRTT(rtt)
	}
	if seqs := vr.nt.Push(vr.pkt.SequenceNumber, now); len(seqs) > 0 {
		_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: uint32(tr.SSRC()), Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
	}
	vr.asm.SetMaxDelay(rtcmedia.Ticks90k(vr.nt.RecoveryWait()))
}

// requestKeyFrame sends a PLI for the server's video, at most every 200 ms.
func (c *Conn) requestKeyFrame(tr *webrtc.TrackRemote) {
	now := time.Now()
	if now.Sub(c.vr.lastPLI) < 200*time.Millisecond {
		return
	}
	c.vr.lastPLI = now
	if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err != nil {
		c.log.Debug("PLI", "err", err)
	}
}

// ReadVideoRTP returns the next raw RTP packet of the server's video, valid until the next
// ReadVideoRTP or ReadVideo call: the light path for load tools (count frames at the marker
// bit). Do not mix it with ReadVideo on one connection.
func (c *Conn) ReadVideoRTP(ctx context.Context) (*rtp.Packet, error) {
	tr, err := c.waitTrack(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		return nil, err
	}
	vr := &c.vr
	vr.mu.Lock()
	defer vr.mu.Unlock()
	return c.readRaw(ctx, tr, &vr.rawBuf, &vr.rawPkt)
}

func (c *Conn) readRaw(ctx context.Context, tr *webrtc.TrackRemote, buf *[]byte, pkt *rtp.Packet) (*rtp.Packet, error) {
	if *buf == nil {
		*buf = make([]byte, 1500)
	}
	for {
		n, err := c.readRTP(ctx, tr, *buf)
		if err != nil {
			return nil, err
		}
		if pkt.Unmarshal((*buf)[:n]) == nil {
			return pkt, nil
		}
	}
}

// wireChannels is the channel count of the client's Opus audio.
func (c *Conn) wireChannels() int {
	if c.opts.Stereo {
		return 2
	}
	return 1
}

// SendAudio sends PCM audio: it converts the frame to 48 kHz and to the connection's
// channel count (mono, or stereo with Options.Stereo), cuts it into 20 ms frames, encodes
// them as Opus and sends one RTP packet per frame, with RTP timestamps advancing 960 per
// packet. A remainder shorter than 20 ms waits for the next call. Frames may have any
// length and rate (resampling state is kept while the rate stays the same). Without
// Options.PaceAudio the caller paces (about 20 ms of audio per 20 ms); with it SendAudio
// sleeps until each packet is due, and returns ctx's error if ctx ends first.
func (c *Conn) SendAudio(ctx context.Context, f media.AudioFrame) error {
	if c.audioTrack == nil {
		return fmt.Errorf("client: send audio: %w", ErrNoTrack)
	}
	if f.SampleRate <= 0 || (f.Channels != 1 && f.Channels != 2) || len(f.Samples)%f.Channels != 0 {
		return fmt.Errorf("client: send audio: invalid frame: %d Hz, %d channels, %d samples", f.SampleRate, f.Channels, len(f.Samples))
	}
	as := &c.as
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.closed {
		return ErrClosed
	}
	ch := c.wireChannels()
	if as.enc == nil {
		enc, err := opus.NewEncoder(opus.EncoderConfig{SampleRate: 48000, Channels: ch, BitrateBps: c.opts.AudioBitrateBps * ch,
			Complexity: 5, FEC: true, PacketLossPercent: 10, Application: opus.ApplicationVoIP})
		if err != nil {
			return fmt.Errorf("client: Opus encoder: %w", err)
		}
		as.enc = enc
		as.out = make([]byte, opus.MaxPacketBytes)
		as.pkt = rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, Marker: true}}
	}
	// Channels first (cheaper at the lower channel count), then the rate.
	as.mixed = pcm.AppendChannels(as.mixed[:0], f.Samples, f.Channels, ch)
	if f.SampleRate != 48000 {
		if as.rs == nil || as.rsRate != f.SampleRate || as.rsCh != ch {
			rs, err := resample.New(f.SampleRate, 48000, ch)
			if err != nil {
				return fmt.Errorf("client: send audio: resample from %d Hz: %w", f.SampleRate, err)
			}
			as.rs, as.rsRate, as.rsCh = rs, f.SampleRate, ch
		}
		as.pending = as.rs.Process(as.pending, as.mixed)
	} else {
		as.pending = append(as.pending, as.mixed...)
	}
	step := 960 * ch
	i := 0
	defer func() { as.pending = as.pending[:copy(as.pending, as.pending[i:])] }()
	for ; i+step <= len(as.pending); i += step {
		if c.opts.PaceAudio {
			if err := as.pace(ctx); err != nil {
				return err
			}
		}
		n, err := as.enc.Encode(as.pending[i:i+step], as.out)
		if err != nil {
			return fmt.Errorf("client: Opus encode: %w", err)
		}
		as.pkt.Payload = as.out[:n]
		err = c.audioTrack.WriteRTP(&as.pkt)
		as.pkt.Marker = false
		as.pkt.SequenceNumber++
		as.pkt.Timestamp += 960
		as.clock.sentOne()
		if err != nil {
			i += step
			return writeErr("send audio", err)
		}
	}
	return nil
}

// pace waits until the next packet is due (real time from the first packet). After a
// stall of more than 200 ms the clock restarts, so audio is not sent in a burst; the RTP
// timestamps then jump by the stall, as a live source's would.
func (as *audioSend) pace(ctx context.Context) error {
	late, err := as.clock.wait(ctx)
	if late > 0 {
		as.pkt.Timestamp += uint32(late * 48000 / time.Second)
	}
	return err
}

// WriteAudioRTP sends one raw RTP packet (Opus payload, 48 kHz timestamps) on the audio
// track. It does not retain p.
func (c *Conn) WriteAudioRTP(p *rtp.Packet) error {
	if c.audioTrack == nil {
		return fmt.Errorf("client: send audio: %w", ErrNoTrack)
	}
	c.as.mu.Lock()
	defer c.as.mu.Unlock()
	if err := c.audioTrack.WriteRTP(p); err != nil {
		return writeErr("send audio", err)
	}
	return nil
}

// ReadAudio returns the server's next audio packet decoded to 48 kHz PCM (mono, or stereo
// with Options.Stereo; usually 20 ms). Packets pass through a reorder window (twice the
// measured jitter, 20..100 ms), so that one overtaken on the network is decoded in its
// place; lost packets are concealed (from the next packet's in-band FEC, else Opus PLC; at
// most 200 ms) and returned with the packet that follows them. The Samples are reused: valid
// until the next ReadAudio or Close.
func (c *Conn) ReadAudio(ctx context.Context) (media.AudioFrame, error) {
	tr, err := c.waitTrack(ctx, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return media.AudioFrame{}, err
	}
	ar := &c.ar
	ar.mu.Lock()
	defer ar.mu.Unlock()
	if ar.closed {
		return media.AudioFrame{}, ErrClosed
	}
	ch := c.wireChannels()
	if ar.dec == nil {
		if ar.dec, err = opus.NewDecoder(48000, ch); err != nil {
			return media.AudioFrame{}, fmt.Errorf("client: Opus decoder: %w", err)
		}
		ar.pcm = make([]int16, (5760+11*960)*ch)
		ar.buf = make([]byte, 1500)
		ar.frameSize = 960
	}
	for {
		if payload, missing, ok := ar.ro.Next(time.Now()); ok {
			if f, ok := c.decodeAudio(payload, missing, ch); ok {
				return f, nil
			}
			continue
		}
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if d := ar.ro.Deadline(); !d.IsZero() {
			rctx, cancel = context.WithDeadline(ctx, d)
		}
		n, err := c.readRTP(rctx, tr, ar.buf)
		cancel()
		if err != nil {
			if ctx.Err() == nil && rctx.Err() != nil && !c.isClosed() {
				continue // the wait for a missing packet is over: Next gives it up
			}
			return media.AudioFrame{}, err
		}
		if ar.pkt.Unmarshal(ar.buf[:n]) != nil || len(ar.pkt.Payload) == 0 {
			continue
		}
		now := time.Now()
		if !ar.lastAt.IsZero() {
			d := now.Sub(ar.lastAt).Seconds() - float64(int32(ar.pkt.Timestamp-ar.lastTS))/48000
			ar.jitter += (math.Abs(d) - ar.jitter) / 16
		}
		ar.lastAt, ar.lastTS = now, ar.pkt.Timestamp
		ar.ro.Window = rtcmedia.ReorderWindow(time.Duration(ar.jitter * float64(time.Second)))
		ar.ro.Push(ar.pkt.SequenceNumber, ar.pkt.Payload, now)
	}
}

// decodeAudio decodes payload after concealing the missing packets before it; ok is false
// when it gave no audio.
func (c *Conn) decodeAudio(payload []byte, missing, ch int) (media.AudioFrame, bool) {
	ar := &c.ar
	got := 0 // samples per channel in ar.pcm
	if missing > 0 && missing < 50 {
		for i := 0; i+1 < missing && i < 10 && (got+ar.frameSize+5760)*ch <= len(ar.pcm); i++ {
			if k, err := ar.dec.Conceal(ar.pcm[got*ch:], ar.frameSize); err == nil {
				got += k
			}
		}
		if (got+ar.frameSize+5760)*ch <= len(ar.pcm) { // room for FEC and the packet
			if k, err := ar.dec.DecodeFEC(payload, ar.pcm[got*ch:], ar.frameSize); err == nil {
				got += k
			}
		}
	}
	k, err := ar.dec.Decode(payload, ar.pcm[got*ch:])
	if err != nil {
		c.log.Debug("Opus decode", "err", err)
		k, err = ar.dec.Conceal(ar.pcm[got*ch:], ar.frameSize)
	} else {
		ar.frameSize = k
	}
	if err == nil {
		got += k
	}
	if got == 0 {
		return media.AudioFrame{}, false
	}
	return media.AudioFrame{SampleRate: 48000, Channels: ch, Samples: ar.pcm[:got*ch]}, true
}

// ReadAudioRTP returns the next raw RTP packet of the server's audio, valid until the next
// ReadAudioRTP or ReadAudio call. Do not mix it with ReadAudio on one connection.
func (c *Conn) ReadAudioRTP(ctx context.Context) (*rtp.Packet, error) {
	tr, err := c.waitTrack(ctx, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return nil, err
	}
	ar := &c.ar
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return c.readRaw(ctx, tr, &ar.rawBuf, &ar.rawPkt)
}
