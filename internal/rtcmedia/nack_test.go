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
	// 102 arrives (retransmitted): only 103 is asked for again after the round trip.
	tr.Push(102, t0.Add(45*time.Millisecond))
	if got := tr.Push(106, t0.Add(52*time.Millisecond)); !slices.Equal(got, []uint16{103}) {
		t.Fatalf("after the round trip: nacks %v, want [103]", got)
	}
	st := tr.Stats()
	if st.Missing != 2 || st.Recovered != 1 || st.Nacked != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNackTrackerGivesUp(t *testing.T) {
	var tr NackTracker
	tr.SetRTT(10 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	tr.Push(65534, t0)
	tr.Push(1, t0) // wraps: 65535 and 0 missing
	asked := 2
	seq := uint16(2)
	for i := 1; i < 100; i++ {
		asked += len(tr.Push(seq, t0.Add(time.Duration(i)*25*time.Millisecond)))
		seq++
	}
	if want := 2 * MaxNackTries; asked != want {
		t.Fatalf("asked %d times, want %d (%d tries each)", asked, want, MaxNackTries)
	}
	if st := tr.Stats(); st.GivenUp != 2 {
		t.Fatalf("given up %d, want 2", st.GivenUp)
	}
	// A jump far ahead is a restart, not a thousand losses.
	if got := tr.Push(seq+5000, t0.Add(3*time.Second)); len(got) != 0 {
		t.Fatalf("restart: nacks %d", len(got))
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
		if got := RecoveryWait(c.rtt); got != uint32(c.want*90000/time.Second) {
			t.Errorf("RTT %v: %d ticks, want %v", c.rtt, got, c.want)
		}
	}
}
