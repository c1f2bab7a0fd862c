package yuv

import (
	"image"
	"math"
	"testing"
)

// gradient makes a w×h I420 image whose luma rises left to right and chroma top to bottom.
func gradient(w, h int) *image.YCbCr {
	img := NewI420(w, h)
	for y := range h {
		for x := range w {
			img.Y[y*img.YStride+x] = byte(16 + x*200/w)
		}
	}
	for y := range (h + 1) / 2 {
		for x := range (w + 1) / 2 {
			img.Cb[y*img.CStride+x] = byte(40 + y*150/((h+1)/2))
			img.Cr[y*img.CStride+x] = 128
		}
	}
	return img
}

func TestScaleKeepsContent(t *testing.T) {
	src := gradient(640, 480)
	for _, sz := range [][2]int{{480, 360}, {320, 240}, {240, 180}, {160, 120}, {640, 480}, {800, 600}} {
		dst := Scale(nil, src, sz[0], sz[1])
		if dst.Rect.Dx() != sz[0] || dst.Rect.Dy() != sz[1] {
			t.Fatalf("size %v, want %v", dst.Rect, sz)
		}
		// The scaled-back-up picture is close to the source (a smooth gradient).
		back := Scale(nil, dst, 640, 480)
		if p := PSNR(src, back); p < 35 {
			t.Errorf("%dx%d: PSNR after scaling back %.1f dB, want >= 35", sz[0], sz[1], p)
		}
		// Column x of the output has the luma of the source at the same relative place.
		for _, fx := range []float64{0.1, 0.5, 0.9} {
			x := int(fx * float64(sz[0]))
			want := 16 + (float64(x)+0.5)*float64(640)/float64(sz[0])*200/640
			got := float64(dst.Y[sz[1]/2*dst.YStride+x])
			if math.Abs(got-want) > 2.5 {
				t.Errorf("%dx%d: luma at x=%d is %v, want %.1f", sz[0], sz[1], x, got, want)
			}
		}
	}
}

func TestScaleUniformStaysUniform(t *testing.T) {
	src := NewI420(641, 479) // odd sizes
	for i := range src.Y {
		src.Y[i] = 200
	}
	for i := range src.Cb {
		src.Cb[i], src.Cr[i] = 90, 160
	}
	dst := Scale(nil, src, 357, 201)
	for i, v := range dst.Y {
		if v != 200 {
			t.Fatalf("Y[%d] = %d, want 200", i, v)
		}
	}
	for i := range dst.Cb {
		if dst.Cb[i] != 90 || dst.Cr[i] != 160 {
			t.Fatalf("chroma[%d] = %d,%d, want 90,160", i, dst.Cb[i], dst.Cr[i])
		}
	}
}

func BenchmarkScale480to360(b *testing.B) {
	src := gradient(640, 480)
	var dst *image.YCbCr
	b.ReportAllocs()
	for range b.N {
		dst = Scale(dst, src, 480, 360)
	}
}
