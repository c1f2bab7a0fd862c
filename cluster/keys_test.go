package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/cluster"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClosedNodeRefusesAsDraining: an offer to a stream whose node has left the cluster gets
// FastRTC's refusal (reason "draining"), not a 500; ErrClosed is a draining error.
func TestClosedNodeRefusesAsDraining(t *testing.T) {
	if !errors.Is(cluster.ErrClosed, fastrtc.ErrDraining) {
		t.Fatal("ErrClosed does not wrap fastrtc.ErrDraining")
	}
	url := startNATS(t)
	nodes := newCluster(t, url, 1, cluster.Options{Name: "closed", Limit: 4}, fastrtc.AudioFunc(echo))
	if err := nodes[0].node.Close(); err != nil {
		t.Fatal(err)
	}
	if got := offerResult(nodes[0].srv.URL, offerSDP(t), "late"); got != "draining" {
		t.Errorf("offer to a closed node: %q, want the draining refusal", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := nodes[0].node.Nodes(ctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Nodes with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestStaleRevisionFreed: a session's keys whose revision moved on without this node
// knowing (a refresh the server applied but whose reply was lost) are still deleted when the
// session ends, not left to expire a TTL later (holding a slot of the limit meanwhile).
func TestStaleRevisionFreed(t *testing.T) {
	url := startNATS(t)
	nodes := newCluster(t, url, 1, cluster.Options{Name: "stale", Limit: 2, TTL: 30 * time.Second}, fastrtc.AudioFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, ctx, nodes[0].srv.URL, "stale1")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "fastrtc_stale")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys of one session: %v %v, want its id and its slot", keys, err)
	}
	for _, k := range keys { // rewrite each with its own value: the revision moves on
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Update(ctx, k, e.Value(), e.Revision()); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close()
	waitFor(t, 10*time.Second, func() bool { return nodes[0].stream.Stats().Sessions == 0 }, "the session to end")
	waitFor(t, 5*time.Second, func() bool {
		_, err := kv.Keys(ctx)
		return errors.Is(err, jetstream.ErrNoKeysFound)
	}, "its keys to be deleted")
}

// TestNATSRestart: the NATS server restarts (it keeps the bucket in memory: the bucket and
// every key are lost). The nodes reconnect, make the bucket again, write their sessions'
// keys again, and the cluster limit holds over the sessions that lived through it: a burst
// after the restart gets exactly the slots the live session leaves.
func TestNATSRestart(t *testing.T) {
	if os.Getenv("CLUSTER_TEST_NATS") != "" {
		t.Skip("restarts its own embedded server")
	}
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := ns.ClientURL()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() }) // after the nodes' cleanups (the one that runs now)
	const limit = 3
	nodes := newCluster(t, url, 2, cluster.Options{Name: "restart", Limit: limit, TTL: 1500 * time.Millisecond}, fastrtc.AudioFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	live := dial(t, ctx, nodes[0].srv.URL, "lives-through")
	tctx, stopTalk := context.WithCancel(ctx)
	defer stopTalk()
	go talk(tctx, live)

	opts.Port = ns.Addr().(*net.TCPAddr).Port // the same address: the nodes reconnect to it
	ns.Shutdown()
	ns.WaitForShutdown()
	opts.StoreDir = t.TempDir()
	if ns, err = server.NewServer(opts); err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready after the restart")
	}
	waitFor(t, 15*time.Second, func() bool { return nodes[0].nc.IsConnected() && nodes[1].nc.IsConnected() }, "the nodes to reconnect")

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		kv, err := js.KeyValue(ctx, "fastrtc_restart")
		if err != nil {
			return false
		}
		keys, err := kv.Keys(ctx)
		return err == nil && len(keys) == 2 // the live session's id and slot, written again
	}, "the live session's keys to be written again")

	sdp := offerSDP(t)
	results := make(chan string, limit)
	for i := range limit {
		go func() { results <- offerResult(nodes[1].srv.URL, sdp, fmt.Sprintf("after%d", i)) }()
	}
	answers := 0
	for range limit {
		switch r := <-results; r {
		case "answer":
			answers++
		case "cluster":
		default:
			t.Errorf("offer after the restart: %s", r)
		}
	}
	if answers != limit-1 {
		t.Errorf("%d answers after the restart, want %d (limit %d, one session lives)", answers, limit-1, limit)
	}
	hearsTone(t, ctx, live) // its media never depended on NATS
}

// TestRemoteOutputsUnread: Stream.Outputs of a session held by another node, with a context
// that never ends and nobody reading: once the session ends the channel closes within the
// grace local sessions get (5 s), and nothing is left running (goleak at TestMain checks).
func TestRemoteOutputsUnread(t *testing.T) {
	url := startNATS(t)
	th := &tickHandler{seen: map[float64]int64{}}
	nodes := newCluster(t, url, 2, cluster.Options{Name: "unread"}, th.handler(), fastrtc.WithInputs(fastrtc.Number("n", 0)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dial(t, ctx, nodes[0].srv.URL, "u1")
	tctx, stopTalk := context.WithCancel(ctx)
	defer stopTalk()
	go talk(tctx, c) // every frame the handler gets emits an output
	ch, err := nodes[1].stream.Outputs(context.Background(), "u1")
	if err != nil {
		t.Fatalf("Outputs on B: %v", err)
	}
	waitFor(t, 10*time.Second, func() bool { return th.calls.Load() > 50 }, "outputs to be emitted")
	stopTalk()
	_ = c.Close()
	waitFor(t, 10*time.Second, func() bool { return nodes[0].stream.Stats().Sessions == 0 }, "the session to end")
	time.Sleep(6 * time.Second) // past the grace, still not reading
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("the channel still delivers outputs after the session ended and the grace passed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the channel is not closed after the session ended and the grace passed")
	}
}

// TestHandOverRetries: two nodes whose streams drain (Stream.Drain, not Node.Drain: they stay
// in the queue group of handed-over offers until their next heartbeat) and one that takes
// sessions. Every offer to a draining node is answered, by the free node: a handed-over
// offer that a stale member refuses is tried on another, and the refusing node leaves the
// group at once.
func TestHandOverRetries(t *testing.T) {
	url := startNATS(t)
	nodes := newCluster(t, url, 3, cluster.Options{Name: "retry", TTL: 60 * time.Second}, fastrtc.AudioFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes[:2] {
		if err := n.stream.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sdp := offerSDP(t)
	for i := range 6 {
		if got := offerResult(nodes[i%2].srv.URL, sdp, fmt.Sprintf("r%d", i)); got != "answer" {
			t.Fatalf("offer %d to draining node %s: %q, want an answer from C", i, nodes[i%2].id, got)
		}
	}
	if got := nodes[2].stream.Stats().Sessions; got != 6 {
		t.Errorf("C holds %d sessions, want all 6", got)
	}
}
