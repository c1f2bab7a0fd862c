// Package media holds the plain frame types that the fastrtc server and its Go client share:
// decoded video frames and blocks of 16-bit PCM audio. The fastrtc package re-exports them
// (fastrtc.VideoFrame, fastrtc.AudioFrame), so most programs never import this package.
package media

import (
	"image"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// VideoFrame is one decoded video frame. It belongs to the call it is given to: not safe for
// use by other goroutines or after the call returns.
//
// The frame's image is the decoder's own 4:2:0 buffer, handed over without a copy: it and
// anything derived from it with the methods below are valid only until the call returns.
// Copy what you keep. Image is READ-ONLY: the decoder predicts the next frames from it, so
// writing into it corrupts them; use Writable for a copy to draw on. Pixel layout: Y, Cb and
// Cr planes (BT.601, limited range) as in image.YCbCr; RGBA returns red, green, blue, alpha
// bytes per pixel, row by row, top row first.
//
// The methods write into buffers kept in the frame value, so a VideoFrame that is reused for
// the next frame (as the server and the client do) converts without allocating.
type VideoFrame struct {
	// Image is the decoded picture.
	Image *image.YCbCr
	// Timestamp is the frame's capture time relative to the connection's first frame, from
	// its RTP timestamp.
	Timestamp time.Duration
	// RTPTimestamp is the frame's 90 kHz RTP timestamp as its sender sent it. The server
	// sends the frame a handler returns with this same RTP timestamp, so a client can match
	// each returned frame to the one it sent.
	RTPTimestamp uint32
	// Index counts the frames of this connection, from 0.
	Index int

	rgba *image.RGBA
	flip *image.YCbCr
	copy *image.YCbCr
}

// RGBA converts the frame to RGBA into a buffer the frame reuses (valid until the call
// returns).
func (f *VideoFrame) RGBA() *image.RGBA {
	f.rgba = yuv.ToRGBA(f.rgba, f.Image)
	return f.rgba
}

// FlipVertical returns the frame turned upside down (top row last), written into a buffer
// the frame reuses (valid until the call returns).
func (f *VideoFrame) FlipVertical() *image.YCbCr {
	f.flip = yuv.FlipVertical(f.flip, f.Image)
	return f.flip
}

// Size returns the frame's width and height in pixels.
func (f *VideoFrame) Size() (w, h int) {
	b := f.Image.Rect
	return b.Dx(), b.Dy()
}

// Writable returns a copy of the frame's image that the caller may modify (and a handler
// return), written into a buffer the frame reuses (valid until the call returns).
func (f *VideoFrame) Writable() *image.YCbCr {
	f.copy = yuv.Copy(f.copy, f.Image)
	return f.copy
}

// AudioFrame is a block of 16-bit PCM audio. It is a plain value; frames given to handlers
// and received by clients document how long their Samples stay valid.
type AudioFrame struct {
	// SampleRate in Hz.
	SampleRate int
	// Channels is 1 (mono) or 2 (stereo).
	Channels int
	// Samples are interleaved (L R L R... for stereo), len = frames * Channels.
	Samples []int16
}

// Duration returns the frame's length in time.
func (f AudioFrame) Duration() time.Duration {
	if f.SampleRate <= 0 || f.Channels <= 0 {
		return 0
	}
	return time.Duration(len(f.Samples)/f.Channels) * time.Second / time.Duration(f.SampleRate)
}

// Float32 appends the samples to dst scaled to [-1, 1) and returns it.
func (f AudioFrame) Float32(dst []float32) []float32 {
	for _, s := range f.Samples {
		dst = append(dst, float32(s)/32768)
	}
	return dst
}

// AudioFromFloat32 builds an AudioFrame from samples in [-1, 1] (clipped).
func AudioFromFloat32(sampleRate, channels int, samples []float32) AudioFrame {
	out := make([]int16, len(samples))
	for i, v := range samples {
		x := v * 32768
		switch {
		case x > 32767:
			x = 32767
		case x < -32768:
			x = -32768
		}
		out[i] = int16(x)
	}
	return AudioFrame{SampleRate: sampleRate, Channels: channels, Samples: out}
}

// Degradation says what outgoing video gives up first when the link is too slow for its
// frames at full size and rate, as RTCRtpSendParameters.degradationPreference (FastRTC's
// rtp_params) does in a browser. The server (fastrtc.WithDegradation) and the Go client
// (client.Options.VideoDegradation) share it.
type Degradation int

const (
	// DegradationBalanced scales the frames down first (to 3/4, 1/2, 3/8 and 1/4 of their
	// size), then lowers the frame rate, to 10 fps at the least. The default.
	DegradationBalanced Degradation = iota
	// MaintainFramerate only scales the frames down.
	MaintainFramerate
	// MaintainResolution only lowers the frame rate (to 5 fps at the least).
	MaintainResolution
)
