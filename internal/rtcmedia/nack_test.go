package rtcmedia

import (
	"slices"
	"testing"
	"time"
)

func TestNackTrackerAsksOnceThenPerRTT(t *testing.T) {
	var tr NackTracker
	tr.SetRTT(40 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	if got := tr.Push(100, t0); got != nil {
		t.Fatalf("first packet: nacks %v", got)
	}
	if got := tr.Push(101, t0); len(got) != 0 {
		t.Fatalf("no gap: nacks %v", got)
	}
	// 102 and 103 lost: asked for at once.
	if got := tr.Push(104, t0.Add(time.Millisecond)); !slices.Equal(got, []uint16{102, 103}) {
		t.Fatalf("gap: nacks %v, want [102 103]", got)
	}
	// Not again before a round trip and the margin.
	if got := tr.Push(105, t0.Add(30*time.Millisecond)); len(got) != 0 {
		t.Fatalf("within the round trip: nacks %v", got)
	}
	// 102 arrives (retransmitted, 44 ms after it was asked for: the round trip is now 44 ms):
	// only 103 is asked for again, after that round trip and the margin.
	tr.Push(102, t0.Add(45*time.Millisecond))
	if got := tr.Push(106, t0.Add(52*time.Millisecond)); len(got) != 0 {
		t.Fatalf("within the measured round trip: nacks %v", got)
	}
	if got := tr.Push(107, t0.Add(56*time.Millisecond)); !slices.Equal(got, []uint16{103}) {
		t.Fatalf("after the round trip: nacks %v, want [103]", got)
	}
	st := tr.Stats()
	if st.Missing != 2 || st.Recovered != 1 || st.Nacked != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNackTrackerBacksOffAndGivesUp(t *testing.T) {
	var tr NackTracker
	tr.SetRTT(10 * time.Millisecond) // spacing 20 ms three times, then 40, 80, ...; wait 200 ms
	t0 := time.Unix(1000, 0)
	tr.Push(65534, t0)
	tr.Push(1, t0) // wraps: 65535 and 0 missing, asked for at 0 ms
	var at []time.Duration
	seq := uint16(2)
	for i := 1; i < 100; i++ {
		d := time.Duration(i) * 5 * time.Millisecond
		if got := tr.Push(seq, t0.Add(d)); len(got) > 0 {
			if !slices.Equal(got, []uint16{65535, 0}) {
				t.Fatalf("at %v: nacks %v", d, got)
			}
			at = append(at, d)
		}
		seq++
	}
	// Again after 20 ms, 20 ms and 20 ms, then 40 ms after that, then 80 ms; the next
	// (160 ms later) would come after the 200 ms wait, when the frame is given up.
	want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond, 180 * time.Millisecond}
	if !slices.Equal(at, want) {
		t.Fatalf("asked again at %v, want %v", at, want)
	}
	if st := tr.Stats(); st.GivenUp != 2 || st.Nacked != 12 {
		t.Fatalf("stats %+v, want 2 given up, 12 asked", st)
	}
	// A jump far ahead is a restart, not a thousand losses.
	if got := tr.Push(seq+5000, t0.Add(3*time.Second)); len(got) != 0 {
		t.Fatalf("restart: nacks %d", len(got))
	}
}

// On a link whose queue fills, retransmissions take long: the tracker then asks less often
// and waits longer before the frame is given up.
func TestNackTrackerFollowsSlowRetransmissions(t *testing.T) {
	var tr NackTracker
	tr.SetRTT(50 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	if w := tr.RecoveryWait(); w != 210*time.Millisecond {
		t.Fatalf("wait %v, want 210ms (3 RTT + 60 ms)", w)
	}
	tr.Push(10, t0)
	tr.Push(12, t0) // 11 asked for at t0
	tr.Push(11, t0.Add(400*time.Millisecond))
	if w := tr.RecoveryWait(); w != 620*time.Millisecond {
		t.Fatalf("wait after a 400 ms retransmission %v, want 620ms", w)
	}
	tr.Push(14, t0.Add(401*time.Millisecond)) // 13 asked for
	if got := tr.Push(15, t0.Add(700*time.Millisecond)); len(got) != 0 {
		t.Fatalf("asked again within the 400 ms retransmission time: %v", got)
	}
	if got := tr.Push(16, t0.Add(812*time.Millisecond)); !slices.Equal(got, []uint16{13}) {
		t.Fatalf("after the retransmission time: nacks %v, want [13]", got)
	}
	// Quick retransmissions bring the estimate down slowly; the wait never exceeds 800 ms.
	for i := range 40 {
		s := uint16(20 + 2*i)
		now := t0.Add(time.Second + time.Duration(i)*100*time.Millisecond)
		tr.Push(s+1, now)
		tr.Push(s, now.Add(60*time.Millisecond))
	}
	if w := tr.RecoveryWait(); w > 250*time.Millisecond {
		t.Fatalf("wait %v after 40 retransmissions of 60 ms", w)
	}
	// A retransmission that arrives after its packet was given up still counts.
	t1 := t0.Add(10 * time.Second)
	tr.Push(200, t1)
	tr.Push(202, t1) // 201 asked for
	tr.Push(203, t1.Add(time.Second))
	if st := tr.Stats(); len(tr.missing) != 0 || st.GivenUp == 0 {
		t.Fatalf("201 still tracked after a second: %+v", st)
	}
	tr.Push(201, t1.Add(1200*time.Millisecond))
	if w := tr.RecoveryWait(); w != maxCongestedWait {
		t.Fatalf("wait %v, want the %v ceiling", w, maxCongestedWait)
	}
}

func TestNackTrackerBoundsMissing(t *testing.T) {
	var tr NackTracker
	t0 := time.Unix(1000, 0)
	tr.Push(0, t0)
	for s := uint16(900); s < 5000; s += 900 {
		tr.Push(s, t0)
	}
	if n := len(tr.missing); n > maxMissing {
		t.Fatalf("%d missing tracked, bound %d", n, maxMissing)
	}
}

func BenchmarkNackTrackerInOrder(b *testing.B) {
	var tr NackTracker
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		tr.Push(uint16(i), now)
	}
}

func TestRecoveryWaitBounds(t *testing.T) {
	for _, c := range []struct {
		rtt  time.Duration
		want time.Duration
	}{{0, 200 * time.Millisecond}, {60 * time.Millisecond, 240 * time.Millisecond}, {time.Second, 500 * time.Millisecond}} {
		var tr NackTracker
		tr.SetRTT(c.rtt)
		if got := tr.RecoveryWait(); got != c.want {
			t.Errorf("RTT %v: wait %v, want %v", c.rtt, got, c.want)
		}
	}
	if got := Ticks90k(240 * time.Millisecond); got != 21600 {
		t.Errorf("240 ms: %d ticks, want 21600", got)
	}
}
