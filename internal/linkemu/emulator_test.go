package linkemu

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"
)

var server = [4]byte{10, 211, 1, 2}

func testConfig(p Profile) Config {
	return Config{
		Down:    []netip.Prefix{netip.MustParsePrefix("10.211.2.0/24")},
		Up:      []netip.Prefix{netip.MustParsePrefix("10.211.1.0/24")},
		Profile: p,
		Seed:    1,
	}
}

func TestNamedProfiles(t *testing.T) {
	want := []string{"1mbit", "1mbit-down", "4to600", "500kbit", "jitter", "loss5", "perfect"}
	if got := Names(); len(got) != len(want) {
		t.Fatalf("profiles %v, want %v", got, want)
	}
	for _, n := range want {
		p, err := Named(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		t.Log(p)
	}
	p, _ := Named("1mbit-down", 0)
	if p.Steps[0].Down.Rate != 1_000_000 || p.Steps[0].Up.Rate != 0 {
		t.Fatalf("1mbit-down: %+v", p.Steps[0])
	}
	p, _ = Named("4to600", 15*time.Second)
	if len(p.Steps) != 2 || p.Steps[1].At != 15*time.Second || p.Steps[1].Up.Rate != 600_000 || p.Steps[1].Down.Queue != 50 {
		t.Fatalf("4to600: %+v", p.Steps)
	}
	if p, _ = Named("4to600", 0); p.Steps[1].At != Manual {
		t.Fatalf("4to600 without a time: %+v", p.Steps[1])
	}
	if _, err := Named("nope", 0); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

func TestClassify(t *testing.T) {
	p, _ := Named("perfect", 0)
	e, err := New(testConfig(p))
	if err != nil {
		t.Fatal(err)
	}
	v6 := make([]byte, 40)
	v6[0] = 0x60
	for _, c := range []struct {
		pkt  []byte
		want Direction
	}{
		{pkt(client, 100, 0), Down},
		{pkt(server, 100, 0), Up},
		{pkt([4]byte{8, 8, 8, 8}, 100, 0), Other},
		{v6, Other},
		{[]byte{0x45, 0}, Other},
	} {
		if got := e.Classify(c.pkt); got != c.want {
			t.Errorf("%v: %v, want %v", c.pkt[:min(len(c.pkt), 20)], got, c.want)
		}
	}
	// Without Up, everything that is not down goes up.
	cfg := testConfig(p)
	cfg.Up = nil
	e, _ = New(cfg)
	if got := e.Classify(pkt([4]byte{8, 8, 8, 8}, 100, 0)); got != Up {
		t.Errorf("without Up: %v", got)
	}
}

// fakeClock is a clock for the emulator's schedule.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestScheduleSwitchesAtItsTime(t *testing.T) {
	p, _ := Named("4to600", 10*time.Second)
	e, err := New(testConfig(p))
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: t0}
	e.now = clk.Now
	e.Offer(pkt(client, 100, 0)) // starts the clock
	if s := e.Stats(); s.Step != 0 || s.Params[Down].Rate != 4_000_000 {
		t.Fatalf("at start: %+v", s)
	}
	clk.now = t0.Add(9999 * time.Millisecond)
	e.Offer(pkt(client, 100, 1))
	if s := e.Stats(); s.Step != 0 {
		t.Fatalf("switched early: %+v", s)
	}
	clk.now = t0.Add(10 * time.Second)
	e.Offer(pkt(server, 100, 2))
	s := e.Stats()
	if s.Step != 1 || s.Params[Down].Rate != 600_000 || s.Params[Up].Queue != 50 || len(s.Switches) != 1 || s.Switches[0].At != 10 {
		t.Fatalf("after 10 s: %+v", s)
	}
	if s.Switches[0].Down.In != 2 || s.Up.In != 1 {
		t.Fatalf("counters at the switch: %+v", s)
	}
	if e.Advance() {
		t.Fatal("advanced past the last step")
	}
}

func TestAdvanceManualStep(t *testing.T) {
	p, _ := Named("4to600", 0)
	e, _ := New(testConfig(p))
	clk := &fakeClock{now: t0}
	e.now = clk.Now
	e.Offer(pkt(client, 100, 0))
	clk.now = t0.Add(time.Hour)
	e.Offer(pkt(client, 100, 1))
	if e.Stats().Step != 0 {
		t.Fatal("a manual step began by itself")
	}
	if !e.Advance() || e.Stats().Params[Up].Rate != 600_000 {
		t.Fatalf("Advance: %+v", e.Stats())
	}
}

// pipeDev is a packet device over channels: the test writes packets "from the kernel" into
// in and reads what the emulator writes back from out, with the time it arrived.
type pipeDev struct {
	in     chan []byte
	out    chan arrival
	closed chan struct{}
	once   sync.Once
}

func newPipeDev() *pipeDev {
	return &pipeDev{in: make(chan []byte, 4096), out: make(chan arrival, 4096), closed: make(chan struct{})}
}

func (d *pipeDev) Read(b []byte) (int, error) {
	select {
	case p := <-d.in:
		return copy(b, p), nil
	case <-d.closed:
		return 0, io.EOF
	}
}

func (d *pipeDev) Write(b []byte) (int, error) {
	d.out <- arrival{seqOf(b), time.Now()}
	return len(b), nil
}

func (d *pipeDev) Close() error { d.once.Do(func() { close(d.closed) }); return nil }

func startRun(t *testing.T, p Profile) (*Emulator, *pipeDev, func()) {
	t.Helper()
	e, err := New(testConfig(p))
	if err != nil {
		t.Fatal(err)
	}
	dev := newPipeDev()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, dev) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	return e, dev, stop
}

// TestRunDelaysInRealTime: loss5's 20 ms delay in real time, per direction, over a device.
func TestRunDelaysInRealTime(t *testing.T) {
	p := Profile{Name: "t", Steps: []Step{{Down: Params{Delay: 20 * time.Millisecond}, Up: Params{Delay: 40 * time.Millisecond}}}}
	e, dev, stop := startRun(t, p)
	defer stop()
	sent := map[uint32]time.Time{}
	for i := range 20 {
		dst := client
		if i%2 == 1 {
			dst = server
		}
		sent[uint32(i)] = time.Now()
		dev.in <- pkt(dst, 200, uint32(i))
		time.Sleep(5 * time.Millisecond)
	}
	// The model's exact times are tested on a fake clock (link_test.go); in real time, on a
	// loaded machine, check that no packet comes early and that most come on time.
	var late []time.Duration
	for range 20 {
		select {
		case a := <-dev.out:
			d := a.at.Sub(sent[a.seq])
			want := 20 * time.Millisecond
			if a.seq%2 == 1 {
				want = 40 * time.Millisecond
			}
			if d < want || d > want+200*time.Millisecond {
				t.Errorf("packet %d after %v, want %v", a.seq, d, want)
			}
			late = append(late, d-want)
		case <-time.After(2 * time.Second):
			t.Fatal("packets missing")
		}
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	if late[len(late)/2] > 10*time.Millisecond {
		t.Errorf("median lateness %v", late[len(late)/2])
	}
	if s := e.Stats(); s.Down.Out != 10 || s.Up.Out != 10 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRunRateInRealTime: a burst through 8 Mbit/s leaves at the rate, in order, and what
// does not fit in the queue is tail-dropped.
func TestRunRateInRealTime(t *testing.T) {
	p := Profile{Name: "t", Steps: []Step{both(Params{Rate: 8_000_000, Queue: 100})}}
	e, dev, stop := startRun(t, p)
	defer stop()
	start := time.Now()
	for i := range 150 { // 1000 bytes = 1 ms each: about 100 fit, the rest is dropped
		dev.in <- pkt(client, 1000, uint32(i))
	}
	var got []arrival
	for done := false; !done; {
		select {
		case a := <-dev.out:
			got = append(got, a)
		case <-time.After(100 * time.Millisecond):
			done = true
		}
	}
	s := e.Stats().Down
	// The packets reach the queue over a few ms (more under -race), which drains meanwhile:
	// a few more than 100 may fit.
	if len(got) < 100 || len(got) > 130 || s.Out != uint64(len(got)) || s.DroppedQueue+s.Out != 150 || s.MaxQueue != 100 {
		t.Fatalf("%d delivered; stats %+v", len(got), s)
	}
	span := got[len(got)-1].at.Sub(start)
	want := time.Duration(len(got)) * time.Millisecond
	if span < want-2*time.Millisecond || span > want+100*time.Millisecond {
		t.Fatalf("%d x 1000 bytes at 8 Mbit/s took %v, want ~%v", len(got), span, want)
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].seq < got[j].seq }) {
		t.Fatal("a rate without jitter reordered packets")
	}
}

// TestRunTimedSwitchWithoutTraffic: a timed step begins on time even when no packet comes.
func TestRunTimedSwitchWithoutTraffic(t *testing.T) {
	p, _ := Named("4to600", 50*time.Millisecond)
	e, _, stop := startRun(t, p)
	defer stop()
	time.Sleep(300 * time.Millisecond)
	s := e.Stats()
	if s.Step != 1 || len(s.Switches) != 1 || s.Switches[0].At < 0.05 || s.Switches[0].At > 0.2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRunOtherAndNonIPv4(t *testing.T) {
	p, _ := Named("1mbit", 0)
	e, dev, stop := startRun(t, p)
	defer stop()
	v6 := make([]byte, 40)
	v6[0] = 0x60
	dev.in <- v6
	dev.in <- pkt([4]byte{192, 0, 2, 1}, 1200, 7) // neither direction: passed at once
	select {
	case a := <-dev.out:
		if a.seq != 7 {
			t.Fatalf("got %d", a.seq)
		}
	case <-time.After(time.Second):
		t.Fatal("the other packet was not passed")
	}
	if s := e.Stats(); s.NotIPv4 != 1 || s.Passed != 1 || s.Down.In+s.Up.In != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRunReturnsReadError(t *testing.T) {
	p, _ := Named("perfect", 0)
	e, _ := New(testConfig(p))
	dev := newPipeDev()
	_ = dev.Close()
	if err := e.Run(context.Background(), dev); !errors.Is(err, io.EOF) {
		t.Fatalf("Run: %v, want EOF", err)
	}
}
