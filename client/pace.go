package client

import (
	"context"
	"fmt"
	"time"
)

// pacer releases one 20 ms audio frame per 20 ms of real time, counted from the first
// frame. After a stall of more than 200 ms its clock restarts, so that a late sender does
// not send a burst. Not safe for concurrent use (callers hold their send lock).
type pacer struct {
	start time.Time
	sent  int // frames sent since start
}

// wait blocks until the next frame is due or ctx is done. It returns how late the frame
// was when the clock restarted after a stall (0 otherwise).
func (p *pacer) wait(ctx context.Context) (restartedLate time.Duration, err error) {
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.sent = now, 0
	}
	due := p.start.Add(time.Duration(p.sent) * 20 * time.Millisecond)
	if late := now.Sub(due); late > 200*time.Millisecond {
		p.start, p.sent = now, 0
		return late, nil
	}
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, fmt.Errorf("client: send audio: %w", ctx.Err())
		}
	}
	return 0, nil
}

// sentOne counts a frame sent.
func (p *pacer) sentOne() { p.sent++ }
