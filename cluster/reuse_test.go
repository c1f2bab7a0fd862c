package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/cluster"
)

// TestSlotsReused: slots held across heartbeats are freed when their sessions end, on
// every node's view: a new round of sessions fills the limit again.
func TestSlotsReused(t *testing.T) {
	url := startNATS(t)
	const ttl = 900 * time.Millisecond
	nodes := newCluster(t, url, 2, cluster.Options{Name: "reuse", Limit: 2, TTL: ttl}, fastrtc.AudioFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round := 0; round < 2; round++ {
		a := dial(t, ctx, nodes[0].srv.URL, "a"+string(rune('0'+round)))
		b := dial(t, ctx, nodes[1].srv.URL, "b"+string(rune('0'+round)))
		time.Sleep(ttl) // heartbeats refresh the keys
		if got := offerResult(nodes[0].srv.URL, offerSDP(t), "over"+string(rune('0'+round))); got != "cluster" {
			t.Fatalf("round %d: a third session: %q, want refused", round, got)
		}
		_ = a.Close()
		_ = b.Close()
		waitFor(t, 10*time.Second, func() bool {
			return nodes[0].stream.Stats().Sessions+nodes[1].stream.Stats().Sessions == 0
		}, "the sessions to end")
	}
}
