// Package yuv converts between Go images and the planar 4:2:0 (I420) layout used by video
// codecs.
//
// Colour conversions use ITU-R BT.601 with limited ("studio", 16..235) range and integer
// arithmetic, the same convention as libyuv and the VP8 streams browsers send. Note that the
// standard library's color.YCbCr model uses full-range JFIF coefficients instead, so
// image.YCbCr.At disagrees slightly with ToRGBA; video pipelines should use ToRGBA.
//
// Images produced by this package have their bounds at the origin: (0, 0)-(w, h).
//
// All functions reuse the destination's buffers when they are large enough and then do not
// allocate. They are safe for concurrent use on distinct destinations.
package yuv

import (
	"image"
	"math"
)

// chromaSize returns the chroma plane dimensions of a w×h image at the origin.
func chromaSize(ratio image.YCbCrSubsampleRatio, w, h int) (cw, ch int) {
	switch ratio {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	default: // 4:4:4
		return w, h
	}
}

// reuseYCbCr makes dst a w×h image with the given ratio and tightly packed planes at the
// origin, reusing dst's buffers when large enough. dst may be nil.
func reuseYCbCr(dst *image.YCbCr, ratio image.YCbCrSubsampleRatio, w, h int) *image.YCbCr {
	cw, ch := chromaSize(ratio, w, h)
	if dst == nil {
		dst = new(image.YCbCr)
	}
	ny, nc := w*h, cw*ch
	if cap(dst.Y) < ny {
		dst.Y = make([]byte, ny)
	}
	if cap(dst.Cb) < nc {
		dst.Cb = make([]byte, nc)
	}
	if cap(dst.Cr) < nc {
		dst.Cr = make([]byte, nc)
	}
	dst.Y, dst.Cb, dst.Cr = dst.Y[:ny], dst.Cb[:nc], dst.Cr[:nc]
	dst.YStride, dst.CStride = w, cw
	dst.SubsampleRatio = ratio
	dst.Rect = image.Rect(0, 0, w, h)
	return dst
}

// NewI420 returns a new w×h 4:2:0 image at the origin with tightly packed planes.
func NewI420(w, h int) *image.YCbCr {
	return reuseYCbCr(nil, image.YCbCrSubsampleRatio420, w, h)
}

// Copy copies src (any subsample ratio) into dst, reusing dst's buffers when large enough
// (dst may be nil), and returns dst. The copy has src's ratio and its bounds at the origin.
// Use it to keep a picture that is only valid for a limited time, such as a decoder's.
// (If src's bounds do not start on a chroma sample boundary, as a sub-image at an odd x of a
// 4:2:0 image, each chroma row is copied from that boundary.)
func Copy(dst, src *image.YCbCr) *image.YCbCr {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst = reuseYCbCr(dst, src.SubsampleRatio, w, h)
	if w <= 0 || h <= 0 {
		return dst
	}
	x0, y0 := src.Rect.Min.X, src.Rect.Min.Y
	for y := 0; y < h; y++ {
		si := src.YOffset(x0, y0+y)
		copy(dst.Y[y*w:y*w+w], src.Y[si:si+w])
	}
	cw, _ := chromaSize(src.SubsampleRatio, w, h)
	lastRow := -1
	for y := 0; y < h; y++ {
		// Map each luma row to its chroma row in both images; copy each chroma row once.
		di := dst.COffset(0, y)
		row := di / cw
		if row == lastRow {
			continue
		}
		lastRow = row
		si := src.COffset(x0, y0+y)
		copy(dst.Cb[di:di+cw], src.Cb[si:si+cw])
		copy(dst.Cr[di:di+cw], src.Cr[si:si+cw])
	}
	return dst
}

// FlipVertical writes src flipped top to bottom into dst (reused when large enough;
// allocated if nil or too small) and returns dst. dst gets src's subsample ratio and its
// bounds at the origin. dst must not share memory with src.
func FlipVertical(dst, src *image.YCbCr) *image.YCbCr {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst = reuseYCbCr(dst, src.SubsampleRatio, w, h)
	if w <= 0 || h <= 0 {
		return dst
	}
	x0, y0 := src.Rect.Min.X, src.Rect.Min.Y
	for y := 0; y < h; y++ {
		si := src.YOffset(x0, y0+h-1-y)
		copy(dst.Y[y*w:y*w+w], src.Y[si:si+w])
	}
	cw, ch := chromaSize(src.SubsampleRatio, w, h)
	vsub := 1 // luma rows per chroma row
	switch src.SubsampleRatio {
	case image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio410:
		vsub = 2
	}
	for cy := 0; cy < ch; cy++ {
		// The destination chroma row cy covers luma row cy*vsub; take the source chroma
		// row under the mirrored luma row.
		si := src.COffset(x0, y0+h-1-cy*vsub)
		di := cy * cw
		copy(dst.Cb[di:di+cw], src.Cb[si:si+cw])
		copy(dst.Cr[di:di+cw], src.Cr[si:si+cw])
	}
	return dst
}

// PSNR returns the peak signal-to-noise ratio, in dB, between the luma planes of a and b.
// It returns +Inf for identical planes and 0 if the sizes differ.
func PSNR(a, b *image.YCbCr) float64 {
	w, h := a.Rect.Dx(), a.Rect.Dy()
	if w != b.Rect.Dx() || h != b.Rect.Dy() || w <= 0 || h <= 0 {
		return 0
	}
	var sse uint64
	for y := 0; y < h; y++ {
		ai := a.YOffset(a.Rect.Min.X, a.Rect.Min.Y+y)
		bi := b.YOffset(b.Rect.Min.X, b.Rect.Min.Y+y)
		ar, br := a.Y[ai:ai+w], b.Y[bi:bi+w]
		for x := range ar {
			d := int(ar[x]) - int(br[x])
			sse += uint64(d * d)
		}
	}
	if sse == 0 {
		return math.Inf(1)
	}
	mse := float64(sse) / float64(w*h)
	return 10 * math.Log10(255*255/mse)
}
