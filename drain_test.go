package fastrtc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDrain: a draining stream refuses new sessions with FastRTC's failure (reason
// "draining"), counts the refusal, ends the live session with end_stream at the deadline,
// and returns the deadline's error.
func TestDrain(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, echoFactory(), Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(ctx) }()
	for !s.Draining() {
		time.Sleep(5 * time.Millisecond)
	}
	late := newTestClient(t, srv.URL, clientOpts{sendAudio: true})
	r := late.offer()
	meta, _ := r["meta"].(map[string]any)
	if r["status"] != "failed" || meta["error"] != failConcurrency || meta["reason"] != "draining" {
		t.Errorf("offer while draining: %v, want concurrency_limit_reached with reason draining", r)
	}
	if m := c.waitMsg("end_stream", 5*time.Second); m["data"] != "server is draining" {
		t.Errorf("end_stream %v", m)
	}
	if err := <-drained; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain past its deadline: %v, want DeadlineExceeded", err)
	}
	if n := s.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions after Drain", n)
	}
	if got := s.Stats().Refusals["draining"]; got != 1 {
		t.Errorf("%d draining refusals counted, want 1", got)
	}
	// With nothing left, Drain returns at once.
	if err := s.Drain(context.Background()); err != nil {
		t.Errorf("Drain of an idle stream: %v", err)
	}
}
