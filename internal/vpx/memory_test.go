package vpx

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssKB(b *testing.B) int {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc")
	}
	for _, l := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Skip("no VmRSS")
	return 0
}

// BenchmarkCodecMemory640 reports the resident memory one realtime VP8 encoder and one
// decoder hold once they have run 640x480 frames (what a send-receive video session costs in
// libvpx), measured over 6 pairs as the growth of the process's RSS:
//
//	go test -run '^$' -bench CodecMemory640 -benchtime 1x ./internal/vpx
func BenchmarkCodecMemory640(b *testing.B) {
	const pairs = 6
	for range b.N {
		start := rssKB(b)
		encs := make([]*Encoder, pairs)
		decs := make([]*Decoder, pairs)
		for i := range encs {
			var err error
			if encs[i], err = NewEncoder(EncoderConfig{BitrateKbps: 1500, FPS: 30, CPUUsed: -10, Threads: 1}); err != nil {
				b.Fatal(err)
			}
			if decs[i], err = NewDecoder(); err != nil {
				b.Fatal(err)
			}
		}
		var buf []byte
		for f := 0; f < 60; f++ {
			img := pattern(640, 480, f)
			for i := range encs {
				out, _, err := encs[i].Encode(buf, img, int64(f), f == 0)
				if err != nil {
					b.Fatal(err)
				}
				buf = out
				if _, err := decs[i].Decode(out); err != nil {
					b.Fatal(err)
				}
			}
		}
		end := rssKB(b)
		for i := range encs {
			_ = encs[i].Close()
			_ = decs[i].Close()
		}
		b.ReportMetric(float64(end-start)/1024/pairs, "MB/pair")
	}
}
