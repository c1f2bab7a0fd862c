package vpx

import (
	"fmt"
	"image"
	"syscall"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// cpuTime returns the CPU time (user + system) the process has used. Benchmarks report it
// per operation as "cpu-ms/op": unlike wall time it hardly changes when other processes
// compete for the machine's cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// noisyFrames returns the compressed frames of the noisy640 fixture.
func noisyFrames(b *testing.B) [][]byte {
	frames, w, h := readIVF(b, noisyFixture(b))
	if w != 640 || h != 480 || len(frames) < 100 {
		b.Fatalf("fixture: %d frames %dx%d", len(frames), w, h)
	}
	return frames
}

// noisyPictures returns the decoded fixture frames, copied to Go memory.
func noisyPictures(b *testing.B) []*image.YCbCr {
	frames := noisyFrames(b)
	dec, err := NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	pics := make([]*image.YCbCr, len(frames))
	for i, f := range frames {
		img, err := dec.Decode(f)
		if err != nil || img == nil {
			b.Fatalf("frame %d: %v", i, err)
		}
		pics[i] = yuv.Copy(nil, img)
	}
	return pics
}

func BenchmarkDecode640(b *testing.B) {
	frames := noisyFrames(b)
	dec, err := NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	b.ReportAllocs()
	i := 0
	start := cpuTime()
	for b.Loop() {
		if _, err := dec.Decode(frames[i%len(frames)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportCPU(b, start)
}

// BenchmarkEncode640 encodes the decoded noisy640 frames at 1500 kbit/s, 30 fps, for several
// cpu-used values (positive: libvpx adapts its speed to a CPU budget of (16-n)/16 of the
// frame interval; negative: fixed speed). Besides the time per frame it reports the mean
// luma PSNR of decode(encode(frame)) against frame, and the bit rate achieved.
func BenchmarkEncode640(b *testing.B) {
	pics := noisyPictures(b)
	for _, cpu := range []int{8, 10, 12, 14, 15, 16, -4, -6, -8, -10, -12, -14, -16} {
		b.Run(fmt.Sprintf("cpu-used=%d", cpu), func(b *testing.B) {
			cfg := EncoderConfig{CPUUsed: cpu}
			enc, err := NewEncoder(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			buf := make([]byte, 0, 1<<20)
			pts := int64(0)
			i := 0
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				if _, _, err := enc.Encode(buf, pics[i%len(pics)], pts, false); err != nil {
					b.Fatal(err)
				}
				pts += 3000
				i++
			}
			b.StopTimer()
			reportCPU(b, start)
			psnr, kbps := encodeQuality(b, cfg, pics)
			b.ReportMetric(psnr, "dB")
			b.ReportMetric(kbps, "kbit/s")
		})
	}
}

// encodeQuality encodes pics with a fresh encoder and returns the mean luma PSNR of the
// decoded frames and the bit rate at 30 fps.
func encodeQuality(b *testing.B, cfg EncoderConfig, pics []*image.YCbCr) (psnr, kbps float64) {
	enc, err := NewEncoder(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	dec, err := NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	var buf []byte
	bytes := 0
	for i, pic := range pics {
		out, _, err := enc.Encode(buf[:0], pic, int64(i)*3000, false)
		if err != nil {
			b.Fatal(err)
		}
		buf = out
		bytes += len(out)
		img, err := dec.Decode(out)
		if err != nil || img == nil {
			b.Fatalf("decode: %v", err)
		}
		psnr += yuv.PSNR(img, pic)
	}
	return psnr / float64(len(pics)), float64(bytes) * 8 / 1000 / (float64(len(pics)) / 30)
}
