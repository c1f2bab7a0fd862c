// Command detect is the seed's second example: the flip handler also counts "detections"
// (16x16 blocks brighter than conf_threshold) and emits the count as an additional output,
// which its page reads from /outputs.
//
//	go run ./examples/detect          # then open http://127.0.0.1:8000/
package main

import (
	_ "embed"
	"flag"
	"image"
	"log/slog"
	"net/http"
	"os"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
)

//go:embed index.html
var page []byte

// countBright counts 16x16 luma blocks whose mean exceeds threshold (0..1).
func countBright(img *image.YCbCr, threshold float64) int {
	n := 0
	b := img.Rect
	limit := int(threshold * 255 * 256)
	for y := b.Min.Y; y+16 <= b.Max.Y; y += 16 {
		for x := b.Min.X; x+16 <= b.Max.X; x += 16 {
			sum := 0
			for yy := y; yy < y+16; yy++ {
				row := img.Y[img.YOffset(x, yy):][:16]
				for _, v := range row {
					sum += int(v)
				}
			}
			if sum > limit {
				n++
			}
		}
	}
	return n
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "detect")
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	clusterOpt, err := node.Option(log)
	if err != nil {
		log.Error("cluster", "err", err)
		os.Exit(1)
	}

	detection := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		if f.Index%15 == 0 { // twice a second at 30 fps: outputs need not follow every frame
			n := countBright(f.Image, s.Inputs().Float("conf_threshold"))
			if err := s.Emit(n); err != nil {
				return nil, err
			}
		}
		return f.FlipVertical(), nil
	}
	stream, err := fastrtc.New(fastrtc.VideoFunc(detection), fastrtc.Video, fastrtc.SendReceive, network(), clusterOpt,
		fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3)),
		fastrtc.WithOutputs(fastrtc.Output{Name: "count", Label: "Detections"}),
		fastrtc.WithLogger(log))
	if err != nil {
		log.Error("stream", "err", err)
		os.Exit(1)
	}
	defer stream.Close()

	mux := http.NewServeMux()
	stream.Mount(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	log.Info("open http://" + *addr + "/")
	if err := node.Serve(*addr, "detect", stream, mux, log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
