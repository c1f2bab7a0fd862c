package media

import (
	"image"
	"testing"

	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

func TestVideoFrameHelpers(t *testing.T) {
	src := image.NewYCbCr(image.Rect(0, 0, 64, 48), image.YCbCrSubsampleRatio420)
	for i := range src.Y {
		src.Y[i] = byte(16 + (i*7)%220)
	}
	for i := range src.Cr {
		src.Cb[i], src.Cr[i] = byte(60+i%120), byte(200-i%120)
	}
	f := &VideoFrame{Image: src}
	if w, h := f.Size(); w != 64 || h != 48 {
		t.Fatalf("Size %dx%d", w, h)
	}
	// Writable is an equal copy; drawing on it leaves the decoder's image alone.
	wr := f.Writable()
	if p := yuv.PSNR(wr, src); p < 99 {
		t.Fatalf("Writable differs from the frame: %.1f dB", p)
	}
	before := src.Y[0]
	wr.Y[0] = before + 100
	if src.Y[0] != before {
		t.Fatal("writing the Writable copy changed the frame")
	}
	// FlipVertical swaps rows; RGBA matches the YCbCr colour model within rounding.
	fl := f.FlipVertical()
	if fl.Y[0] != src.Y[47*src.YStride] {
		t.Error("FlipVertical: top row is not the source's bottom row")
	}
	// RGBA uses BT.601 limited range (as libvpx and browsers do), not image/color's JPEG
	// full range.
	rgba := f.RGBA()
	y, cr := float64(src.Y[src.YOffset(10, 10)]), float64(src.Cr[src.COffset(10, 10)])
	wantR := min(255, max(0, 1.164*(y-16)+1.596*(cr-128)))
	if got := float64(rgba.RGBAAt(10, 10).R); got < wantR-3 || got > wantR+3 {
		t.Errorf("RGBA red %v, want about %.0f", got, wantR)
	}
	// The scratch buffers are reused: no new allocation on the next frame.
	if a := testing.AllocsPerRun(10, func() { f.FlipVertical(); f.RGBA(); f.Writable() }); a != 0 {
		t.Errorf("%v allocations per frame", a)
	}
}
