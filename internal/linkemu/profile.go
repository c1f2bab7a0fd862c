package linkemu

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Step is the state of both directions from a time on.
type Step struct {
	// At is when the step begins, from the emulator's start. The first step begins at 0.
	// Manual (< 0): only when Emulator.Advance is called (cmd/linkemu: SIGUSR1).
	At   time.Duration `json:"at"`
	Down Params        `json:"down"` // toward the client
	Up   Params        `json:"up"`   // toward the server
}

// Manual is a Step.At that waits for Emulator.Advance.
const Manual time.Duration = -1

// Profile is a named schedule of link states.
type Profile struct {
	Name  string `json:"name"`
	Steps []Step `json:"steps"`
}

// Validate checks the steps: at least one, the first at 0, timed steps in order.
func (p Profile) Validate() error {
	if len(p.Steps) == 0 {
		return fmt.Errorf("linkemu: profile %q has no steps", p.Name)
	}
	if p.Steps[0].At != 0 {
		return fmt.Errorf("linkemu: profile %q: the first step must begin at 0", p.Name)
	}
	last := time.Duration(0)
	for i, s := range p.Steps {
		if err := s.Down.Validate(); err != nil {
			return err
		}
		if err := s.Up.Validate(); err != nil {
			return err
		}
		if i > 0 && s.At != Manual {
			if s.At < last {
				return fmt.Errorf("linkemu: profile %q: step %d begins before step %d", p.Name, i, i-1)
			}
			last = s.At
		}
	}
	return nil
}

func (p Profile) String() string {
	var b strings.Builder
	b.WriteString(p.Name)
	for i, s := range p.Steps {
		switch {
		case i == 0:
			b.WriteString(": ")
		case s.At == Manual:
			b.WriteString("; then (on demand) ")
		default:
			fmt.Fprintf(&b, "; after %v ", s.At)
		}
		if s.Down == s.Up {
			fmt.Fprintf(&b, "each way %v", s.Down)
		} else {
			fmt.Fprintf(&b, "down %v, up %v", s.Down, s.Up)
		}
	}
	return b.String()
}

// both is a step with the same params each way.
func both(p Params) Step { return Step{Down: p, Up: p} }

// Names lists the named profiles.
func Names() []string {
	n := make([]string, 0, len(named))
	for k := range named {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// The named profiles (those of the issue that asked for bad-link measurements).
var named = map[string]func(switchAfter time.Duration) Profile{
	// perfect: no impairment.
	"perfect": func(time.Duration) Profile { return Profile{Steps: []Step{both(Params{})}} },
	// loss5: 20 ms one-way delay, 5% random loss, each way.
	"loss5": func(time.Duration) Profile {
		return Profile{Steps: []Step{both(Params{Delay: 20 * time.Millisecond, Loss: 0.05})}}
	},
	// jitter: 40 ms +- 30 ms uniform one-way delay each way (packets reorder).
	"jitter": func(time.Duration) Profile {
		return Profile{Steps: []Step{both(Params{Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond})}}
	},
	// 1mbit: 1 Mbit/s, 20 ms, a 60-packet queue, each way.
	"1mbit": func(time.Duration) Profile {
		return Profile{Steps: []Step{both(Params{Rate: 1_000_000, Delay: 20 * time.Millisecond, Queue: 60})}}
	},
	// 1mbit-down: the same toward the client only (the server's video); the other way 20 ms.
	"1mbit-down": func(time.Duration) Profile {
		return Profile{Steps: []Step{{
			Down: Params{Rate: 1_000_000, Delay: 20 * time.Millisecond, Queue: 60},
			Up:   Params{Delay: 20 * time.Millisecond},
		}}}
	},
	// 500kbit: 500 kbit/s, 20 ms, a 40-packet queue, each way.
	"500kbit": func(time.Duration) Profile {
		return Profile{Steps: []Step{both(Params{Rate: 500_000, Delay: 20 * time.Millisecond, Queue: 40})}}
	},
	// 4to600: 4 Mbit/s with a 200-packet queue, then 600 kbit/s with a 50-packet queue
	// (20 ms each way throughout) after switchAfter, or on demand when switchAfter is 0.
	"4to600": func(switchAfter time.Duration) Profile {
		at := Manual
		if switchAfter > 0 {
			at = switchAfter
		}
		hi := both(Params{Rate: 4_000_000, Delay: 20 * time.Millisecond, Queue: 200})
		lo := both(Params{Rate: 600_000, Delay: 20 * time.Millisecond, Queue: 50})
		lo.At = at
		return Profile{Steps: []Step{hi, lo}}
	},
}

// Named returns a named profile (see Names). switchAfter times the switch of a profile with
// one (4to600); 0 makes it wait for Emulator.Advance.
func Named(name string, switchAfter time.Duration) (Profile, error) {
	f, ok := named[name]
	if !ok {
		return Profile{}, fmt.Errorf("linkemu: unknown profile %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	p := f(switchAfter)
	p.Name = name
	return p, nil
}
