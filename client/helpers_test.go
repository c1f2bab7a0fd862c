package client_test

import (
	"context"
	"image"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/fastrtc-go/fastrtc/client"
)

// TestMain fails the package if any goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }))
}

// loopback restricts ICE to 127.0.0.1 over UDP4, without mDNS.
func loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// testCtx bounds a test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial connects with loopback options and closes the connection at the end of the test.
func dial(t *testing.T, ctx context.Context, base string, o client.Options) *client.Conn {
	t.Helper()
	o.SettingEngine = loopback
	c, err := client.Dial(ctx, base, &o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

const testW, testH = 320, 240

// pattern draws frame i of a test picture: a vertical luma gradient (a flip is obvious), a
// moving checkerboard and smooth colour planes.
func pattern(i int) *image.YCbCr {
	w, h := testW, testH
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 16 + y*200/h
			if ((x+i*4)/40)%2 == 0 && (y/40)%2 == 0 {
				v += 30
			}
			img.Y[y*img.YStride+x] = uint8(v)
		}
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			img.Cb[y*img.CStride+x] = uint8(64 + x*128/(w/2))
			img.Cr[y*img.CStride+x] = uint8(64 + y*128/(h/2))
		}
	}
	return img
}

// flipped returns img turned upside down.
func flipped(img *image.YCbCr) *image.YCbCr {
	out := image.NewYCbCr(img.Rect, img.SubsampleRatio)
	h := img.Rect.Dy()
	for y := 0; y < h; y++ {
		copy(out.Y[y*out.YStride:(y+1)*out.YStride], img.Y[(h-1-y)*img.YStride:])
	}
	for y := 0; y < h/2; y++ {
		copy(out.Cb[y*out.CStride:(y+1)*out.CStride], img.Cb[(h/2-1-y)*img.CStride:])
		copy(out.Cr[y*out.CStride:(y+1)*out.CStride], img.Cr[(h/2-1-y)*img.CStride:])
	}
	return out
}

// psnr is the luma PSNR between two images of the same size.
func psnr(a, b *image.YCbCr) float64 {
	if a.Rect.Dx() != b.Rect.Dx() || a.Rect.Dy() != b.Rect.Dy() {
		return 0
	}
	var se float64
	n := 0
	for y := 0; y < a.Rect.Dy(); y++ {
		for x := 0; x < a.Rect.Dx(); x++ {
			d := float64(a.Y[y*a.YStride+x]) - float64(b.Y[y*b.YStride+x])
			se += d * d
			n++
		}
	}
	if se == 0 {
		return 99
	}
	return 10 * math.Log10(255*255/(se/float64(n)))
}

// tone returns n samples of a sine of freq Hz, amplitude amp, at rate.
func tone(rate int, freq, amp float64, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return out
}

// toneRatio returns the power at freq relative to the total power of x (mono, rate): near
// 1 for a clean sine of that frequency, near 0 for silence or another tone. rms is x's RMS
// relative to full scale.
func toneRatio(x []int16, rate int, freq float64) (ratio, rms float64) {
	if len(x) == 0 {
		return 0, 0
	}
	var total, re, im float64
	w := 2 * math.Pi * freq / float64(rate)
	for i, s := range x {
		v := float64(s) / 32768
		total += v * v
		re += v * math.Cos(w*float64(i))
		im += v * math.Sin(w*float64(i))
	}
	if total == 0 {
		return 0, 0
	}
	p := 2 * (re*re + im*im) / float64(len(x)) // power of the sine component
	return p / total, math.Sqrt(total / float64(len(x)))
}

// mono takes the left channel of interleaved samples.
func mono(s []int16, ch int) []int16 {
	if ch == 1 {
		return s
	}
	out := make([]int16, 0, len(s)/ch)
	for i := 0; i < len(s); i += ch {
		out = append(out, s[i])
	}
	return out
}
