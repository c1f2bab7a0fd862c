package fastrtc

import (
	"image"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// VideoFrame is one decoded input video frame. It belongs to the handler call it is given
// to: not safe for use by other goroutines or after the call returns.
//
// The frame's image is the decoder's own 4:2:0 buffer, handed over without a copy: it and
// anything derived from it with the methods below are valid only until the handler returns.
// Copy what you keep. Image is READ-ONLY: the decoder predicts the next frames from it, so
// writing into it corrupts them; use Writable for a copy to draw on. Pixel layout: Y, Cb and Cr planes (BT.601, limited range) as in
// image.YCbCr; RGBA returns red, green, blue, alpha bytes per pixel, row by row, top row first.
type VideoFrame struct {
	// Image is the decoded picture.
	Image *image.YCbCr
	// Timestamp is the frame's capture time relative to the connection's first frame, from
	// its RTP timestamp.
	Timestamp time.Duration
	// RTPTimestamp is the frame's 90 kHz RTP timestamp as the client sent it. The frame the
	// handler returns is sent with this same RTP timestamp, so a client can match each
	// returned frame to the one it sent.
	RTPTimestamp uint32
	// Index counts the frames given to the handler in this session, from 0.
	Index int

	scratch *frameScratch
}

// frameScratch holds a session's reusable image buffers, so that the common conversions cost
// no allocation per frame.
type frameScratch struct {
	rgba *image.RGBA
	flip *image.YCbCr
	copy *image.YCbCr
}

// RGBA converts the frame to RGBA into a buffer the session reuses (valid until the handler
// returns).
func (f *VideoFrame) RGBA() *image.RGBA {
	if f.scratch == nil {
		return yuv.ToRGBA(nil, f.Image)
	}
	f.scratch.rgba = yuv.ToRGBA(f.scratch.rgba, f.Image)
	return f.scratch.rgba
}

// FlipVertical returns the frame turned upside down (top row last), written into a buffer the
// session reuses (valid until the handler returns).
func (f *VideoFrame) FlipVertical() *image.YCbCr {
	if f.scratch == nil {
		return yuv.FlipVertical(nil, f.Image)
	}
	f.scratch.flip = yuv.FlipVertical(f.scratch.flip, f.Image)
	return f.scratch.flip
}

// Size returns the frame's width and height in pixels.
func (f *VideoFrame) Size() (w, h int) {
	b := f.Image.Rect
	return b.Dx(), b.Dy()
}

// Writable returns a copy of the frame's image that the handler may modify and return,
// written into a buffer the session reuses (valid until the handler returns).
func (f *VideoFrame) Writable() *image.YCbCr {
	if f.scratch == nil {
		return yuv.Copy(nil, f.Image)
	}
	f.scratch.copy = yuv.Copy(f.scratch.copy, f.Image)
	return f.scratch.copy
}
