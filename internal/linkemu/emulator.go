package linkemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Config configures an Emulator.
type Config struct {
	// Down holds the destinations toward the client: IPv4 packets to them take the Down
	// params of the profile.
	Down []netip.Prefix
	// Up holds the destinations toward the server. Empty: every other IPv4 packet goes up.
	// Packets to neither (when Up is set) pass unimpaired.
	Up      []netip.Prefix
	Profile Profile
	Seed    uint64
	// MTU bounds the packets read (default 65535).
	MTU int
}

// Direction of a packet.
type Direction int

const (
	Down  Direction = iota // toward the client
	Up                     // toward the server
	Other                  // neither (passed unimpaired), or not IPv4 (dropped)
)

func (d Direction) String() string { return [...]string{"down", "up", "other"}[d] }

// Stats is a snapshot of an emulator.
type Stats struct {
	Profile     string    `json:"profile"`
	Step        int       `json:"step"` // index of the current step
	Uptime      float64   `json:"uptime_s"`
	Down        Counters  `json:"down"`
	Up          Counters  `json:"up"`
	Passed      uint64    `json:"passed"`       // IPv4 packets to neither direction, passed unimpaired
	NotIPv4     uint64    `json:"not_ipv4"`     // dropped
	WriteErrors uint64    `json:"write_errors"` // packets the device refused
	Switches    []Switch  `json:"switches,omitempty"`
	Params      [2]Params `json:"params"` // current down, up
}

// Switch records a change of step.
type Switch struct {
	Step int      `json:"step"`
	At   float64  `json:"at_s"` // seconds from the start
	Down Counters `json:"down"` // counters at that moment
	Up   Counters `json:"up"`
}

// Emulator runs a Profile over a packet device (a TUN, or anything that reads and writes
// one IPv4 packet per call).
type Emulator struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	start   time.Time
	step    int
	links   [3]*Link // Down, Up, Other (unimpaired)
	notIPv4 uint64
	werr    uint64
	sw      []Switch
	kick    chan struct{}
}

// New checks cfg and returns an emulator in the first step of its profile.
func New(cfg Config) (*Emulator, error) {
	if err := cfg.Profile.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Down) == 0 {
		return nil, errors.New("linkemu: no down (toward the client) destinations")
	}
	for _, p := range append(append([]netip.Prefix{}, cfg.Down...), cfg.Up...) {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("linkemu: %v is not an IPv4 prefix", p)
		}
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 65535
	}
	s0 := cfg.Profile.Steps[0]
	e := &Emulator{cfg: cfg, now: time.Now, kick: make(chan struct{}, 1)}
	e.links[Down] = NewLink(s0.Down, cfg.Seed*3+1)
	e.links[Up] = NewLink(s0.Up, cfg.Seed*3+2)
	e.links[Other] = NewLink(Params{}, cfg.Seed*3+3)
	return e, nil
}

// Classify returns the direction of an IPv4 packet by its destination address.
func (e *Emulator) Classify(pkt []byte) Direction {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return Other
	}
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	for _, p := range e.cfg.Down {
		if p.Contains(dst) {
			return Down
		}
	}
	if len(e.cfg.Up) == 0 {
		return Up
	}
	for _, p := range e.cfg.Up {
		if p.Contains(dst) {
			return Up
		}
	}
	return Other
}

// Advance moves to the next step now (whatever its At); false if there is none.
func (e *Emulator) Advance() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.step+1 >= len(e.cfg.Profile.Steps) {
		return false
	}
	e.enter(e.step+1, e.now())
	return true
}

// enter switches to step i (e.mu held).
func (e *Emulator) enter(i int, now time.Time) {
	e.step = i
	s := e.cfg.Profile.Steps[i]
	e.links[Down].SetParams(s.Down)
	e.links[Up].SetParams(s.Up)
	e.sw = append(e.sw, Switch{Step: i, At: now.Sub(e.start).Seconds(),
		Down: e.links[Down].Counters(), Up: e.links[Up].Counters()})
}

// tick enters the timed steps that are due (e.mu held).
func (e *Emulator) tick(now time.Time) {
	steps := e.cfg.Profile.Steps
	for e.step+1 < len(steps) && steps[e.step+1].At != Manual && now.Sub(e.start) >= steps[e.step+1].At {
		e.enter(e.step+1, now)
	}
}

// Stats returns the counters so far.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	up := 0.0
	if !e.start.IsZero() {
		up = e.now().Sub(e.start).Seconds()
	}
	return Stats{Profile: e.cfg.Profile.Name, Step: e.step, Uptime: up,
		Down: e.links[Down].Counters(), Up: e.links[Up].Counters(),
		Passed: e.links[Other].Counters().In, NotIPv4: e.notIPv4, WriteErrors: e.werr,
		Switches: append([]Switch(nil), e.sw...),
		Params:   [2]Params{e.links[Down].Params(), e.links[Up].Params()}}
}

// Run reads packets from dev, holds them as the profile says and writes them back, until
// ctx ends or reading fails. Each Read must return one whole packet, each Write take one.
// When ctx ends Run closes dev if it is an io.Closer (to end a blocked Read), waits for its
// reader and returns nil (or the reader's error if it is neither os.ErrClosed nor io.EOF);
// packets still held are dropped. If reading fails first, Run returns that error.
func (e *Emulator) Run(ctx context.Context, dev io.ReadWriter) error {
	e.mu.Lock()
	e.start = e.now()
	e.mu.Unlock()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() {
		readErr <- e.readLoop(dev)
		cancel()
	}()
	e.writeLoop(ctx, dev)
	if parent.Err() != nil {
		if c, ok := dev.(io.Closer); ok {
			_ = c.Close()
		}
		// Closing the device under a Read fails it: that is the normal end.
		if err := <-readErr; err != nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	return <-readErr
}

func (e *Emulator) readLoop(dev io.Reader) error {
	buf := make([]byte, e.cfg.MTU)
	for {
		n, err := dev.Read(buf)
		if err != nil {
			return err
		}
		if n > 0 {
			e.Offer(append([]byte(nil), buf[:n]...)) // held packets keep only their bytes
		}
	}
}

// Offer classifies one packet read from the device and hands it to its link (Run calls it;
// exported for tests and other drivers). The emulator keeps pkt.
func (e *Emulator) Offer(pkt []byte) Verdict {
	dir := e.Classify(pkt)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.start.IsZero() {
		e.start = e.now()
	}
	now := e.now()
	e.tick(now)
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		e.notIPv4++
		return NotIPv4
	}
	first, had := e.earliest()
	v := e.links[dir].Push(now, pkt) // Other: an unimpaired link
	if v == Scheduled {
		if at, _ := e.links[dir].Next(); !had || at.Before(first) {
			select {
			case e.kick <- struct{}{}:
			default:
			}
		}
	}
	return v
}

// earliest returns the earliest delivery over the links (e.mu held).
func (e *Emulator) earliest() (time.Time, bool) {
	var t time.Time
	ok := false
	for _, l := range e.links {
		if at, has := l.Next(); has && (!ok || at.Before(t)) {
			t, ok = at, true
		}
	}
	return t, ok
}

func (e *Emulator) writeLoop(ctx context.Context, dev io.Writer) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch [][]byte
	for {
		e.mu.Lock()
		now := e.now()
		e.tick(now)
		batch = batch[:0]
		for {
			// Pop in delivery order across the links.
			var best *Link
			var bt time.Time
			for _, l := range e.links {
				if at, ok := l.Next(); ok && !at.After(now) && (best == nil || at.Before(bt)) {
					best, bt = l, at
				}
			}
			if best == nil {
				break
			}
			p, _ := best.Pop(now)
			batch = append(batch, p)
		}
		next, has := e.earliest()
		e.mu.Unlock()
		werr := 0
		for _, p := range batch {
			if _, err := dev.Write(p); err != nil {
				werr++
			}
		}
		if werr > 0 {
			e.mu.Lock()
			e.werr += uint64(werr)
			e.mu.Unlock()
		}
		wait := time.Hour
		if has {
			wait = max(time.Until(next), 0)
		}
		// A timed step switch must happen on time even without traffic.
		if d, ok := e.nextSwitch(); ok && d < wait {
			wait = d
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-timer.C:
		}
	}
}

// nextSwitch returns how long until the next timed step.
func (e *Emulator) nextSwitch() (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	steps := e.cfg.Profile.Steps
	if e.step+1 >= len(steps) || steps[e.step+1].At == Manual {
		return 0, false
	}
	return max(steps[e.step+1].At-e.now().Sub(e.start), 0), true
}
