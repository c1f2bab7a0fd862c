// Package rtcmedia is the pion setup the server and the Go client share: the one VP8 and
// one Opus codec they negotiate, and the reader of a sender's RTCP.
package rtcmedia

import (
	"fmt"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// The payload types both sides register.
const (
	VP8PayloadType  = 96
	RTXPayloadType  = 97 // retransmissions of VP8 (RFC 4588), apt=96
	OpusPayloadType = 111
)

// OpusFmtp is the Opus format line of both sides (in-band FEC on); stereo peers add
// ";stereo=1;sprop-stereo=1".
const OpusFmtp = "minptime=10;useinbandfec=1"

// RegisterCodecs registers VP8 (with REMB, FIR, NACK, PLI and TWCC feedback, and RTX) and Opus (with
// the format line opusFmtp and TWCC) on me, and nothing else, so that a peer never picks a
// codec the other side cannot decode.
func RegisterCodecs(me *webrtc.MediaEngine, opusFmtp string) error {
	fb := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"},
		{Type: "nack", Parameter: "pli"}, {Type: "transport-cc"},
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        VP8PayloadType,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register VP8: %w", err)
	}
	// RTX: retransmissions travel on their own SSRC, so that the receiver tells them from
	// late packets (its jitter and loss figures stay right) and they do not count against
	// the stream's sequence. pion's NACK responder uses it when the peer negotiates it.
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", VP8PayloadType)},
		PayloadType:        RTXPayloadType,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register RTX: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: opusFmtp, RTCPFeedback: []webrtc.RTCPFeedback{{Type: "transport-cc"}}},
		PayloadType: OpusPayloadType,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("register Opus: %w", err)
	}
	return nil
}

// RTCPHandlers are the callbacks of ReadSenderRTCP; nil ones are skipped.
type RTCPHandlers struct {
	KeyFrame func()    // a PLI or FIR: the receiver needs a key frame
	REMB     func(int) // the receiver's estimate of the maximum bit rate (bit/s)
}

// ReadSenderRTCP drains an RTPSender's RTCP (so that the interceptors see the reports) until
// the sender closes, calling h's callbacks. With no callbacks the packets are not parsed.
func ReadSenderRTCP(sender *webrtc.RTPSender, h RTCPHandlers) {
	buf := make([]byte, 1500)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		if h.KeyFrame == nil && h.REMB == nil {
			continue
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if h.KeyFrame != nil {
					h.KeyFrame()
				}
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				if h.REMB != nil {
					h.REMB(int(p.Bitrate))
				}
			}
		}
	}
}
