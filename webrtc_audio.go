package fastrtc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/rtcmedia"
	"github.com/fastrtc-go/fastrtc/internal/vsend"
)

// opusRate returns rate if Opus can encode it directly, else 48000.
func opusRate(rate int) int {
	switch rate {
	case 8000, 12000, 16000, 24000, 48000:
		return rate
	}
	return 48000
}

// setupAudio wires a WebRTC session's audio: the outgoing Opus track (client receives), the
// handler's start-up hook and Emit loop or the audio source, and returns the function that
// runs the incoming Opus track (client sends).
func (s *Stream) setupAudio(sess *Session, pc *webrtc.PeerConnection) (func(*webrtc.TrackRemote), error) {
	if !hasTransceiver(pc, webrtc.RTPCodecTypeAudio) {
		return nil, fmt.Errorf("fastrtc: the offer has no audio section, but this is a %s stream", s.modality)
	}
	layout := sess.layout
	if s.mode.clientReceives() {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "fastrtc-"+sess.id)
		if err != nil {
			return nil, fmt.Errorf("fastrtc: audio track: %w", err)
		}
		sender, err := pc.AddTrack(track)
		if err != nil {
			return nil, fmt.Errorf("fastrtc: add audio track: %w", err)
		}
		sess.goFn(func() { rtcmedia.ReadSenderRTCP(sender, rtcmedia.RTCPHandlers{}) })
		rate := opusRate(layout.OutputRate)
		sink, err := s.newOpusSink(sess, track, rate, layout.OutputChannels)
		if err != nil {
			return nil, err
		}
		sess.audioOut = newAudioOut(rate, layout.OutputChannels, sink)
		sess.audioOut.sent = &sess.counters.audioOut
	}
	// The start-up hook and the output side start with the session (startSession).
	if !s.mode.clientSends() {
		return nil, nil
	}
	return func(track *webrtc.TrackRemote) {
		select {
		case <-sess.started:
		case <-sess.ctx.Done():
			return
		}
		s.runOpusTrack(sess, track, layout)
	}, nil
}

// newOpusSink returns the audio sink of a WebRTC session: Opus-encode each 20 ms frame and
// send it as one RTP packet, with timestamps that follow the wall clock across pauses.
func (s *Stream) newOpusSink(sess *Session, track *webrtc.TrackLocalStaticRTP, rate, channels int) (func([]int16, bool) error, error) {
	ao := s.cfg.audio
	// Stereo gets the bitrate per channel: at mono rates libopus narrows the stereo image.
	enc, err := opus.NewEncoder(opus.EncoderConfig{SampleRate: rate, Channels: channels, BitrateBps: ao.opusBitrate * channels,
		Complexity: ao.opusComplexity, FEC: true, PacketLossPercent: 10, Application: opus.ApplicationVoIP})
	if err != nil {
		return nil, fmt.Errorf("fastrtc: Opus encoder: %w", err)
	}
	sess.onEnd(s.codecOpened(enc.Close))
	buf := make([]byte, 1500)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111}}
	var last time.Time
	configured := ao.opusBitrate * channels
	sess.opusBitrate.Store(int64(configured))
	return func(frame []int16, resumed bool) error {
		// With video on the same connection, Opus gives way when the link is very tight.
		if v := sess.video.Load(); v != nil {
			if want := vsend.AudioBitrate(v.snd.Link(), configured); want != int(sess.opusBitrate.Load()) && enc.SetBitrate(want) == nil {
				sess.opusBitrate.Store(int64(want))
			}
		}
		t0 := time.Now()
		n, err := enc.Encode(frame, buf)
		s.metrics.opusEnc.since(t0)
		if err != nil {
			return fmt.Errorf("fastrtc: Opus encode: %w", err)
		}
		now := time.Now()
		if resumed && !last.IsZero() {
			// Keep the 48 kHz RTP clock in step with the pause.
			gap := now.Sub(last) - frameDuration
			if gap > 0 {
				pkt.Timestamp += uint32(gap * 48000 / time.Second)
			}
		}
		pkt.Marker = resumed
		pkt.Payload = buf[:n]
		err = track.WriteRTP(&pkt)
		pkt.SequenceNumber++
		pkt.Timestamp += 960
		last = now
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return fmt.Errorf("fastrtc: send audio: %w", err)
		}
		return nil
	}, nil
}

// maxConcealSamples is the most audio (at 48 kHz) concealed for one gap in the packets.
const maxConcealSamples = 48000 / 5

// runOpusTrack decodes the client's Opus and gives the audio to the handler. Packets pass
// through a reorder window (rtcmedia.Reorder, twice the measured jitter, 20..100 ms): a
// packet overtaken on the network is decoded in its place; one really lost is concealed
// (in-band FEC when the next packet carries it, PLC otherwise). Without the window, on a
// link whose delay varies by ±30 ms a quarter of the packets were concealed and their late
// originals thrown away (segmental SNR against the perfect link's decode: 20 dB, where 5%
// loss costs 31.7 dB).
func (s *Stream) runOpusTrack(sess *Session, track *webrtc.TrackRemote, layout AudioLayout) {
	ch := layout.InputChannels
	dec, err := opus.NewDecoder(48000, ch)
	if err != nil {
		sess.fail(fmt.Errorf("fastrtc: Opus decoder: %w", err))
		return
	}
	defer s.codecOpened(dec.Close)()
	in := &audioIn{sess: sess, h: sess.handler, rate: layout.InputRate, ch: ch}
	pcm := make([]int16, 5760*ch) // 120 ms
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var ro rtcmedia.Reorder
	var deadline time.Time // the track's read deadline now
	frameSize := 960
	deliver := func(n int) bool {
		if err := in.receive(pcm[:n*ch], 48000, ch); err != nil {
			sess.fail(err)
			return false
		}
		return true
	}
	// decode decodes one packet after concealing the `missing` packets before it.
	decode := func(payload []byte, missing int) bool {
		sess.rtp.lost.Add(int64(missing))
		if missing > 0 && missing < 50 {
			// Conceal at most 200 ms (whatever the packets' duration): a longer gap is a
			// pause in sending, not loss, and concealment must not invent audio.
			for i, concealed := 0, 0; i+1 < missing && concealed+frameSize <= maxConcealSamples; i++ {
				k, err := dec.Conceal(pcm, frameSize)
				if err != nil {
					break
				}
				concealed += k
				if !deliver(k) {
					return false
				}
			}
			if k, err := dec.DecodeFEC(payload, pcm, frameSize); err == nil && !deliver(k) {
				return false
			}
		}
		t0 := time.Now()
		k, err := dec.Decode(payload, pcm)
		s.metrics.opusDec.since(t0)
		if err != nil {
			sess.log.Debug("opus decode", "err", err)
			if k, err = dec.Conceal(pcm, frameSize); err != nil {
				return true
			}
		} else {
			frameSize = k
		}
		return deliver(k)
	}
	for {
		if d := ro.Deadline(); !d.Equal(deadline) {
			deadline = d
			_ = track.SetReadDeadline(d)
		}
		n, _, err := track.Read(buf)
		now := time.Now()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return // the track ended
			}
		} else if pkt.Unmarshal(buf[:n]) == nil && len(pkt.Payload) > 0 {
			sess.rtp.arrived(pkt.Timestamp, now, 48000)
			ro.Window = rtcmedia.ReorderWindow(time.Duration(sess.rtp.jitter.Load()))
			ro.Push(pkt.SequenceNumber, pkt.Payload, now)
		}
		for payload, missing, ok := ro.Next(now); ok; payload, missing, ok = ro.Next(now) {
			if !decode(payload, missing) {
				return
			}
		}
	}
}
