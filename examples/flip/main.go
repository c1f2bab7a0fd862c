// Command flip serves a video stream that returns the webcam upside down, with a
// conf_threshold slider, and its own small page (the "custom routes" pattern).
//
//	go run ./examples/flip            # then open http://127.0.0.1:8000/
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

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "flip")
	token := netflags.RegisterToken(flag.CommandLine)
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	clusterOpt, err := node.Option(log)
	if err != nil {
		log.Error("cluster", "err", err)
		os.Exit(1)
	}

	flip := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		return f.FlipVertical(), nil
	}
	stream, err := fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive, network(), clusterOpt,
		fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3)),
		fastrtc.WithLogger(log), token.Option())
	if err != nil {
		log.Error("stream", "err", err)
		os.Exit(1)
	}
	defer stream.Close()

	mux := http.NewServeMux()
	stream.Mount(mux)
	mux.Handle("GET /{$}", token.Page(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})))
	log.Info("open http://" + *addr + "/")
	if err := node.Serve(*addr, "flip", stream, mux, log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
