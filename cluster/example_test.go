package cluster_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/cluster"
	"github.com/fastrtc-go/fastrtc/metrics"
	"github.com/nats-io/nats.go"
)

// One node of a cluster of echo servers behind any load balancer: at most 200 sessions
// across the cluster, requests for other nodes' sessions forwarded over NATS, Prometheus
// metrics at /metrics, and a drain on shutdown.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := cluster.Join(ctx, nc, cluster.Options{Name: "echo", Limit: 200})
	if err != nil {
		log.Fatal(err)
	}
	echo := fastrtc.AudioFunc(func(_ *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil })
	stream, err := fastrtc.New(echo, fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithCluster(node))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	stream.Mount(mux)
	mux.Handle("/metrics", metrics.Handler("echo", stream))
	srv := &http.Server{Addr: ":8000", Handler: mux}
	go func() { _ = srv.ListenAndServe() }()

	// ... on SIGTERM: no new sessions, 30 s for the live ones, then leave the cluster.
	drain, cancelDrain := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelDrain()
	_ = node.Drain(drain)
	_ = stream.Close()
	_ = srv.Shutdown(context.Background())
}
