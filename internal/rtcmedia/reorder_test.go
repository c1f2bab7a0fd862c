package rtcmedia

import (
	"testing"
	"time"
)

type released struct {
	seq     byte // the payload's first byte: the packet's sequence number
	missing int
}

func drain(r *Reorder, now time.Time) []released {
	var out []released
	for p, m, ok := r.Next(now); ok; p, m, ok = r.Next(now) {
		out = append(out, released{p[0], m})
	}
	return out
}

func TestReorder(t *testing.T) {
	r := Reorder{Window: 40 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	push := func(seq uint16, ms int) bool { return r.Push(seq, []byte{byte(seq)}, at(ms)) }
	check := func(ms int, want ...released) {
		t.Helper()
		got := drain(&r, at(ms))
		if len(got) != len(want) {
			t.Fatalf("at %d ms: released %v, want %v", ms, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("at %d ms: released %v, want %v", ms, got, want)
			}
		}
	}
	// In order: at once.
	push(10, 0)
	check(0, released{10, 0})
	push(11, 20)
	check(20, released{11, 0})
	// 13 overtakes 12: held, and both go when 12 arrives 25 ms later.
	push(13, 40)
	check(40)
	if d := r.Deadline(); !d.Equal(at(80)) {
		t.Fatalf("deadline %v, want 40 ms after 13 arrived", d.Sub(t0))
	}
	push(12, 65)
	check(65, released{12, 0}, released{13, 0})
	if !r.Deadline().IsZero() {
		t.Fatal("a deadline with nothing held")
	}
	// 14 lost: 15 and 16 wait the window (from 15's arrival), then go with 14 given up.
	push(15, 100)
	push(16, 120)
	check(139)
	check(140, released{15, 1}, released{16, 0})
	// 14 arrives after all: dropped as late.
	if push(14, 150) {
		t.Fatal("a packet given up was accepted")
	}
	// A duplicate is dropped.
	push(18, 160)
	if push(18, 161) {
		t.Fatal("a duplicate was accepted")
	}
	push(17, 162)
	check(162, released{17, 0}, released{18, 0})
	// A jump far ahead (a restart): released at once with the gap reported.
	push(100, 200)
	check(200, released{100, 81})
	st := r.Stats()
	if st.Filled != 2 || st.Lost != 82 || st.Late != 1 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReorderWraps(t *testing.T) {
	r := Reorder{Window: 20 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	var got []released
	for i, seq := range []uint16{65533, 65535, 65534, 1, 0, 2} {
		r.Push(seq, []byte{byte(seq)}, t0)
		got = append(got, drain(&r, t0.Add(time.Duration(i)*time.Millisecond))...)
	}
	want := []byte{253, 254, 255, 0, 1, 2}
	if len(got) != len(want) {
		t.Fatalf("released %v", got)
	}
	for i := range want {
		if got[i].seq != want[i] || got[i].missing != 0 {
			t.Fatalf("released %v, want %v in order", got, want)
		}
	}
}

func TestReorderWindow(t *testing.T) {
	for _, c := range []struct{ jitter, want time.Duration }{
		{0, 20 * time.Millisecond}, {20 * time.Millisecond, 40 * time.Millisecond}, {time.Second, 100 * time.Millisecond},
	} {
		if got := ReorderWindow(c.jitter); got != c.want {
			t.Errorf("ReorderWindow(%v) = %v, want %v", c.jitter, got, c.want)
		}
	}
}

func BenchmarkReorderInOrder(b *testing.B) {
	var r Reorder
	r.Window = 20 * time.Millisecond
	p := make([]byte, 80)
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		r.Push(uint16(i), p, now)
		for _, _, ok := r.Next(now); ok; _, _, ok = r.Next(now) {
		}
	}
}

// TestReorderRestart: a sender whose numbering jumps backwards or by half the range is
// followed again after maxLateRun packets, not dropped as late forever.
func TestReorderRestart(t *testing.T) {
	for _, jump := range []uint16{32768, 40000, 65000} {
		r := Reorder{Window: 20 * time.Millisecond}
		t0 := time.Unix(1000, 0)
		for i := range uint16(10) {
			r.Push(i, []byte{byte(i)}, t0)
			drain(&r, t0)
		}
		got := 0
		for i := range uint16(100) {
			r.Push(10+jump+i, []byte{0}, t0)
			got += len(drain(&r, t0))
		}
		if want := 100 - maxLateRun + 1; got < want {
			t.Errorf("jump %d: %d of 100 packets released, want at least %d", jump, got, want)
		}
	}
}
