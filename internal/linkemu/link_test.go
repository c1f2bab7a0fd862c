package linkemu

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// pkt returns a size-byte IPv4 packet to dst carrying seq after the header.
func pkt(dst [4]byte, size int, seq uint32) []byte {
	b := make([]byte, max(size, 24))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint32(b[20:], seq)
	return b
}

func seqOf(b []byte) uint32 { return binary.BigEndian.Uint32(b[20:]) }

var client = [4]byte{10, 211, 2, 2}

type arrival struct {
	seq uint32
	at  time.Time
}

// drain pops every packet of l, stepping a clock through the delivery times.
func drain(l *Link) []arrival {
	var out []arrival
	for {
		at, ok := l.Next()
		if !ok {
			return out
		}
		p, ok := l.Pop(at)
		if !ok {
			panic("Next said due, Pop refused")
		}
		out = append(out, arrival{seqOf(p), at})
	}
}

func TestPerfectLinkPassesAtOnce(t *testing.T) {
	l := NewLink(Params{}, 1)
	for i := range 100 {
		if v := l.Push(t0, pkt(client, 1200, uint32(i))); v != Scheduled {
			t.Fatalf("packet %d: %v", i, v)
		}
	}
	for i := range 100 {
		p, ok := l.Pop(t0)
		if !ok || seqOf(p) != uint32(i) {
			t.Fatalf("pop %d: %v %v", i, ok, p != nil)
		}
	}
	if c := l.Counters(); c.In != 100 || c.Out != 100 || c.DroppedLoss+c.DroppedQueue != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestDelay(t *testing.T) {
	l := NewLink(Params{Delay: 20 * time.Millisecond}, 1)
	l.Push(t0, pkt(client, 100, 1))
	l.Push(t0.Add(5*time.Millisecond), pkt(client, 100, 2))
	if _, ok := l.Pop(t0.Add(19 * time.Millisecond)); ok {
		t.Fatal("delivered before its delay")
	}
	if p, ok := l.Pop(t0.Add(20 * time.Millisecond)); !ok || seqOf(p) != 1 {
		t.Fatal("packet 1 not delivered after 20 ms")
	}
	if _, ok := l.Pop(t0.Add(24 * time.Millisecond)); ok {
		t.Fatal("packet 2 early")
	}
	if at, _ := l.Next(); !at.Equal(t0.Add(25 * time.Millisecond)) {
		t.Fatalf("packet 2 due at %v", at.Sub(t0))
	}
}

func TestJitterReordersWithinBounds(t *testing.T) {
	p := Params{Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond}
	l := NewLink(p, 7)
	const n = 5000
	sent := map[uint32]time.Time{}
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		sent[uint32(i)] = at
		l.Push(at, pkt(client, 200, uint32(i)))
	}
	got := drain(l)
	if len(got) != n {
		t.Fatalf("%d of %d delivered", len(got), n)
	}
	inversions, sum := 0, time.Duration(0)
	lo, hi := time.Hour, time.Duration(0)
	for i, a := range got {
		d := a.at.Sub(sent[a.seq])
		sum += d
		lo, hi = min(lo, d), max(hi, d)
		if i > 0 && a.seq < got[i-1].seq {
			inversions++
		}
	}
	mean := sum / n
	t.Logf("delay %v..%v, mean %v, %d inversions", lo, hi, mean, inversions)
	if lo < 10*time.Millisecond || hi > 70*time.Millisecond {
		t.Fatalf("delays %v..%v outside 40 +- 30 ms", lo, hi)
	}
	if lo > 12*time.Millisecond || hi < 68*time.Millisecond {
		t.Fatalf("delays %v..%v do not fill 40 +- 30 ms", lo, hi)
	}
	if mean < 38*time.Millisecond || mean > 42*time.Millisecond {
		t.Fatalf("mean delay %v, want ~40 ms", mean)
	}
	if inversions < n/10 {
		t.Fatalf("only %d reorderings in %d packets 1 ms apart with +-30 ms jitter", inversions, n)
	}
}

func TestJitterNeverNegative(t *testing.T) {
	l := NewLink(Params{Delay: 5 * time.Millisecond, Jitter: 20 * time.Millisecond}, 3)
	for i := range 1000 {
		l.Push(t0, pkt(client, 100, uint32(i)))
	}
	for _, a := range drain(l) {
		if a.at.Before(t0) {
			t.Fatalf("packet %d delivered %v before it was sent", a.seq, t0.Sub(a.at))
		}
	}
}

func TestLossRate(t *testing.T) {
	for _, loss := range []float64{0.05, 0.3} {
		l := NewLink(Params{Loss: loss}, 42)
		const n = 100000
		for i := range n {
			l.Push(t0, pkt(client, 60, uint32(i)))
		}
		c := l.Counters()
		got := float64(c.DroppedLoss) / n
		// 4 standard deviations of a binomial.
		if tol := 4 * math.Sqrt(loss*(1-loss)/n); math.Abs(got-loss) > tol {
			t.Fatalf("loss %.4f, want %.2f +- %.4f", got, loss, tol)
		}
		if c.In != n || uint64(l.Pending())+c.DroppedLoss != n {
			t.Fatalf("counters %+v, pending %d", c, l.Pending())
		}
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	fate := func(seed uint64) []Verdict {
		l := NewLink(Params{Loss: 0.2, Jitter: 10 * time.Millisecond, Delay: 20 * time.Millisecond}, seed)
		var v []Verdict
		for i := range 200 {
			v = append(v, l.Push(t0.Add(time.Duration(i)*time.Millisecond), pkt(client, 100, uint32(i))))
		}
		for _, a := range drain(l) {
			v = append(v, Verdict(a.seq), Verdict(a.at.Sub(t0)))
		}
		return v
	}
	a, b, c := fate(1), fate(1), fate(2)
	same := func(x, y []Verdict) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("the same seed gave different fates")
	}
	if same(a, c) {
		t.Fatal("different seeds gave the same fates")
	}
}

func TestRateSerializesThenDelays(t *testing.T) {
	// 1250 bytes at 1 Mbit/s: 10 ms each.
	l := NewLink(Params{Rate: 1_000_000, Delay: 20 * time.Millisecond, Queue: 60}, 1)
	for i := range 3 {
		l.Push(t0, pkt(client, 1250, uint32(i)))
	}
	got := drain(l)
	for i, a := range got {
		if want := t0.Add(time.Duration(i+1)*10*time.Millisecond + 20*time.Millisecond); !a.at.Equal(want) {
			t.Fatalf("packet %d at %v, want %v", i, a.at.Sub(t0), want.Sub(t0))
		}
	}
}

func TestRateQueueBoundsAndTailDrops(t *testing.T) {
	l := NewLink(Params{Rate: 1_000_000, Delay: 20 * time.Millisecond, Queue: 60}, 1)
	var verdicts []Verdict
	for i := range 100 { // a burst at once: 60 fit, the last 40 are tail-dropped
		verdicts = append(verdicts, l.Push(t0, pkt(client, 1250, uint32(i))))
	}
	for i, v := range verdicts {
		if want := map[bool]Verdict{true: Scheduled, false: DroppedQueue}[i < 60]; v != want {
			t.Fatalf("packet %d: %v, want %v", i, v, want)
		}
	}
	if q := l.Queued(t0); q != 60 {
		t.Fatalf("queue %d, want 60", q)
	}
	// After 95 ms, 9 packets have been serialized: 9 places are free again.
	now := t0.Add(95 * time.Millisecond)
	if q := l.Queued(now); q != 51 {
		t.Fatalf("queue after 95 ms %d, want 51", q)
	}
	accepted := 0
	for i := range 20 {
		if l.Push(now, pkt(client, 1250, uint32(100+i))) == Scheduled {
			accepted++
		}
	}
	if accepted != 9 {
		t.Fatalf("%d accepted after 95 ms, want 9", accepted)
	}
	c := l.Counters()
	if c.DroppedQueue != 40+11 || c.MaxQueue != 60 {
		t.Fatalf("counters %+v", c)
	}
	got := drain(l)
	if len(got) != 69 {
		t.Fatalf("%d delivered, want 69", len(got))
	}
	for i, a := range got { // FIFO, back to back at the rate
		if i > 0 && (a.seq < got[i-1].seq || a.at.Sub(got[i-1].at) != 10*time.Millisecond) {
			t.Fatalf("packet %d (seq %d) %v after the previous", i, a.seq, a.at.Sub(got[i-1].at))
		}
	}
}

// TestRateLimitsThroughput offers twice the rate for 10 s: the link delivers the rate, the
// queue stays within its bound and the excess is tail-dropped.
func TestRateLimitsThroughput(t *testing.T) {
	const rate = 1_000_000
	l := NewLink(Params{Rate: rate, Delay: 20 * time.Millisecond, Queue: 60}, 1)
	const size = 1000 // 8 ms at 1 Mbit/s; one every 4 ms is 2 Mbit/s
	end := t0.Add(10 * time.Second)
	var delivered int
	var last time.Time
	for now, i := t0, 0; now.Before(end); now, i = now.Add(4*time.Millisecond), i+1 {
		l.Push(now, pkt(client, size, uint32(i)))
		if q := l.Queued(now); q > 60 {
			t.Fatalf("queue %d > 60", q)
		}
		for {
			p, ok := l.Pop(now)
			if !ok {
				break
			}
			delivered += len(p)
			last = now
		}
	}
	bps := float64(delivered*8) / last.Sub(t0).Seconds()
	c := l.Counters()
	t.Logf("delivered %.0f bit/s; %+v", bps, c)
	if bps < 0.97*rate || bps > 1.01*rate {
		t.Fatalf("throughput %.0f bit/s, want ~%d", bps, rate)
	}
	if c.DroppedQueue < c.In*45/100 || c.DroppedQueue > c.In*55/100 {
		t.Fatalf("%d of %d tail-dropped, want about half", c.DroppedQueue, c.In)
	}
	// The standing queue adds at most 60 x 8 ms of delay.
	if at, _ := l.Next(); at.Sub(end) > 60*8*time.Millisecond+20*time.Millisecond {
		t.Fatalf("last packet due %v after the end", at.Sub(end))
	}
}

func TestSetParamsAppliesToNewPackets(t *testing.T) {
	l := NewLink(Params{Rate: 4_000_000, Queue: 200}, 1)
	for i := range 150 {
		if l.Push(t0, pkt(client, 1000, uint32(i))) != Scheduled {
			t.Fatalf("packet %d dropped at 4 Mbit/s with a 200-packet queue", i)
		}
	}
	l.SetParams(Params{Rate: 600_000, Queue: 50})
	// 150 queued > 50: new packets are refused until the queue is below 50.
	if v := l.Push(t0, pkt(client, 1000, 1000)); v != DroppedQueue {
		t.Fatalf("got %v with 150 queued and a 50-packet limit", v)
	}
	// At 4 Mbit/s a 1000-byte packet takes 2 ms: after 202 ms, 101 are gone, 49 remain.
	now := t0.Add(202 * time.Millisecond)
	if v := l.Push(now, pkt(client, 1000, 1001)); v != Scheduled {
		t.Fatalf("got %v with 49 queued", v)
	}
	got := drain(l)
	tail := got[len(got)-1]
	// It waits for the 49 ahead (until 300 ms), then takes 1000 bytes at 600 kbit/s.
	if want := t0.Add(300*time.Millisecond + TxTime(1000, 600_000)); tail.seq != 1001 || !tail.at.Equal(want) {
		t.Fatalf("last packet %d at %v, want 1001 at %v", tail.seq, tail.at.Sub(t0), want.Sub(t0))
	}
}

func TestParamsValidate(t *testing.T) {
	for _, p := range []Params{{Loss: -0.1}, {Loss: 1.5}, {Delay: -1}, {Rate: -1}, {Queue: -2}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
