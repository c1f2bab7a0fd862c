// Command echo serves an audio stream that sends your microphone straight back, with the
// built-in page at /.
//
//	go run ./examples/echo            # then open http://127.0.0.1:8000/
package main

import (
	"flag"
	"log/slog"
	"os"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/examples/internal/netflags"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	network := netflags.Register(flag.CommandLine)
	node := netflags.RegisterNode(flag.CommandLine, "echo")
	token := netflags.RegisterToken(flag.CommandLine)
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	clusterOpt, err := node.Option(log)
	if err != nil {
		log.Error("cluster", "err", err)
		os.Exit(1)
	}

	echo := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		return in, nil
	})
	stream, err := fastrtc.New(echo, fastrtc.Audio, fastrtc.SendReceive, network(), clusterOpt,
		fastrtc.WithTitle("Echo", "Speak: you hear yourself back through the Go server."),
		fastrtc.WithLogger(log), token.Option())
	if err != nil {
		log.Error("stream", "err", err)
		os.Exit(1)
	}
	defer stream.Close()
	log.Info("open http://" + *addr + "/")
	if err := node.Serve(*addr, "echo", stream, token.Page(stream.Handler()), log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
