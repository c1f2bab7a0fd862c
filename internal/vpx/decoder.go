package vpx

/*
#include <stdlib.h>
#include "frvpx.h"
*/
import "C"

import (
	"image"
	"runtime"
	"unsafe"
)

// maxFrameBytes bounds the compressed frame size passed to libvpx (which takes a 32-bit
// size).
const maxFrameBytes = 1 << 30

// Decoder decodes a VP8 stream. It is not safe for concurrent use.
type Decoder struct {
	c       *C.frvpx_dec
	img     image.YCbCr // returned by Decode; its planes point into libvpx's frame buffers
	cleanup runtime.Cleanup
}

// NewDecoder returns a single-threaded VP8 decoder. Close it when done.
func NewDecoder() (*Decoder, error) {
	c := (*C.frvpx_dec)(C.calloc(1, C.sizeof_frvpx_dec))
	if c == nil {
		return nil, errNoMemory("decoder")
	}
	if rc := C.frvpx_dec_init(c, 1); rc != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(c))
		return nil, codecError("decoder init", nil, rc, false, false)
	}
	d := &Decoder{c: c}
	d.cleanup = runtime.AddCleanup(d, freeDecoder, c)
	return d, nil
}

func freeDecoder(c *C.frvpx_dec) {
	C.frvpx_dec_destroy(c)
	C.free(unsafe.Pointer(c))
}

// Decode decodes one complete compressed VP8 frame.
//
// The returned image is 4:2:0 and references libvpx's internal frame buffer without copying:
// it is valid only until the next call to Decode or Close, and must not be modified. Decode
// returns (nil, nil) if the decoder produced no picture. A frame that cannot be decoded
// (damaged or truncated data, an inter frame before the first key frame, or a picture that
// references damaged data) returns an error wrapping ErrCorrupt; the decoder stays usable and
// recovers at the next key frame. Decode does not allocate.
func (d *Decoder) Decode(frame []byte) (*image.YCbCr, error) {
	if d.c == nil {
		return nil, ErrClosed
	}
	if len(frame) == 0 {
		return nil, &Error{Op: "decode", Msg: "empty frame", corrupt: true}
	}
	if len(frame) > maxFrameBytes {
		return nil, &Error{Op: "decode", Msg: "frame too large", corrupt: true}
	}
	rc := C.frvpx_dec_decode(d.c, (*C.uint8_t)(unsafe.Pointer(&frame[0])), C.size_t(len(frame)))
	if rc != C.VPX_CODEC_OK {
		return nil, codecError("decode", &d.c.ctx, rc, true, rc != C.VPX_CODEC_MEM_ERROR)
	}
	img := d.c.img
	if img == nil {
		return nil, nil
	}
	if d.c.corrupted != 0 {
		return nil, &Error{Op: "decode", Msg: "picture references lost or damaged data", corrupt: true}
	}
	if img.fmt != C.VPX_IMG_FMT_I420 || img.x_chroma_shift != 1 || img.y_chroma_shift != 1 ||
		img.stride[C.VPX_PLANE_U] != img.stride[C.VPX_PLANE_V] {
		return nil, &Error{Op: "decode", Msg: "unexpected picture format"}
	}
	w, h := int(img.d_w), int(img.d_h)
	if w <= 0 || h <= 0 {
		return nil, nil
	}
	ys, cs := int(img.stride[C.VPX_PLANE_Y]), int(img.stride[C.VPX_PLANE_U])
	cw, ch := (w+1)/2, (h+1)/2
	d.img = image.YCbCr{
		Y:              unsafe.Slice((*byte)(unsafe.Pointer(img.planes[C.VPX_PLANE_Y])), ys*(h-1)+w),
		Cb:             unsafe.Slice((*byte)(unsafe.Pointer(img.planes[C.VPX_PLANE_U])), cs*(ch-1)+cw),
		Cr:             unsafe.Slice((*byte)(unsafe.Pointer(img.planes[C.VPX_PLANE_V])), cs*(ch-1)+cw),
		YStride:        ys,
		CStride:        cs,
		SubsampleRatio: image.YCbCrSubsampleRatio420,
		Rect:           image.Rect(0, 0, w, h),
	}
	return &d.img, nil
}

// Close releases the decoder's C memory. Images returned by Decode become invalid. Close is
// idempotent and always returns nil.
func (d *Decoder) Close() error {
	if d.c == nil {
		return nil
	}
	d.cleanup.Stop()
	freeDecoder(d.c)
	d.c = nil
	d.img = image.YCbCr{}
	return nil
}
