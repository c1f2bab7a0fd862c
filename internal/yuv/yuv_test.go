package yuv

import (
	"image"
	"image/color"
	"image/color/palette"
	"math"
	"math/rand/v2"
	"testing"
)

var ratios = []image.YCbCrSubsampleRatio{
	image.YCbCrSubsampleRatio444,
	image.YCbCrSubsampleRatio422,
	image.YCbCrSubsampleRatio420,
	image.YCbCrSubsampleRatio440,
	image.YCbCrSubsampleRatio411,
	image.YCbCrSubsampleRatio410,
}

var sizes = [][2]int{{1, 1}, {2, 2}, {3, 5}, {7, 4}, {16, 9}, {33, 17}, {64, 48}}

// refYUV is the floating-point BT.601 limited-range forward transform.
func refYUV(r, g, b float64) (y, u, v float64) {
	y = 16 + (65.481*r+128.553*g+24.966*b)/255
	u = 128 + (-37.797*r-74.203*g+112*b)/255
	v = 128 + (112*r-93.786*g-18.214*b)/255
	return
}

// refRGB is the floating-point BT.601 limited-range inverse transform.
func refRGB(y, u, v float64) (r, g, b float64) {
	c := func(x float64) float64 { return math.Max(0, math.Min(255, x)) }
	yy := 255.0 / 219 * (y - 16)
	r = c(yy + 255.0/112*0.701*(v-128))
	g = c(yy - 255.0/112*0.886*0.114/0.587*(u-128) - 255.0/112*0.701*0.299/0.587*(v-128))
	b = c(yy + 255.0/112*0.886*(u-128))
	return
}

// refToI420 is the slow reference: At() per pixel, float maths, chroma from the mean RGB
// of each 2×2 block.
func refToI420(src image.Image) (ys []float64, us, vs []float64, w, h int) {
	bd := src.Bounds()
	w, h = bd.Dx(), bd.Dy()
	cw, ch := (w+1)/2, (h+1)/2
	ys = make([]float64, w*h)
	us = make([]float64, cw*ch)
	vs = make([]float64, cw*ch)
	for cy := 0; cy < ch; cy++ {
		for cx := 0; cx < cw; cx++ {
			var rs, gs, bs, n float64
			for y := 2 * cy; y < 2*cy+2 && y < h; y++ {
				for x := 2 * cx; x < 2*cx+2 && x < w; x++ {
					r16, g16, b16, _ := src.At(bd.Min.X+x, bd.Min.Y+y).RGBA()
					r, g, b := float64(r16)/257, float64(g16)/257, float64(b16)/257
					ys[y*w+x], _, _ = refYUV(r, g, b)
					rs, gs, bs, n = rs+r, gs+g, bs+b, n+1
				}
			}
			_, us[cy*cw+cx], vs[cy*cw+cx] = refYUV(rs/n, gs/n, bs/n)
		}
	}
	return
}

func checkI420(t *testing.T, name string, got *image.YCbCr, src image.Image) {
	t.Helper()
	ys, us, vs, w, h := refToI420(src)
	if got.SubsampleRatio != image.YCbCrSubsampleRatio420 || got.Rect != image.Rect(0, 0, w, h) {
		t.Fatalf("%s: got ratio %v rect %v", name, got.SubsampleRatio, got.Rect)
	}
	maxErr := 0.0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			maxErr = math.Max(maxErr, math.Abs(float64(got.Y[got.YOffset(x, y)])-ys[y*w+x]))
			ci := got.COffset(x, y)
			cw := (w + 1) / 2
			maxErr = math.Max(maxErr, math.Abs(float64(got.Cb[ci])-us[(y/2)*cw+x/2]))
			maxErr = math.Max(maxErr, math.Abs(float64(got.Cr[ci])-vs[(y/2)*cw+x/2]))
		}
	}
	if maxErr > 2 {
		t.Errorf("%s %dx%d: max error %.2f > 2", name, w, h, maxErr)
	}
}

func randRGBA(r *rand.Rand, rect image.Rectangle, opaque bool) *image.RGBA {
	img := image.NewRGBA(rect)
	for i := 0; i < len(img.Pix); i += 4 {
		a := uint8(255)
		if !opaque {
			a = uint8(r.IntN(256))
		}
		img.Pix[i+0] = uint8(r.IntN(int(a) + 1))
		img.Pix[i+1] = uint8(r.IntN(int(a) + 1))
		img.Pix[i+2] = uint8(r.IntN(int(a) + 1))
		img.Pix[i+3] = a
	}
	return img
}

func randNRGBA(r *rand.Rand, rect image.Rectangle, opaque bool) *image.NRGBA {
	img := image.NewNRGBA(rect)
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
		if opaque && i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

func randYCbCr(r *rand.Rand, rect image.Rectangle, ratio image.YCbCrSubsampleRatio) *image.YCbCr {
	img := image.NewYCbCr(rect, ratio)
	for i := range img.Y {
		img.Y[i] = uint8(16 + r.IntN(220))
	}
	for i := range img.Cb {
		img.Cb[i] = uint8(16 + r.IntN(225))
		img.Cr[i] = uint8(16 + r.IntN(225))
	}
	return img
}

func TestToI420RGBA(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Same image through the fast path and the reference, with and without alpha, and as a
	// sub-image with an odd origin.
	for _, opaque := range []bool{true, false} {
		for _, sz := range sizes {
			src := randRGBA(rng, image.Rect(0, 0, sz[0]+3, sz[1]+3), opaque)
			checkI420(t, "RGBA", ToI420(nil, src), src)
			sub := src.SubImage(image.Rect(1, 3, sz[0]+1, sz[1]+3))
			checkI420(t, "RGBA sub", ToI420(nil, sub), sub)
			n := randNRGBA(rng, image.Rect(-2, -1, sz[0]-2, sz[1]-1), opaque)
			checkI420(t, "NRGBA", ToI420(nil, n), n)
		}
	}
}

func TestToI420Generic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sz := range sizes {
		rect := image.Rect(5, 7, 5+sz[0], 7+sz[1])
		gray := image.NewGray(rect)
		for i := range gray.Pix {
			gray.Pix[i] = uint8(rng.IntN(256))
		}
		checkI420(t, "Gray", ToI420(nil, gray), gray)
		pal := image.NewPaletted(rect, palette.WebSafe)
		for i := range pal.Pix {
			pal.Pix[i] = uint8(rng.IntN(len(palette.WebSafe)))
		}
		checkI420(t, "Paletted", ToI420(nil, pal), pal)
		rgba64 := image.NewRGBA64(rect)
		for i := range rgba64.Pix {
			rgba64.Pix[i] = uint8(rng.IntN(256))
			if i%8 >= 6 {
				rgba64.Pix[i] = 0xff
			}
		}
		checkI420(t, "RGBA64", ToI420(nil, rgba64), rgba64)
	}
}

func TestToI420YCbCr(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ratio := range ratios {
		for _, sz := range sizes {
			src := randYCbCr(rng, image.Rect(0, 0, sz[0], sz[1]), ratio)
			got := ToI420(nil, src)
			if ratio == image.YCbCrSubsampleRatio420 {
				if got != src {
					t.Fatalf("4:2:0 input was copied")
				}
				continue
			}
			w, h := sz[0], sz[1]
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					if got.Y[got.YOffset(x, y)] != src.Y[src.YOffset(x, y)] {
						t.Fatalf("%v %dx%d: luma differs at %d,%d", ratio, w, h, x, y)
					}
				}
			}
			// Reference chroma: mean of the source chroma under each 2×2 luma block.
			for cy := 0; cy < (h+1)/2; cy++ {
				for cx := 0; cx < (w+1)/2; cx++ {
					var us, vs, n float64
					for y := 2 * cy; y < 2*cy+2 && y < h; y++ {
						for x := 2 * cx; x < 2*cx+2 && x < w; x++ {
							ci := src.COffset(x, y)
							us += float64(src.Cb[ci])
							vs += float64(src.Cr[ci])
							n++
						}
					}
					gi := got.COffset(2*cx, 2*cy)
					if math.Abs(float64(got.Cb[gi])-us/n) > 1 || math.Abs(float64(got.Cr[gi])-vs/n) > 1 {
						t.Fatalf("%v %dx%d: chroma at %d,%d = %d,%d want %.1f,%.1f", ratio, w, h, cx, cy,
							got.Cb[gi], got.Cr[gi], us/n, vs/n)
					}
				}
			}
		}
	}
}

func TestToRGBA(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var dst *image.RGBA
	for _, ratio := range ratios {
		for _, sz := range sizes {
			full := randYCbCr(rng, image.Rect(0, 0, sz[0]+2, sz[1]+2), ratio)
			for _, src := range []*image.YCbCr{
				full.SubImage(image.Rect(0, 0, sz[0], sz[1])).(*image.YCbCr),
				full.SubImage(image.Rect(1, 1, sz[0]+1, sz[1]+1)).(*image.YCbCr),
				full.SubImage(image.Rect(2, 1, sz[0]+2, sz[1]+1)).(*image.YCbCr),
			} {
				dst = ToRGBA(dst, src)
				w, h := sz[0], sz[1]
				if dst.Rect != image.Rect(0, 0, w, h) {
					t.Fatalf("rect %v", dst.Rect)
				}
				maxErr := 0.0
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						sx, sy := src.Rect.Min.X+x, src.Rect.Min.Y+y
						ci := src.COffset(sx, sy)
						r, g, b := refRGB(float64(src.Y[src.YOffset(sx, sy)]), float64(src.Cb[ci]), float64(src.Cr[ci]))
						p := dst.Pix[dst.PixOffset(x, y):]
						maxErr = math.Max(maxErr, math.Abs(float64(p[0])-r))
						maxErr = math.Max(maxErr, math.Abs(float64(p[1])-g))
						maxErr = math.Max(maxErr, math.Abs(float64(p[2])-b))
						if p[3] != 0xff {
							t.Fatalf("alpha %d", p[3])
						}
					}
				}
				if maxErr > 2 {
					t.Errorf("%v %v: max error %.2f", ratio, src.Rect, maxErr)
				}
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	// A smooth image survives RGBA -> I420 -> RGBA closely.
	const w, h = 64, 48
	src := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			src.SetRGBA(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), uint8(128 + x - y), 255})
		}
	}
	out := ToRGBA(nil, ToI420(nil, src))
	maxErr := 0
	for i := range src.Pix {
		d := int(src.Pix[i]) - int(out.Pix[i])
		maxErr = max(maxErr, d, -d)
	}
	if maxErr > 8 {
		t.Errorf("round trip max error %d", maxErr)
	}
}

func TestFlipVertical(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, ratio := range ratios {
		for _, sz := range sizes {
			w, h := sz[0], sz[1]
			full := randYCbCr(rng, image.Rect(0, 0, w+2, h+2), ratio)
			src := full.SubImage(image.Rect(0, 2, w, h+2)).(*image.YCbCr)
			f := FlipVertical(nil, src)
			if f.Rect != image.Rect(0, 0, w, h) || f.SubsampleRatio != ratio {
				t.Fatalf("flip: rect %v ratio %v", f.Rect, f.SubsampleRatio)
			}
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					sx, sy := x, src.Rect.Min.Y+h-1-y
					if f.Y[f.YOffset(x, y)] != src.Y[src.YOffset(sx, sy)] {
						t.Fatalf("%v %dx%d: luma (%d,%d)", ratio, w, h, x, y)
					}
					// Chroma rows map exactly when the vertical subsampling divides h.
					if h%2 == 0 || ratio == image.YCbCrSubsampleRatio444 || ratio == image.YCbCrSubsampleRatio422 ||
						ratio == image.YCbCrSubsampleRatio411 {
						fi, si := f.COffset(x, y), src.COffset(sx, sy)
						if f.Cb[fi] != src.Cb[si] || f.Cr[fi] != src.Cr[si] {
							t.Fatalf("%v %dx%d: chroma (%d,%d)", ratio, w, h, x, y)
						}
					}
				}
			}
			// Flipping twice restores the image.
			back := FlipVertical(nil, f)
			c := Copy(nil, src)
			if !equalYCbCr(back, c) {
				t.Fatalf("%v %dx%d: double flip differs", ratio, w, h)
			}
		}
	}
}

func equalYCbCr(a, b *image.YCbCr) bool {
	if a.Rect != b.Rect || a.SubsampleRatio != b.SubsampleRatio {
		return false
	}
	for y := a.Rect.Min.Y; y < a.Rect.Max.Y; y++ {
		for x := a.Rect.Min.X; x < a.Rect.Max.X; x++ {
			ai, bi := a.COffset(x, y), b.COffset(x, y)
			if a.Y[a.YOffset(x, y)] != b.Y[b.YOffset(x, y)] || a.Cb[ai] != b.Cb[bi] || a.Cr[ai] != b.Cr[bi] {
				return false
			}
		}
	}
	return true
}

func TestCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, ratio := range ratios {
		full := randYCbCr(rng, image.Rect(0, 0, 21, 13), ratio)
		src := full.SubImage(image.Rect(4, 2, 19, 13)).(*image.YCbCr)
		c := Copy(nil, src)
		for y := 0; y < src.Rect.Dy(); y++ {
			for x := 0; x < src.Rect.Dx(); x++ {
				ci, si := c.COffset(x, y), src.COffset(x+4, y+2)
				if c.Y[c.YOffset(x, y)] != src.Y[src.YOffset(x+4, y+2)] || c.Cb[ci] != src.Cb[si] || c.Cr[ci] != src.Cr[si] {
					t.Fatalf("%v: copy differs at %d,%d", ratio, x, y)
				}
			}
		}
	}
}

func TestPSNR(t *testing.T) {
	a := NewI420(16, 16)
	b := NewI420(16, 16)
	if !math.IsInf(PSNR(a, b), 1) {
		t.Fatal("identical images should give +Inf")
	}
	for i := range b.Y {
		b.Y[i] = 10 // MSE 100 -> 10*log10(65025/100) = 28.13 dB
	}
	if p := PSNR(a, b); math.Abs(p-28.13) > 0.01 {
		t.Fatalf("PSNR %.3f, want 28.13", p)
	}
	if PSNR(a, NewI420(8, 16)) != 0 {
		t.Fatal("size mismatch should give 0")
	}
}

func TestReuseAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	rgba := randRGBA(rng, image.Rect(0, 0, 64, 48), true)
	nrgba := randNRGBA(rng, image.Rect(0, 0, 64, 48), true)
	y422 := randYCbCr(rng, image.Rect(0, 0, 64, 48), image.YCbCrSubsampleRatio422)
	dst := ToI420(nil, rgba)
	rgbaOut := ToRGBA(nil, dst)
	flip := FlipVertical(nil, dst)
	if n := testing.AllocsPerRun(20, func() {
		if ToI420(dst, rgba) != dst || ToI420(dst, nrgba) != dst || ToI420(dst, y422) != dst {
			panic("dst not reused")
		}
		ToRGBA(rgbaOut, dst)
		FlipVertical(flip, dst)
		Copy(flip, dst)
	}); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
	// A smaller image reuses a larger destination.
	small := ToI420(dst, randRGBA(rng, image.Rect(0, 0, 10, 6), true))
	if small != dst || small.Rect.Dx() != 10 || small.YStride != 10 {
		t.Fatalf("small reuse: %v stride %d", small.Rect, small.YStride)
	}
}

func noisyRGBA(w, h int) *image.RGBA {
	rng := rand.New(rand.NewPCG(1, 1))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	return img
}

func BenchmarkToI420RGBA640(b *testing.B) {
	src := noisyRGBA(640, 480)
	dst := ToI420(nil, src)
	b.ReportAllocs()
	b.SetBytes(int64(len(src.Pix)))
	for b.Loop() {
		ToI420(dst, src)
	}
}

func BenchmarkToRGBA640(b *testing.B) {
	src := ToI420(nil, noisyRGBA(640, 480))
	dst := ToRGBA(nil, src)
	b.ReportAllocs()
	for b.Loop() {
		ToRGBA(dst, src)
	}
}

func BenchmarkFlip640(b *testing.B) {
	src := ToI420(nil, noisyRGBA(640, 480))
	dst := FlipVertical(nil, src)
	b.ReportAllocs()
	for b.Loop() {
		FlipVertical(dst, src)
	}
}
