// Package opus wraps libopus (Debian's libopus-dev, 1.3.x) through cgo: an
// Opus decoder with packet-loss concealment and in-band FEC recovery, and an
// Opus encoder configured for real-time voice.
//
// Audio is interleaved signed 16-bit PCM at 8, 12, 16, 24 or 48 kHz, one or
// two channels. WebRTC always signals Opus at 48 kHz/2 channels in SDP, but
// the decoder may be created at any supported rate and channel count:
// libopus converts internally.
//
// # Concurrency
//
// A Decoder or Encoder is not safe for concurrent use: each call mutates the
// codec state, so use one per stream and serialise calls (including Close).
// Distinct instances share nothing and may be used from different goroutines
// in parallel.
//
// # Memory
//
// Each instance owns C memory allocated by libopus. Close frees it and is
// idempotent; an instance that becomes unreachable without Close is freed
// by a runtime cleanup, but call Close to release it promptly. The hot paths
// (Encode, Decode, DecodeFEC, Conceal) do not allocate Go memory.
package opus

/*
#cgo pkg-config: opus
#include <opus.h>

// opus_encoder_ctl is variadic, which cgo cannot call: one wrapper per request.
static int fastrtc_enc_set_bitrate(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_BITRATE(v)); }
static int fastrtc_enc_set_complexity(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(v)); }
static int fastrtc_enc_set_inband_fec(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(v)); }
static int fastrtc_enc_set_packet_loss_perc(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC(v)); }
static int fastrtc_enc_set_dtx(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_DTX(v)); }
static int fastrtc_enc_get_lookahead(OpusEncoder *e, opus_int32 *v) { return opus_encoder_ctl(e, OPUS_GET_LOOKAHEAD(v)); }
static int fastrtc_enc_reset(OpusEncoder *e) { return opus_encoder_ctl(e, OPUS_RESET_STATE); }
static int fastrtc_dec_get_last_packet_duration(OpusDecoder *d, opus_int32 *v) { return opus_decoder_ctl(d, OPUS_GET_LAST_PACKET_DURATION(v)); }
static int fastrtc_dec_reset(OpusDecoder *d) { return opus_decoder_ctl(d, OPUS_RESET_STATE); }
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Errors reported by libopus, and by this package's argument checks. The
// errors returned by the methods wrap one of these; test with errors.Is.
var (
	ErrBadArg         = errors.New("opus: invalid argument")
	ErrBufferTooSmall = errors.New("opus: buffer too small")
	ErrInternal       = errors.New("opus: internal error")
	ErrInvalidPacket  = errors.New("opus: corrupted or invalid packet")
	ErrUnimplemented  = errors.New("opus: request not implemented")
	ErrInvalidState   = errors.New("opus: invalid codec state")
	ErrAllocFail      = errors.New("opus: memory allocation failed")
	// ErrClosed is returned by any method called after Close.
	ErrClosed = errors.New("opus: codec is closed")
	// ErrEmptyPacket is returned by Decode for a zero-length packet; use
	// Conceal for a lost packet.
	ErrEmptyPacket = errors.New("opus: empty packet")
	// ErrFrameSize is returned when a PCM frame is not one of the Opus
	// durations (2.5, 5, 10, 20, 40, 60, 80, 100 or 120 ms).
	ErrFrameSize = errors.New("opus: invalid frame size")
)

// Application selects the encoder's tuning (OPUS_APPLICATION_*).
const (
	// ApplicationVoIP favours speech intelligibility (the default).
	ApplicationVoIP = int(C.OPUS_APPLICATION_VOIP)
	// ApplicationAudio favours fidelity to the input (music).
	ApplicationAudio = int(C.OPUS_APPLICATION_AUDIO)
	// ApplicationRestrictedLowDelay disables speech modes for the lowest delay.
	ApplicationRestrictedLowDelay = int(C.OPUS_APPLICATION_RESTRICTED_LOWDELAY)
)

// MaxPacketBytes is a dst capacity that holds any packet the encoder produces
// for one frame (libopus never exceeds 1275 bytes per frame).
const MaxPacketBytes = 1500

// codeErr maps a negative libopus return code to a sentinel error.
func codeErr(code C.int) error {
	switch code {
	case C.OPUS_BAD_ARG:
		return ErrBadArg
	case C.OPUS_BUFFER_TOO_SMALL:
		return ErrBufferTooSmall
	case C.OPUS_INTERNAL_ERROR:
		return ErrInternal
	case C.OPUS_INVALID_PACKET:
		return ErrInvalidPacket
	case C.OPUS_UNIMPLEMENTED:
		return ErrUnimplemented
	case C.OPUS_INVALID_STATE:
		return ErrInvalidState
	case C.OPUS_ALLOC_FAIL:
		return ErrAllocFail
	}
	return fmt.Errorf("opus: unknown error %d", int(code))
}

// validRate reports whether libopus accepts sampleRate.
func validRate(sampleRate int) bool {
	switch sampleRate {
	case 8000, 12000, 16000, 24000, 48000:
		return true
	}
	return false
}

// validFrame reports whether n samples per channel at sampleRate is an
// Opus frame duration (2.5 ms to 120 ms).
func validFrame(n, sampleRate int) bool {
	// n*400/sampleRate counts 2.5 ms units.
	if n <= 0 || (n*400)%sampleRate != 0 {
		return false
	}
	switch n * 400 / sampleRate {
	case 1, 2, 4, 8, 16, 24, 32, 40, 48:
		return true
	}
	return false
}

// PacketSamples returns the number of samples per channel that packet
// decodes to at sampleRate (from its TOC byte and frame count), without
// decoding it.
func PacketSamples(packet []byte, sampleRate int) (int, error) {
	if len(packet) == 0 {
		return 0, ErrEmptyPacket
	}
	n := C.opus_packet_get_nb_samples((*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)), C.opus_int32(sampleRate))
	if n < 0 {
		return 0, fmt.Errorf("opus: packet samples: %w", codeErr(n))
	}
	return int(n), nil
}

// Decoder decodes Opus packets to interleaved int16 PCM. It is not safe for
// concurrent use.
type Decoder struct {
	st         *C.OpusDecoder
	sampleRate int
	channels   int
	cleanup    runtime.Cleanup
}

// NewDecoder creates a decoder producing sampleRate Hz (8000, 12000, 16000,
// 24000 or 48000) audio with channels (1 or 2) interleaved channels.
func NewDecoder(sampleRate, channels int) (*Decoder, error) {
	if !validRate(sampleRate) || (channels != 1 && channels != 2) {
		return nil, fmt.Errorf("opus: new decoder (%d Hz, %d channels): %w", sampleRate, channels, ErrBadArg)
	}
	var code C.int
	st := C.opus_decoder_create(C.opus_int32(sampleRate), C.int(channels), &code)
	if code != C.OPUS_OK || st == nil {
		return nil, fmt.Errorf("opus: new decoder: %w", codeErr(code))
	}
	d := &Decoder{st: st, sampleRate: sampleRate, channels: channels}
	d.cleanup = runtime.AddCleanup(d, func(st *C.OpusDecoder) { C.opus_decoder_destroy(st) }, st)
	return d, nil
}

// SampleRate returns the output sample rate in Hz.
func (d *Decoder) SampleRate() int { return d.sampleRate }

// Channels returns the number of interleaved output channels.
func (d *Decoder) Channels() int { return d.channels }

// Decode decodes one packet into pcm and returns the number of samples per
// channel written. pcm is interleaved and should hold 120 ms (the longest
// packet: 5760 samples per channel at 48 kHz); a shorter buffer works for
// packets that fit and yields ErrBufferTooSmall otherwise. A corrupted
// packet yields an error wrapping ErrInvalidPacket.
func (d *Decoder) Decode(packet []byte, pcm []int16) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	if len(packet) == 0 {
		return 0, ErrEmptyPacket
	}
	frame := len(pcm) / d.channels
	if frame == 0 {
		return 0, fmt.Errorf("opus: decode: %w", ErrBufferTooSmall)
	}
	n := C.opus_decode(d.st, (*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frame), 0)
	if n < 0 {
		return 0, fmt.Errorf("opus: decode: %w", codeErr(n))
	}
	return int(n), nil
}

// DecodeFEC recovers the frame lost just before packet from the in-band
// forward error correction (LBRR) data that packet carries. frameSize is the
// lost frame's duration in samples per channel (960 for 20 ms at 48 kHz)
// and must be a multiple of 2.5 ms; pcm must hold frameSize*Channels()
// samples. When packet carries no FEC data libopus falls back to
// concealment. Afterwards, decode packet itself normally with Decode.
func (d *Decoder) DecodeFEC(packet []byte, pcm []int16, frameSize int) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	if len(packet) == 0 {
		return 0, ErrEmptyPacket
	}
	if err := d.checkFrame(pcm, frameSize); err != nil {
		return 0, fmt.Errorf("opus: decode fec: %w", err)
	}
	n := C.opus_decode(d.st, (*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frameSize), 1)
	if n < 0 {
		return 0, fmt.Errorf("opus: decode fec: %w", codeErr(n))
	}
	return int(n), nil
}

// Conceal synthesises frameSize samples per channel of packet-loss
// concealment for a lost packet (opus_decode with no data). frameSize must
// be a multiple of 2.5 ms; pcm must hold frameSize*Channels() samples.
func (d *Decoder) Conceal(pcm []int16, frameSize int) (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	if err := d.checkFrame(pcm, frameSize); err != nil {
		return 0, fmt.Errorf("opus: conceal: %w", err)
	}
	n := C.opus_decode(d.st, nil, 0, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frameSize), 0)
	if n < 0 {
		return 0, fmt.Errorf("opus: conceal: %w", codeErr(n))
	}
	return int(n), nil
}

func (d *Decoder) checkFrame(pcm []int16, frameSize int) error {
	if frameSize <= 0 || (frameSize*400)%d.sampleRate != 0 || frameSize*400/d.sampleRate > 48 {
		return fmt.Errorf("%w: %d samples at %d Hz", ErrFrameSize, frameSize, d.sampleRate)
	}
	if len(pcm) < frameSize*d.channels {
		return fmt.Errorf("%w: pcm holds %d samples, need %d", ErrBufferTooSmall, len(pcm), frameSize*d.channels)
	}
	return nil
}

// LastPacketDuration returns the duration, in samples per channel, of the
// last packet decoded or concealed: the frame size to conceal with when
// the next packet is lost.
func (d *Decoder) LastPacketDuration() (int, error) {
	if d.st == nil {
		return 0, ErrClosed
	}
	var v C.opus_int32
	if code := C.fastrtc_dec_get_last_packet_duration(d.st, &v); code != C.OPUS_OK {
		return 0, fmt.Errorf("opus: last packet duration: %w", codeErr(code))
	}
	return int(v), nil
}

// Reset returns the decoder to its freshly created state (for a new stream).
func (d *Decoder) Reset() error {
	if d.st == nil {
		return ErrClosed
	}
	if code := C.fastrtc_dec_reset(d.st); code != C.OPUS_OK {
		return fmt.Errorf("opus: reset decoder: %w", codeErr(code))
	}
	return nil
}

// Close frees the decoder's C memory. It is idempotent; later calls to
// other methods return ErrClosed.
func (d *Decoder) Close() error {
	if d.st != nil {
		d.cleanup.Stop()
		C.opus_decoder_destroy(d.st)
		d.st = nil
	}
	return nil
}

// EncoderConfig configures NewEncoder. Start from DefaultEncoderConfig.
//
// A zero SampleRate, Channels, BitrateBps or Application selects the default
// (a zero there is never valid). Complexity, FEC, PacketLossPercent and DTX
// are used as given, since zero/false are meaningful settings; a zero-value
// EncoderConfig therefore gives complexity 0 without FEC.
type EncoderConfig struct {
	// SampleRate of the input PCM: 8000, 12000, 16000, 24000 or 48000 (default 48000).
	SampleRate int
	// Channels of the input PCM, 1 or 2 (default 1).
	Channels int
	// BitrateBps is the target bitrate in bits per second, 500 to 512000 (default 32000).
	BitrateBps int
	// Complexity trades CPU for quality, 0 to 10 (DefaultEncoderConfig: 5).
	Complexity int
	// FEC enables in-band forward error correction (LBRR), so a receiver
	// can rebuild a lost packet from the next one (DefaultEncoderConfig: true).
	// It takes effect in the SILK and hybrid modes used for speech.
	FEC bool
	// PacketLossPercent is the expected loss, 0 to 100; with FEC it sets how
	// much redundancy is spent (DefaultEncoderConfig: 10).
	PacketLossPercent int
	// Application is ApplicationVoIP (default), ApplicationAudio or
	// ApplicationRestrictedLowDelay.
	Application int
	// DTX enables discontinuous transmission: during silence the encoder
	// emits packets of 1-2 bytes (which need not be sent) most of the time.
	DTX bool
}

// DefaultEncoderConfig returns the configuration for real-time voice:
// 48 kHz mono, 32 kbit/s, complexity 5, FEC on for 10% expected loss, VoIP,
// no DTX.
func DefaultEncoderConfig() EncoderConfig {
	return EncoderConfig{
		SampleRate:        48000,
		Channels:          1,
		BitrateBps:        32000,
		Complexity:        5,
		FEC:               true,
		PacketLossPercent: 10,
		Application:       ApplicationVoIP,
	}
}

// Encoder encodes interleaved int16 PCM frames to Opus packets. It is not
// safe for concurrent use.
type Encoder struct {
	st         *C.OpusEncoder
	sampleRate int
	channels   int
	cleanup    runtime.Cleanup
}

// NewEncoder creates an encoder with cfg (see EncoderConfig for defaults).
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	def := DefaultEncoderConfig()
	if cfg.SampleRate == 0 {
		cfg.SampleRate = def.SampleRate
	}
	if cfg.Channels == 0 {
		cfg.Channels = def.Channels
	}
	if cfg.BitrateBps == 0 {
		cfg.BitrateBps = def.BitrateBps
	}
	if cfg.Application == 0 {
		cfg.Application = def.Application
	}
	switch {
	case !validRate(cfg.SampleRate):
		return nil, fmt.Errorf("opus: new encoder: sample rate %d: %w", cfg.SampleRate, ErrBadArg)
	case cfg.Channels != 1 && cfg.Channels != 2:
		return nil, fmt.Errorf("opus: new encoder: %d channels: %w", cfg.Channels, ErrBadArg)
	case cfg.Complexity < 0 || cfg.Complexity > 10:
		return nil, fmt.Errorf("opus: new encoder: complexity %d: %w", cfg.Complexity, ErrBadArg)
	case cfg.PacketLossPercent < 0 || cfg.PacketLossPercent > 100:
		return nil, fmt.Errorf("opus: new encoder: packet loss %d%%: %w", cfg.PacketLossPercent, ErrBadArg)
	case cfg.BitrateBps < 500 || cfg.BitrateBps > 512000:
		return nil, fmt.Errorf("opus: new encoder: bitrate %d: %w", cfg.BitrateBps, ErrBadArg)
	}
	var code C.int
	st := C.opus_encoder_create(C.opus_int32(cfg.SampleRate), C.int(cfg.Channels), C.int(cfg.Application), &code)
	if code != C.OPUS_OK || st == nil {
		return nil, fmt.Errorf("opus: new encoder (application %d): %w", cfg.Application, codeErr(code))
	}
	e := &Encoder{st: st, sampleRate: cfg.SampleRate, channels: cfg.Channels}
	e.cleanup = runtime.AddCleanup(e, func(st *C.OpusEncoder) { C.opus_encoder_destroy(st) }, st)
	ctls := []struct {
		name string
		code C.int
	}{
		{"bitrate", C.fastrtc_enc_set_bitrate(st, C.opus_int32(cfg.BitrateBps))},
		{"complexity", C.fastrtc_enc_set_complexity(st, C.opus_int32(cfg.Complexity))},
		{"inband fec", C.fastrtc_enc_set_inband_fec(st, boolInt(cfg.FEC))},
		{"packet loss", C.fastrtc_enc_set_packet_loss_perc(st, C.opus_int32(cfg.PacketLossPercent))},
		{"dtx", C.fastrtc_enc_set_dtx(st, boolInt(cfg.DTX))},
	}
	for _, c := range ctls {
		if c.code != C.OPUS_OK {
			e.Close()
			return nil, fmt.Errorf("opus: new encoder: set %s: %w", c.name, codeErr(c.code))
		}
	}
	return e, nil
}

func boolInt(b bool) C.opus_int32 {
	if b {
		return 1
	}
	return 0
}

// SampleRate returns the input sample rate in Hz.
func (e *Encoder) SampleRate() int { return e.sampleRate }

// Channels returns the number of interleaved input channels.
func (e *Encoder) Channels() int { return e.channels }

// Encode encodes exactly one frame of interleaved pcm — 2.5, 5, 10, 20, 40
// or 60 ms (80, 100 and 120 ms are accepted too) — into dst[:cap(dst)] and
// returns the packet length: the packet is dst[:n]. A capacity of
// MaxPacketBytes always suffices. With DTX on, a packet of 2 bytes or less
// means silence that need not be transmitted.
func (e *Encoder) Encode(pcm []int16, dst []byte) (int, error) {
	if e.st == nil {
		return 0, ErrClosed
	}
	frame := len(pcm) / e.channels
	if len(pcm)%e.channels != 0 || !validFrame(frame, e.sampleRate) {
		return 0, fmt.Errorf("opus: encode: %w: %d samples, %d channels at %d Hz", ErrFrameSize, len(pcm), e.channels, e.sampleRate)
	}
	dst = dst[:cap(dst)]
	if len(dst) == 0 {
		return 0, fmt.Errorf("opus: encode: %w", ErrBufferTooSmall)
	}
	n := C.opus_encode(e.st, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frame),
		(*C.uchar)(unsafe.Pointer(&dst[0])), C.opus_int32(len(dst)))
	if n < 0 {
		return 0, fmt.Errorf("opus: encode: %w", codeErr(n))
	}
	return int(n), nil
}

// SetBitrate changes the target bitrate (bits per second) between frames.
func (e *Encoder) SetBitrate(bps int) error {
	if e.st == nil {
		return ErrClosed
	}
	if code := C.fastrtc_enc_set_bitrate(e.st, C.opus_int32(bps)); code != C.OPUS_OK {
		return fmt.Errorf("opus: set bitrate %d: %w", bps, codeErr(code))
	}
	return nil
}

// SetPacketLossPercent changes the expected packet loss (0-100) between
// frames, e.g. from RTCP receiver reports.
func (e *Encoder) SetPacketLossPercent(p int) error {
	if e.st == nil {
		return ErrClosed
	}
	if code := C.fastrtc_enc_set_packet_loss_perc(e.st, C.opus_int32(p)); code != C.OPUS_OK {
		return fmt.Errorf("opus: set packet loss %d%%: %w", p, codeErr(code))
	}
	return nil
}

// Lookahead returns the encoder's algorithmic delay in samples per channel
// (about 6.5 ms: 312 samples at 48 kHz in VoIP mode).
func (e *Encoder) Lookahead() (int, error) {
	if e.st == nil {
		return 0, ErrClosed
	}
	var v C.opus_int32
	if code := C.fastrtc_enc_get_lookahead(e.st, &v); code != C.OPUS_OK {
		return 0, fmt.Errorf("opus: lookahead: %w", codeErr(code))
	}
	return int(v), nil
}

// Reset returns the encoder to its freshly created state, keeping its
// settings (for a new stream).
func (e *Encoder) Reset() error {
	if e.st == nil {
		return ErrClosed
	}
	if code := C.fastrtc_enc_reset(e.st); code != C.OPUS_OK {
		return fmt.Errorf("opus: reset encoder: %w", codeErr(code))
	}
	return nil
}

// Close frees the encoder's C memory. It is idempotent; later calls to
// other methods return ErrClosed.
func (e *Encoder) Close() error {
	if e.st != nil {
		e.cleanup.Stop()
		C.opus_encoder_destroy(e.st)
		e.st = nil
	}
	return nil
}
