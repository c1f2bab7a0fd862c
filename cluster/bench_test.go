package cluster_test

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/cluster"
)

// reportPercentiles reports p50 and p95 of ds in ms.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	p := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.95), "p95-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkInputHook: POST /input_hook for a session of node A, sent to A (local) or to B
// (forwarded over NATS to A and answered from there), on an embedded nats-server.
//
//	go test -run '^$' -bench InputHook -benchtime 2000x ./cluster
func BenchmarkInputHook(b *testing.B) {
	for _, where := range []string{"local", "forwarded"} {
		b.Run(where, func(b *testing.B) {
			nodes, id, cleanup := benchCluster(b)
			defer cleanup()
			target := nodes[0].srv.URL
			if where == "forwarded" {
				target = nodes[1].srv.URL
			}
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				res, err := http.Post(target+"/input_hook", "application/json",
					strings.NewReader(`{"webrtc_id":"`+id+`","n":`+strconv.Itoa(i)+`}`))
				if err != nil {
					b.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
				ds = append(ds, time.Since(t0))
			}
			reportPercentiles(b, ds)
		})
	}
}

// BenchmarkOutputEvent: a value the session on node A emits, until its Server-Sent Event
// arrives at a reader of GET /outputs on A (local) or on B (forwarded).
//
//	go test -run '^$' -bench OutputEvent -benchtime 2000x ./cluster
func BenchmarkOutputEvent(b *testing.B) {
	for _, where := range []string{"local", "forwarded"} {
		b.Run(where, func(b *testing.B) {
			nodes, id, cleanup := benchCluster(b)
			defer cleanup()
			target := nodes[0].srv.URL
			if where == "forwarded" {
				target = nodes[1].srv.URL
			}
			sess, err := nodes[0].stream.Session(id)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, resp := sse(b, ctx, target+"/outputs?webrtc_id="+id)
			defer resp.Body.Close()
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := sess.Emit(i); err != nil {
					b.Fatal(err)
				}
				if _, ok := <-ch; !ok {
					b.Fatal("outputs ended")
				}
				ds = append(ds, time.Since(t0))
			}
			reportPercentiles(b, ds)
		})
	}
}

// benchCluster: two nodes on an embedded nats-server, one session (silent, connected)
// on node A.
func benchCluster(b *testing.B) ([]*tnode, string, func()) {
	b.Helper()
	url := startNATS(b)
	nodes := newCluster(b, url, 2, cluster.Options{Name: "bench"}, fastrtc.AudioFunc(echo),
		fastrtc.WithInputs(fastrtc.Number("n", 0)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c := dial(b, ctx, nodes[0].srv.URL, "bench")
	return nodes, "bench", func() { _ = c.Close(); cancel() }
}
