package yuv

import "image"

// Scale resizes src, a 4:2:0 image, to w×h (both at least 1) with a box filter over the
// source pixels each destination pixel covers (bilinear when enlarging), into dst (reused
// when large enough; may be nil), and returns dst. It is the downscaler of the video
// sender's quality scaler: a handler's 640x480 frames become 480x360 or 320x240 when the
// link cannot carry more.
func Scale(dst, src *image.YCbCr, w, h int) *image.YCbCr {
	dst = reuseYCbCr(dst, image.YCbCrSubsampleRatio420, w, h)
	r := src.Rect
	sw, sh := r.Dx(), r.Dy()
	scalePlane(dst.Y, dst.YStride, w, h, src.Y[src.YOffset(r.Min.X, r.Min.Y):], src.YStride, sw, sh)
	cw, ch := (w+1)/2, (h+1)/2
	scw, sch := (sw+1)/2, (sh+1)/2
	co := src.COffset(r.Min.X, r.Min.Y)
	scalePlane(dst.Cb, dst.CStride, cw, ch, src.Cb[co:], src.CStride, scw, sch)
	scalePlane(dst.Cr, dst.CStride, cw, ch, src.Cr[co:], src.CStride, scw, sch)
	return dst
}

// scalePlane resizes one plane: an average of the source rectangle each destination pixel
// covers, separably (rows, then columns), with edge pixels weighted by their coverage in
// 1/256 steps.
func scalePlane(dst []byte, dstride, w, h int, src []byte, sstride, sw, sh int) {
	if w == sw && h == sh {
		for y := range h {
			copy(dst[y*dstride:y*dstride+w], src[y*sstride:y*sstride+w])
		}
		return
	}
	if w > sw || h > sh {
		bilinear(dst, dstride, w, h, src, sstride, sw, sh)
		return
	}
	// Per output column: the first source column, how many, and each one's weight.
	type span struct {
		x0, n, wi int
		inv       float64 // 1 / the sum of the weights
	}
	spans := make([]span, w)
	var weights []uint32
	for x := range w {
		a, b := x*sw*256/w, (x+1)*sw*256/w
		sp := span{x0: a >> 8, wi: len(weights)}
		for sx := a >> 8; sx<<8 < b; sx++ {
			weights = append(weights, uint32(min(b, (sx+1)<<8)-max(a, sx<<8)))
		}
		sp.n = len(weights) - sp.wi
		sp.inv = 1 / float64(b-a)
		spans[x] = sp
	}
	col := make([]uint32, sw) // the weighted sum of the covered source rows, per column
	for y := range h {
		a, b := y*sh*256/h, (y+1)*sh*256/h // the rows covered, in 1/256 of a row
		clear(col)
		for sy := a >> 8; sy<<8 < b; sy++ {
			wy := uint32(min(b, (sy+1)<<8) - max(a, sy<<8))
			line := src[sy*sstride : sy*sstride+sw]
			for x, v := range line {
				col[x] += uint32(v) * wy
			}
		}
		invRow := 1 / float64(b-a)
		out := dst[y*dstride : y*dstride+w]
		for x, sp := range spans {
			var acc uint64
			ws := weights[sp.wi : sp.wi+sp.n]
			cs := col[sp.x0 : sp.x0+sp.n]
			for i, wx := range ws {
				acc += uint64(cs[i]) * uint64(wx)
			}
			out[x] = byte(float64(acc)*sp.inv*invRow + 0.5)
		}
	}
}

// bilinear enlarges (or resizes unevenly) one plane by bilinear interpolation.
func bilinear(dst []byte, dstride, w, h int, src []byte, sstride, sw, sh int) {
	for y := range h {
		fy := (y*2+1)*sh*128/h - 128 // source row in 1/256, centre-aligned
		fy = max(fy, 0)
		y0 := min(fy>>8, sh-1)
		y1 := min(y0+1, sh-1)
		wy := fy & 255
		for x := range w {
			fx := max((x*2+1)*sw*128/w-128, 0)
			x0 := min(fx>>8, sw-1)
			x1 := min(x0+1, sw-1)
			wx := fx & 255
			top := int(src[y0*sstride+x0])*(256-wx) + int(src[y0*sstride+x1])*wx
			bot := int(src[y1*sstride+x0])*(256-wx) + int(src[y1*sstride+x1])*wx
			dst[y*dstride+x] = byte((top*(256-wy) + bot*wy + 1<<15) >> 16)
		}
	}
}
