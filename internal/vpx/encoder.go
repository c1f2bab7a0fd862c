package vpx

/*
#include <stdlib.h>
#include "frvpx.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"runtime"
	"unsafe"
)

// Encoder defaults.
const (
	DefaultBitrateKbps = 1500
	DefaultFPS         = 30
	// DefaultCPUUsed fixes libvpx's real-time speed at 6, WebRTC's own VP8 default. On the
	// noisy 640x480 benchmark fixture it encodes a frame in ~2.9 ms at 44.0 dB luma PSNR,
	// against ~8 ms and 44.8 dB for the adaptive settings 8..10 and ~2.2 ms and 42.1 dB for
	// the fastest setting (see BenchmarkEncode640).
	DefaultCPUUsed          = -6
	DefaultThreads          = 1
	DefaultKeyFrameInterval = 3000

	// MaxDimension is the largest width or height VP8 can code.
	MaxDimension = 16383
)

// EncoderConfig configures an Encoder. Zero fields select the defaults.
type EncoderConfig struct {
	// BitrateKbps is the target bit rate in kbit/s (default 1500). It can be changed later
	// with SetBitrate.
	BitrateKbps int
	// FPS is the nominal frame rate (default 30). Rate control follows the actual spacing of
	// the presentation times; FPS only sizes the first frame and the key-frame size cap.
	FPS int
	// CPUUsed is VP8's cpu-used setting, -16..16 (default DefaultCPUUsed, -6). With the
	// real-time deadline a negative value -n fixes libvpx's speed at n (4..16), and a
	// positive value n lets libvpx adapt its speed, from measured wall-clock encode times,
	// so that encoding takes at most (16-n)/16 of the frame interval: speed, and so quality,
	// then depend on the machine and its load. Higher speeds are faster and lower quality.
	// 0 selects the default.
	CPUUsed int
	// Threads is the number of encoder threads (default 1).
	Threads int
	// KeyFrameInterval is the maximum number of frames between key frames (default 3000:
	// in WebRTC key frames are requested by the receiver with PLI/FIR).
	KeyFrameInterval int
	// FrameDropThreshold is libvpx's rc_dropframe_thresh: when the rate-control buffer falls
	// below this percentage libvpx drops frames to hold the bit rate. 0 (default) never drops.
	FrameDropThreshold int
}

// normalized returns c with defaults filled in, or an error for out-of-range values.
func (c EncoderConfig) normalized() (EncoderConfig, error) {
	if c.BitrateKbps == 0 {
		c.BitrateKbps = DefaultBitrateKbps
	}
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.CPUUsed == 0 {
		c.CPUUsed = DefaultCPUUsed
	}
	if c.Threads == 0 {
		c.Threads = DefaultThreads
	}
	if c.KeyFrameInterval == 0 {
		c.KeyFrameInterval = DefaultKeyFrameInterval
	}
	switch {
	case c.BitrateKbps < 0 || c.BitrateKbps > 1_000_000:
		return c, fmt.Errorf("vpx: invalid bitrate %d kbit/s", c.BitrateKbps)
	case c.FPS < 0 || c.FPS > 1000:
		return c, fmt.Errorf("vpx: invalid frame rate %d", c.FPS)
	case c.CPUUsed < -16 || c.CPUUsed > 16:
		return c, fmt.Errorf("vpx: cpu-used %d outside -16..16", c.CPUUsed)
	case c.Threads < 0 || c.Threads > 64:
		return c, fmt.Errorf("vpx: invalid thread count %d", c.Threads)
	case c.KeyFrameInterval < 0:
		return c, fmt.Errorf("vpx: invalid key frame interval %d", c.KeyFrameInterval)
	case c.FrameDropThreshold < 0 || c.FrameDropThreshold > 100:
		return c, fmt.Errorf("vpx: invalid frame drop threshold %d", c.FrameDropThreshold)
	}
	return c, nil
}

// Encoder encodes I420 images to VP8 with libvpx's real-time settings: VPX_DL_REALTIME
// deadline, constant bit rate, error resilient, no lag and no alt-ref frames. It initialises
// itself for the size of the first image and re-initialises (freeing the old context)
// whenever the image size changes; the first frame after that is a key frame.
//
// An Encoder is not safe for concurrent use.
type Encoder struct {
	c       *C.frvpx_enc
	cfg     EncoderConfig
	w, h    int // size the C encoder is initialised for; 0 when not initialised
	cleanup runtime.Cleanup

	// Presentation-time fix-up: libvpx requires strictly increasing timestamps.
	frameDur  int64 // nominal frame duration in 90 kHz ticks
	ptsOffset int64
	lastPTS   int64
	havePTS   bool
}

// NewEncoder returns an encoder with the given configuration (zero fields select defaults).
// No libvpx context exists until the first Encode. Close it when done.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	c := (*C.frvpx_enc)(C.calloc(1, C.sizeof_frvpx_enc))
	if c == nil {
		return nil, errNoMemory("encoder")
	}
	e := &Encoder{c: c, cfg: cfg, frameDur: int64(90000 / cfg.FPS)}
	if e.frameDur < 1 {
		e.frameDur = 1
	}
	e.cleanup = runtime.AddCleanup(e, freeEncoder, c)
	return e, nil
}

func freeEncoder(c *C.frvpx_enc) {
	C.frvpx_enc_destroy(c)
	C.free(unsafe.Pointer(c))
}

// Config returns the encoder's configuration with defaults filled in.
func (e *Encoder) Config() EncoderConfig { return e.cfg }

func (e *Encoder) init(w, h int) error {
	e.w, e.h = 0, 0
	p := C.frvpx_enc_params{
		width:             C.uint(w),
		height:            C.uint(h),
		bitrate_kbps:      C.uint(e.cfg.BitrateKbps),
		fps:               C.uint(e.cfg.FPS),
		cpu_used:          C.int(e.cfg.CPUUsed),
		threads:           C.uint(e.cfg.Threads),
		kf_max_dist:       C.uint(e.cfg.KeyFrameInterval),
		drop_frame_thresh: C.uint(e.cfg.FrameDropThreshold),
	}
	rc := C.frvpx_enc_init(e.c, &p)
	if rc != C.VPX_CODEC_OK {
		op := "encoder init"
		if e.c.failed_ctrl != nil {
			op = "encoder control " + C.GoString(e.c.failed_ctrl)
		}
		err := codecError(op, &e.c.ctx, rc, e.c.inited != 0, false)
		C.frvpx_enc_destroy(e.c)
		return err
	}
	e.w, e.h = w, h
	return nil
}

// Encode encodes img, a 4:2:0 *image.YCbCr of any size (odd sizes and arbitrary strides
// allowed), with presentation time pts in 90 kHz units. Presentation times should increase;
// if they do not, the encoder shifts its internal timeline so that libvpx still sees strictly
// increasing times (rate control follows the spacing of pts). forceKey forces a key frame.
//
// Encode appends the compressed frame to dst[:0] and returns it with whether it is a key
// frame. It returns an empty slice if libvpx dropped the frame (only possible with
// FrameDropThreshold > 0). The pixels are read in place during the call and not retained.
// Encode does not allocate when dst has enough capacity.
func (e *Encoder) Encode(dst []byte, img *image.YCbCr, pts int64, forceKey bool) (out []byte, key bool, err error) {
	if e.c == nil {
		return dst[:0], false, ErrClosed
	}
	if img == nil {
		return dst[:0], false, errors.New("vpx: encode: nil image")
	}
	if img.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return dst[:0], false, fmt.Errorf("vpx: encode: subsample ratio %v, need 4:2:0", img.SubsampleRatio)
	}
	r := img.Rect
	w, h := r.Dx(), r.Dy()
	if w <= 0 || h <= 0 || w > MaxDimension || h > MaxDimension {
		return dst[:0], false, fmt.Errorf("vpx: encode: invalid image size %dx%d", w, h)
	}
	// The C side reads the planes directly: check that every row is inside the slices.
	cw, ch := (w+1)/2, (h+1)/2
	yoff := img.YOffset(r.Min.X, r.Min.Y)
	coff := img.COffset(r.Min.X, r.Min.Y)
	if img.YStride < w || img.CStride < cw || yoff < 0 || coff < 0 ||
		yoff+img.YStride*(h-1)+w > len(img.Y) ||
		coff+img.CStride*(ch-1)+cw > len(img.Cb) ||
		coff+img.CStride*(ch-1)+cw > len(img.Cr) {
		return dst[:0], false, errors.New("vpx: encode: image planes are smaller than its bounds")
	}
	if w != e.w || h != e.h {
		if err := e.init(w, h); err != nil {
			return dst[:0], false, err
		}
	}

	t := pts + e.ptsOffset
	if e.havePTS && t <= e.lastPTS {
		next := e.lastPTS + e.frameDur
		e.ptsOffset += next - t
		t = next
	}
	e.lastPTS, e.havePTS = t, true

	force := C.int(0)
	if forceKey {
		force = 1
	}
	rc := C.frvpx_enc_encode(e.c,
		(*C.uint8_t)(unsafe.Pointer(&img.Y[yoff])),
		(*C.uint8_t)(unsafe.Pointer(&img.Cb[coff])),
		(*C.uint8_t)(unsafe.Pointer(&img.Cr[coff])),
		C.int(img.YStride), C.int(img.CStride), C.int(img.CStride),
		C.int64_t(t), C.ulong(e.frameDur), force)
	if rc != C.VPX_CODEC_OK {
		return dst[:0], false, codecError("encode", &e.c.ctx, rc, true, false)
	}
	out = dst[:0]
	for i := 0; i < int(e.c.nout); i++ {
		out = append(out, unsafe.Slice((*byte)(e.c.out_buf[i]), int(e.c.out_sz[i]))...)
		key = key || e.c.out_key[i] != 0
	}
	return out, key, nil
}

// SetBitrate changes the target bit rate in kbit/s, taking effect with the next frame.
func (e *Encoder) SetBitrate(kbps int) error {
	if e.c == nil {
		return ErrClosed
	}
	if kbps <= 0 || kbps > 1_000_000 {
		return fmt.Errorf("vpx: invalid bitrate %d kbit/s", kbps)
	}
	if rc := C.frvpx_enc_set_bitrate(e.c, C.uint(kbps)); rc != C.VPX_CODEC_OK {
		return codecError("set bitrate", &e.c.ctx, rc, e.c.inited != 0, false)
	}
	e.cfg.BitrateKbps = kbps
	return nil
}

// Close releases the encoder's C memory. Close is idempotent and always returns nil.
func (e *Encoder) Close() error {
	if e.c == nil {
		return nil
	}
	e.cleanup.Stop()
	freeEncoder(e.c)
	e.c = nil
	e.w, e.h = 0, 0
	return nil
}
