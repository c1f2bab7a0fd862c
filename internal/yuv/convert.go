package yuv

import (
	"image"
)

// BT.601 limited-range forward transform, 8-bit fixed point (libyuv's RGBToY/U/V).
// Y = (66R + 129G + 25B + 0x1080) >> 8 is within 16..235 and U, V within 16..240 for any
// 8-bit input, so no clamping is needed.

func rgbToY(r, g, b int32) byte {
	return byte((66*r + 129*g + 25*b + 0x1080) >> 8)
}

func rgbToU(r, g, b int32) byte {
	return byte((112*b - 74*g - 38*r + 0x8080) >> 8)
}

func rgbToV(r, g, b int32) byte {
	return byte((112*r - 94*g - 18*b + 0x8080) >> 8)
}

// avg returns the rounded mean of sum over n (1, 2 or 4) samples.
func avg(sum, n int32) int32 {
	switch n {
	case 4:
		return (sum + 2) >> 2
	case 2:
		return (sum + 1) >> 1
	}
	return sum
}

// ToI420 converts src to a 4:2:0 *image.YCbCr, reusing dst's buffers when large enough
// (dst may be nil; it is reused in place, so the result is dst when dst is not nil).
//
// A 4:2:0 *image.YCbCr is returned as is, without copying, and dst is left untouched. Other
// *image.YCbCr ratios are resampled (chroma averaged), *image.RGBA and *image.NRGBA use fast
// BT.601 limited-range integer paths, and anything else goes through At. Transparent pixels
// are treated as composited over black, as their premultiplied color.Color values are. The
// result has its bounds at the origin. ToI420 does not allocate when dst is large enough.
func ToI420(dst *image.YCbCr, src image.Image) *image.YCbCr {
	switch s := src.(type) {
	case *image.YCbCr:
		if s.SubsampleRatio == image.YCbCrSubsampleRatio420 {
			return s
		}
		return ycbcrToI420(dst, s)
	case *image.RGBA:
		return rgbaToI420(dst, s.Pix, s.Stride, s.PixOffset(s.Rect.Min.X, s.Rect.Min.Y), s.Rect.Dx(), s.Rect.Dy(), false)
	case *image.NRGBA:
		return rgbaToI420(dst, s.Pix, s.Stride, s.PixOffset(s.Rect.Min.X, s.Rect.Min.Y), s.Rect.Dx(), s.Rect.Dy(), true)
	}
	return genericToI420(dst, src)
}

// premul multiplies an 8-bit colour component by an 8-bit alpha, rounding like color.NRGBA.
func premul(c, a int32) int32 {
	c16 := uint32(c) | uint32(c)<<8
	a16 := uint32(a) | uint32(a)<<8
	return int32((c16 * a16 / 0xffff) >> 8)
}

// rgbaToI420 converts 8-bit RGBA (premultiplied, or straight if straight is set) pixels.
func rgbaToI420(dst *image.YCbCr, pix []byte, stride, off, w, h int, straight bool) *image.YCbCr {
	dst = reuseYCbCr(dst, image.YCbCrSubsampleRatio420, w, h)
	if w <= 0 || h <= 0 {
		return dst
	}
	cw := dst.CStride
	for y := 0; y < h; y += 2 {
		o0 := off + y*stride
		r0 := pix[o0 : o0+4*w : o0+4*w]
		y0 := dst.Y[y*w : y*w+w : y*w+w]
		r1, y1 := r0, y0 // for an odd last row the row pairs with itself
		rows := int32(2)
		if y+1 < h {
			o1 := o0 + stride
			r1 = pix[o1 : o1+4*w : o1+4*w]
			y1 = dst.Y[(y+1)*w : (y+1)*w+w : (y+1)*w+w]
		} else {
			rows = 1
		}
		ci := (y / 2) * cw
		cb := dst.Cb[ci : ci+cw : ci+cw]
		cr := dst.Cr[ci : ci+cw : ci+cw]
		if !straight {
			rgbaRowPair(r0, r1, y0, y1, cb, cr, w)
		} else {
			nrgbaRowPair(r0, r1, y0, y1, cb, cr, w, rows)
		}
	}
	return dst
}

// rgbaRowPair converts two rows of opaque-or-premultiplied RGBA to two luma rows and one
// chroma row. For an odd last row r1 and y1 alias r0 and y0: averaging a row with itself is
// the same as averaging the row alone.
func rgbaRowPair(r0, r1, y0, y1, cb, cr []byte, w int) {
	_, _, _, _ = r0[4*w-1], r1[4*w-1], y0[w-1], y1[w-1]
	_, _ = cb[(w-1)/2], cr[(w-1)/2]
	for x := 0; x < w; x += 2 {
		x1 := x + 1
		if x1 == w { // odd width: the last column pairs with itself
			x1 = x
		}
		ra, ga, ba := int32(r0[4*x]), int32(r0[4*x+1]), int32(r0[4*x+2])
		rb, gb, bb := int32(r0[4*x1]), int32(r0[4*x1+1]), int32(r0[4*x1+2])
		rc, gc, bc := int32(r1[4*x]), int32(r1[4*x+1]), int32(r1[4*x+2])
		rd, gd, bd := int32(r1[4*x1]), int32(r1[4*x1+1]), int32(r1[4*x1+2])
		y0[x] = rgbToY(ra, ga, ba)
		y0[x1] = rgbToY(rb, gb, bb)
		y1[x] = rgbToY(rc, gc, bc)
		y1[x1] = rgbToY(rd, gd, bd)
		r := (ra + rb + rc + rd + 2) >> 2
		g := (ga + gb + gc + gd + 2) >> 2
		b := (ba + bb + bc + bd + 2) >> 2
		cb[x>>1] = rgbToU(r, g, b)
		cr[x>>1] = rgbToV(r, g, b)
	}
}

// nrgbaRowPair is rgbaRowPair for straight (non-premultiplied) alpha.
func nrgbaRowPair(r0, r1, y0, y1, cb, cr []byte, w int, rows int32) {
	for x := 0; x < w; x += 2 {
		var rs, gs, bs, n int32
		for dx := 0; dx < 2 && x+dx < w; dx++ {
			for dy := int32(0); dy < rows; dy++ {
				row, out := r0, y0
				if dy == 1 {
					row, out = r1, y1
				}
				p := row[4*(x+dx) : 4*(x+dx)+4 : 4*(x+dx)+4]
				r, g, b, a := int32(p[0]), int32(p[1]), int32(p[2]), int32(p[3])
				if a != 0xff {
					r, g, b = premul(r, a), premul(g, a), premul(b, a)
				}
				out[x+dx] = rgbToY(r, g, b)
				rs, gs, bs, n = rs+r, gs+g, bs+b, n+1
			}
		}
		cb[x/2] = rgbToU(avg(rs, n), avg(gs, n), avg(bs, n))
		cr[x/2] = rgbToV(avg(rs, n), avg(gs, n), avg(bs, n))
	}
}

// genericToI420 converts any image through its At method.
func genericToI420(dst *image.YCbCr, src image.Image) *image.YCbCr {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	dst = reuseYCbCr(dst, image.YCbCrSubsampleRatio420, w, h)
	cw := dst.CStride
	for y := 0; y < h; y += 2 {
		for x := 0; x < w; x += 2 {
			var rs, gs, bs, n int32
			for dy := 0; dy < 2 && y+dy < h; dy++ {
				for dx := 0; dx < 2 && x+dx < w; dx++ {
					r16, g16, b16, _ := src.At(b.Min.X+x+dx, b.Min.Y+y+dy).RGBA()
					r, g, bb := int32(r16>>8), int32(g16>>8), int32(b16>>8)
					dst.Y[(y+dy)*w+x+dx] = rgbToY(r, g, bb)
					rs, gs, bs, n = rs+r, gs+g, bs+bb, n+1
				}
			}
			ci := (y/2)*cw + x/2
			dst.Cb[ci] = rgbToU(avg(rs, n), avg(gs, n), avg(bs, n))
			dst.Cr[ci] = rgbToV(avg(rs, n), avg(gs, n), avg(bs, n))
		}
	}
	return dst
}

// ycbcrToI420 resamples a non-4:2:0 YCbCr image: luma is copied, chroma is averaged over
// each 2×2 luma block.
func ycbcrToI420(dst *image.YCbCr, src *image.YCbCr) *image.YCbCr {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst = reuseYCbCr(dst, image.YCbCrSubsampleRatio420, w, h)
	if w <= 0 || h <= 0 {
		return dst
	}
	x0, y0 := src.Rect.Min.X, src.Rect.Min.Y
	for y := 0; y < h; y++ {
		si := src.YOffset(x0, y0+y)
		copy(dst.Y[y*w:y*w+w], src.Y[si:si+w])
	}
	cw := dst.CStride
	for y := 0; y < h; y += 2 {
		for x := 0; x < w; x += 2 {
			var us, vs, n int32
			for dy := 0; dy < 2 && y+dy < h; dy++ {
				for dx := 0; dx < 2 && x+dx < w; dx++ {
					ci := src.COffset(x0+x+dx, y0+y+dy)
					us += int32(src.Cb[ci])
					vs += int32(src.Cr[ci])
					n++
				}
			}
			di := (y/2)*cw + x/2
			dst.Cb[di] = byte(avg(us, n))
			dst.Cr[di] = byte(avg(vs, n))
		}
	}
	return dst
}

// clamp8 clamps x to 0..255.
func clamp8(x int32) byte {
	if uint32(x) > 255 {
		if x < 0 {
			return 0
		}
		return 255
	}
	return byte(x)
}

// ToRGBA converts src (any subsample ratio) to RGBA with the BT.601 limited-range inverse
// transform in integer arithmetic, reusing dst's pixel buffer when large enough (dst may be
// nil; it is reused in place). The result is opaque and has its bounds at the origin.
// ToRGBA does not allocate when dst is large enough.
func ToRGBA(dst *image.RGBA, src *image.YCbCr) *image.RGBA {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	if w < 0 {
		w = 0
	}
	if h < 0 {
		h = 0
	}
	if dst == nil {
		dst = new(image.RGBA)
	}
	n := 4 * w * h
	if cap(dst.Pix) < n {
		dst.Pix = make([]byte, n)
	}
	dst.Pix = dst.Pix[:n]
	dst.Stride = 4 * w
	dst.Rect = image.Rect(0, 0, w, h)
	if n == 0 {
		return dst
	}
	x0, y0 := src.Rect.Min.X, src.Rect.Min.Y
	pairs := (src.SubsampleRatio == image.YCbCrSubsampleRatio420 ||
		src.SubsampleRatio == image.YCbCrSubsampleRatio422) && x0&1 == 0
	for y := 0; y < h; y++ {
		out := dst.Pix[y*4*w : (y+1)*4*w : (y+1)*4*w]
		yi := src.YOffset(x0, y0+y)
		yrow := src.Y[yi : yi+w : yi+w]
		if pairs {
			ci := src.COffset(x0, y0+y)
			cw := (w + 1) / 2
			yuvRowPairs(out, yrow, src.Cb[ci:ci+cw:ci+cw], src.Cr[ci:ci+cw:ci+cw], w)
			continue
		}
		for x := 0; x < w; x++ {
			ci := src.COffset(x0+x, y0+y)
			yuvPixel(out[4*x:4*x+4:4*x+4], yrow[x], src.Cb[ci], src.Cr[ci])
		}
	}
	return dst
}

// yuvPixel converts one pixel.
func yuvPixel(out []byte, yy, u, v byte) {
	y1 := (int32(yy) - 16) * 298
	du, dv := int32(u)-128, int32(v)-128
	out[0] = clamp8((y1 + 409*dv + 128) >> 8)
	out[1] = clamp8((y1 - 100*du - 208*dv + 128) >> 8)
	out[2] = clamp8((y1 + 516*du + 128) >> 8)
	out[3] = 0xff
}

// yuvRowPairs converts one row whose chroma is shared by pixel pairs. The loop re-slices
// its inputs so that the compiler can drop bounds checks.
func yuvRowPairs(out, yrow, cb, cr []byte, w int) {
	o, yy, u, v := out[:4*w], yrow[:w], cb, cr
	for len(o) >= 8 && len(yy) >= 2 && len(u) >= 1 && len(v) >= 1 {
		du, dv := int32(u[0])-128, int32(v[0])-128
		rv := 409*dv + 128
		guv := -100*du - 208*dv + 128
		bu := 516*du + 128
		ya := (int32(yy[0]) - 16) * 298
		yb := (int32(yy[1]) - 16) * 298
		o[0] = clamp8((ya + rv) >> 8)
		o[1] = clamp8((ya + guv) >> 8)
		o[2] = clamp8((ya + bu) >> 8)
		o[3] = 0xff
		o[4] = clamp8((yb + rv) >> 8)
		o[5] = clamp8((yb + guv) >> 8)
		o[6] = clamp8((yb + bu) >> 8)
		o[7] = 0xff
		o, yy, u, v = o[8:], yy[2:], u[1:], v[1:]
	}
	if len(o) >= 4 && len(yy) >= 1 && len(u) >= 1 && len(v) >= 1 {
		yuvPixel(o, yy[0], u[0], v[0])
	}
}
