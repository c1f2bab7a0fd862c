package vsend

import (
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Pacer sends RTP packets at a set rate instead of in the bursts an encoder makes (a key
// frame is tens of packets at once, which a small router queue drops). Packets that fit in
// the current budget (20 ms at the pacing rate) leave at once from the caller's
// goroutine; the rest wait in a FIFO that the pacer's goroutine drains at the rate.
//
// Send and the setters may be called from any goroutine; Close stops the goroutine and
// waits for it.
type Pacer struct {
	write func(*rtp.Packet) error

	mu     sync.Mutex
	q      []*rtp.Packet // FIFO: q[head:]
	head   int
	bytes  int     // bytes queued
	rate   float64 // bytes per second
	budget float64 // bytes that may leave now (negative: a debt)
	last   time.Time
	closed bool
	free   []*rtp.Packet
	stats  PacerStats

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// PacerStats counts what a Pacer did.
type PacerStats struct {
	Sent, Queued, Dropped uint64 // packets sent, sent after waiting, dropped (queue full)
}

// maxQueueBytes bounds the pacer's queue; the sender stops encoding long before.
const maxQueueBytes = 4 << 20

// burst is how long a burst at the pacing rate may be: a frame of the target size leaves at
// once (no added latency), a key frame is spread.
const burst = 20 * time.Millisecond

// NewPacer returns a Pacer that writes with write at bps bits per second.
func NewPacer(bps int, write func(*rtp.Packet) error) *Pacer {
	p := &Pacer{write: write, rate: float64(bps) / 8, last: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.budget = p.maxBudget()
	p.wg.Add(1)
	go p.run()
	return p
}

func (p *Pacer) maxBudget() float64 { return max(p.rate*burst.Seconds(), 2400) }

// refill adds the budget earned since the last call. p.mu is held.
func (p *Pacer) refill(now time.Time) {
	p.budget = min(p.budget+now.Sub(p.last).Seconds()*p.rate, p.maxBudget())
	p.last = now
}

// SetRate sets the pacing rate in bits per second.
func (p *Pacer) SetRate(bps int) {
	p.mu.Lock()
	p.refill(time.Now())
	p.rate = max(float64(bps)/8, 1000)
	p.mu.Unlock()
}

// Delay is how long the queued packets take to leave at the current rate.
func (p *Pacer) Delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(float64(p.bytes) / p.rate * float64(time.Second))
}

// Stats returns the pacer's counters.
func (p *Pacer) Stats() PacerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Send sends pkt now if the budget allows and nothing waits, and otherwise queues a copy.
// pkt is not retained.
func (p *Pacer) Send(pkt *rtp.Packet) error {
	size := float64(pkt.MarshalSize())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	p.refill(time.Now())
	if p.head == len(p.q) && p.budget > 0 {
		p.budget -= size
		p.stats.Sent++
		p.mu.Unlock()
		return p.write(pkt)
	}
	if p.bytes+int(size) > maxQueueBytes {
		p.stats.Dropped++
		p.mu.Unlock()
		return nil
	}
	var c *rtp.Packet
	if n := len(p.free); n > 0 {
		c, p.free = p.free[n-1], p.free[:n-1]
	} else {
		c = &rtp.Packet{}
	}
	c.Header = pkt.Header // extensions: the packetizer sets none; the interceptors add theirs
	c.Header.Extensions = nil
	c.Header.CSRC = nil
	c.Payload = append(c.Payload[:0], pkt.Payload...)
	p.q = append(p.q, c)
	p.bytes += int(size)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

func (p *Pacer) run() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if p.head == len(p.q) {
			p.q, p.head = p.q[:0], 0
			p.mu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.done:
				return
			}
		}
		p.refill(time.Now())
		if p.budget <= 0 {
			wait := time.Duration(-p.budget/p.rate*float64(time.Second)) + time.Millisecond
			p.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
				continue
			case <-p.done:
				return
			}
		}
		pkt := p.q[p.head]
		p.q[p.head] = nil
		p.head++
		size := pkt.MarshalSize()
		p.bytes -= size
		p.budget -= float64(size)
		p.stats.Sent++
		p.stats.Queued++
		p.mu.Unlock()
		_ = p.write(pkt) // a closed track: the session is ending
		p.mu.Lock()
		p.free = append(p.free, pkt)
		p.mu.Unlock()
	}
}

// Close stops the pacer and waits for its goroutine; queued packets are dropped. It is
// idempotent.
func (p *Pacer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	p.wg.Wait()
}
