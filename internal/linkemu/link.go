// Package linkemu emulates a bad network link in user space, for kernels without netem.
//
// A router network namespace sends every forwarded IPv4 packet into a TUN device (a policy
// route); the Emulator reads each packet, classifies its direction by destination address,
// holds it as the direction's Params say (random loss, a rate with a bounded tail-drop
// queue, a one-way delay with uniform jitter) and writes it back to the TUN, from where the
// kernel routes it on. scripts/netem.sh builds the namespaces; cmd/linkemu runs it.
//
// The link model (Link) is a plain scheduler over packets with explicit timestamps: no
// goroutines, no clock, no I/O, so that its behaviour is tested exactly. Emulator adds the
// real clock, the schedule of a Profile and the device I/O.
package linkemu

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"
)

// Params impair one direction of a link. The zero value is a perfect link.
//
// A packet that survives the random loss enters the rate queue (when Rate is set): it is
// tail-dropped if Queue packets already wait there (the one being serialized included),
// otherwise it leaves the queue once serialized at Rate. Then it is delayed by Delay plus a
// uniform random amount in [-Jitter, +Jitter] (never below zero), so that with jitter
// packets overtake one another, as on a real path whose delay varies.
type Params struct {
	Delay  time.Duration `json:"delay"`
	Jitter time.Duration `json:"jitter"`
	Loss   float64       `json:"loss"`  // probability in [0, 1]
	Rate   int64         `json:"rate"`  // bit/s; 0: unlimited
	Queue  int           `json:"queue"` // packets; 0 with a Rate: DefaultQueue
}

// DefaultQueue is the queue length of a rate-limited direction whose Params leave it zero.
const DefaultQueue = 1000

func (p Params) String() string {
	s := fmt.Sprintf("delay %v", p.Delay)
	if p.Jitter > 0 {
		s += fmt.Sprintf(" +-%v", p.Jitter)
	}
	if p.Loss > 0 {
		s += fmt.Sprintf(", loss %.3g%%", 100*p.Loss)
	}
	if p.Rate > 0 {
		s += fmt.Sprintf(", rate %d kbit/s, queue %d", p.Rate/1000, p.queue())
	}
	return s
}

// Validate reports impossible values.
func (p Params) Validate() error {
	switch {
	case p.Delay < 0 || p.Jitter < 0:
		return fmt.Errorf("linkemu: negative delay or jitter (%v, %v)", p.Delay, p.Jitter)
	case p.Loss < 0 || p.Loss > 1:
		return fmt.Errorf("linkemu: loss %v outside [0, 1]", p.Loss)
	case p.Rate < 0 || p.Queue < 0:
		return fmt.Errorf("linkemu: negative rate or queue (%d, %d)", p.Rate, p.Queue)
	}
	return nil
}

func (p Params) queue() int {
	if p.Queue > 0 {
		return p.Queue
	}
	return DefaultQueue
}

// Counters count the packets of one direction.
type Counters struct {
	In           uint64 `json:"in"`            // packets offered to the link
	Out          uint64 `json:"out"`           // packets delivered
	DroppedLoss  uint64 `json:"dropped_loss"`  // by the random loss
	DroppedQueue uint64 `json:"dropped_queue"` // tail-dropped: the rate queue was full
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	MaxQueue     int    `json:"max_queue"` // the most packets seen waiting for the rate
}

// Sub returns c - o (the counts between two snapshots; MaxQueue is c's).
func (c Counters) Sub(o Counters) Counters {
	return Counters{In: c.In - o.In, Out: c.Out - o.Out, DroppedLoss: c.DroppedLoss - o.DroppedLoss,
		DroppedQueue: c.DroppedQueue - o.DroppedQueue, BytesIn: c.BytesIn - o.BytesIn,
		BytesOut: c.BytesOut - o.BytesOut, MaxQueue: c.MaxQueue}
}

// Verdict is what Push did with a packet.
type Verdict int

const (
	Scheduled    Verdict = iota // will be delivered (Next / Pop)
	DroppedLoss                 // lost at random
	DroppedQueue                // the rate queue was full
	NotIPv4                     // Emulator.Offer: not an IPv4 packet, dropped
)

func (v Verdict) String() string {
	return [...]string{"scheduled", "dropped (loss)", "dropped (queue)", "not IPv4"}[v]
}

// Link is one direction of an emulated link: a scheduler over packets with explicit
// timestamps. Times passed to Push must not go backwards. Not safe for concurrent use.
type Link struct {
	p   Params
	rng *rand.Rand

	busyUntil time.Time   // when the serializer finishes the last accepted packet
	serEnd    []time.Time // serialization end of each packet in the rate queue (FIFO)
	out       pending     // packets waiting for their delivery time
	seq       uint64
	c         Counters
}

// NewLink returns a link with params p whose loss and jitter draw from a PCG seeded with
// seed: the same packets at the same times get the same fate.
func NewLink(p Params, seed uint64) *Link {
	return &Link{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Params returns the link's current parameters.
func (l *Link) Params() Params { return l.p }

// SetParams changes the parameters for the packets pushed from now on. Packets already in
// the rate queue keep their place (a shorter Queue only refuses new ones until it drains).
func (l *Link) SetParams(p Params) { l.p = p }

// Counters returns the link's counts so far.
func (l *Link) Counters() Counters { return l.c }

// Queued returns how many packets wait for the rate at now (the one being serialized
// included).
func (l *Link) Queued(now time.Time) int {
	l.drainQueue(now)
	return len(l.serEnd)
}

// Pending returns how many packets are scheduled and not yet popped.
func (l *Link) Pending() int { return len(l.out) }

func (l *Link) drainQueue(now time.Time) {
	i := 0
	for i < len(l.serEnd) && !l.serEnd[i].After(now) {
		i++
	}
	if i > 0 {
		l.serEnd = append(l.serEnd[:0], l.serEnd[i:]...)
	}
}

// TxTime is how long size bytes take at rate bit/s.
func TxTime(size int, rate int64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(int64(size) * 8 * int64(time.Second) / rate)
}

// Push offers pkt to the link at now. The link keeps pkt (the caller must not reuse it) until
// Pop returns it.
func (l *Link) Push(now time.Time, pkt []byte) Verdict {
	l.c.In++
	l.c.BytesIn += uint64(len(pkt))
	if l.p.Loss > 0 && l.rng.Float64() < l.p.Loss {
		l.c.DroppedLoss++
		return DroppedLoss
	}
	at := now
	if l.p.Rate > 0 {
		l.drainQueue(now)
		if len(l.serEnd) >= l.p.queue() {
			l.c.DroppedQueue++
			return DroppedQueue
		}
		start := now
		if l.busyUntil.After(start) {
			start = l.busyUntil
		}
		l.busyUntil = start.Add(TxTime(len(pkt), l.p.Rate))
		l.serEnd = append(l.serEnd, l.busyUntil)
		l.c.MaxQueue = max(l.c.MaxQueue, len(l.serEnd))
		at = l.busyUntil
	}
	d := l.p.Delay
	if l.p.Jitter > 0 {
		d += time.Duration(l.rng.Int64N(2*int64(l.p.Jitter)+1)) - l.p.Jitter
		d = max(d, 0)
	}
	l.seq++
	heap.Push(&l.out, item{at: at.Add(d), seq: l.seq, pkt: pkt})
	return Scheduled
}

// Next returns the delivery time of the earliest scheduled packet.
func (l *Link) Next() (time.Time, bool) {
	if len(l.out) == 0 {
		return time.Time{}, false
	}
	return l.out[0].at, true
}

// Pop returns the earliest scheduled packet if it is due at now (packets due at the same
// time come out in the order they were pushed).
func (l *Link) Pop(now time.Time) ([]byte, bool) {
	if len(l.out) == 0 || l.out[0].at.After(now) {
		return nil, false
	}
	it := heap.Pop(&l.out).(item)
	l.c.Out++
	l.c.BytesOut += uint64(len(it.pkt))
	return it.pkt, true
}

type item struct {
	at  time.Time
	seq uint64
	pkt []byte
}

// pending is a min-heap of packets by delivery time, then push order.
type pending []item

func (h pending) Len() int { return len(h) }
func (h pending) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h pending) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pending) Push(x any)   { *h = append(*h, x.(item)) }
func (h *pending) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return it
}
