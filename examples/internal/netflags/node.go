package netflags

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/cluster"
	"github.com/fastrtc-go/fastrtc/metrics"
)

// Node holds every example's cluster and serving flags: -nats (cluster mode over NATS, off
// when empty), -node, -cluster-limit, -cluster-name and -drain.
type Node struct {
	nats, id, name *string
	limit          *int
	drain          *time.Duration
	metricsAddr    *string
	node           *cluster.Node
}

// RegisterNode adds the flags to fs.
func RegisterNode(fs *flag.FlagSet, name string) *Node {
	return &Node{
		nats:        fs.String("nats", "", "NATS URL: run as one node of a cluster (off when empty)"),
		id:          fs.String("node", "", "this node's name in the cluster (default: host-pid-random)"),
		name:        fs.String("cluster-name", name, "the stream's name in the cluster (nodes with the same name serve the same stream)"),
		limit:       fs.Int("cluster-limit", 0, "at most this many sessions across the cluster (0: no limit)"),
		drain:       fs.Duration("drain", 30*time.Second, "on SIGTERM or SIGINT: stop taking sessions, wait this long for the live ones, then end them"),
		metricsAddr: fs.String("metrics-addr", "127.0.0.1:9464", "serve Prometheus metrics at /metrics on this address, apart from the public one (empty: none)"),
	}
}

// Option joins the cluster when -nats is set (call it once, after fs.Parse) and returns the
// stream option for it.
func (n *Node) Option(log *slog.Logger) (fastrtc.Option, error) {
	if *n.nats == "" {
		return fastrtc.WithOptions(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	node, err := cluster.Connect(ctx, *n.nats, cluster.Options{Name: *n.name, NodeID: *n.id, Limit: *n.limit, Logger: log})
	if err != nil {
		return nil, err
	}
	n.node = node
	log.Info("cluster node", "node", node.NodeID(), "nats", *n.nats, "limit", *n.limit)
	return fastrtc.WithCluster(node), nil
}

// Serve serves h on addr, with a health check at /healthz (503 while draining or without
// NATS) and Prometheus metrics at /metrics on -metrics-addr (loopback by default), until
// SIGTERM or SIGINT; then it drains the stream (and leaves the
// cluster), shuts the server down and returns.
func (n *Node) Serve(addr, name string, s *fastrtc.Stream, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	if *n.metricsAddr != "" {
		// Metrics on their own listener (loopback by default): session counts, codec timings
		// and the process's figures are for the operator, not for the public.
		mmux := http.NewServeMux()
		mmux.Handle("/metrics", metrics.Handler(name, s))
		msrv := &http.Server{Addr: *n.metricsAddr, Handler: mmux, ReadHeaderTimeout: 10 * time.Second}
		var lc net.ListenConfig
		ln, err := lc.Listen(context.Background(), "tcp", *n.metricsAddr)
		if err != nil {
			log.Warn("metrics: not served", "addr", *n.metricsAddr, "err", err)
		} else {
			log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
			go func() { _ = msrv.Serve(ln) }()
			defer msrv.Close()
		}
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if n.node != nil {
			if err := n.node.Healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", h)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop()
	log.Info("draining", "deadline", *n.drain)
	dctx, cancel := context.WithTimeout(context.Background(), *n.drain)
	defer cancel()
	var err error
	if n.node != nil {
		err = n.node.Drain(dctx)
	} else {
		err = s.Drain(dctx)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // the sessions left were ended with end_stream
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return errors.Join(err, srv.Shutdown(sctx))
}
