// Command linkemu emulates a bad network link (delay, jitter, loss, a rate with a bounded
// queue, per direction) on a TUN device, for kernels without netem. It runs in a router
// network namespace whose forwarded traffic is policy-routed into the TUN (scripts/netem.sh
// builds that), until SIGTERM or SIGINT, then prints its counters as JSON on stdout.
//
//	linkemu -tun emu0 -down 10.211.2.0/24 [-up 10.211.1.0/24] -profile 1mbit [-seed 1]
//	linkemu -tun emu0 -down 10.211.2.2 -profile 4to600 -switch-after 20s
//	linkemu -list
//
// -down holds the destinations toward the client (the server's media goes that way); -up
// those toward the server (default: everything else). Profiles: perfect, loss5, jitter,
// 1mbit, 1mbit-down, 500kbit, 4to600 (-list describes them).
//
// Signals: SIGUSR1 moves to the profile's next step now (4to600 without -switch-after waits
// for it); SIGUSR2 records a snapshot of the counters (in "marks" of the final JSON), so
// that a harness can take the counters of its measured window.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/linkemu"
)

// mark is a snapshot taken on SIGUSR2.
type mark struct {
	At   float64          `json:"at_s"`
	Step int              `json:"step"`
	Down linkemu.Counters `json:"down"`
	Up   linkemu.Counters `json:"up"`
}

func main() {
	tun := flag.String("tun", "", "TUN device to attach to (created if missing)")
	down := flag.String("down", "", "comma-separated destinations toward the client: addresses or prefixes")
	up := flag.String("up", "", "comma-separated destinations toward the server (default: all others)")
	profile := flag.String("profile", "perfect", "link profile (-list)")
	switchAfter := flag.Duration("switch-after", 0, "when 4to600 switches, from the start (0: on SIGUSR1)")
	seed := flag.Uint64("seed", 1, "seed of the random loss and jitter")
	list := flag.Bool("list", false, "describe the profiles and exit")
	flag.Parse()
	if *list {
		for _, n := range linkemu.Names() {
			p, _ := linkemu.Named(n, *switchAfter)
			fmt.Println(p)
		}
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "linkemu:", err)
		os.Exit(1)
	}
	if *tun == "" || *down == "" {
		fail(fmt.Errorf("-tun and -down are required"))
	}
	p, err := linkemu.Named(*profile, *switchAfter)
	if err != nil {
		fail(err)
	}
	cfg := linkemu.Config{Profile: p, Seed: *seed}
	if cfg.Down, err = prefixes(*down); err != nil {
		fail(err)
	}
	if cfg.Up, err = prefixes(*up); err != nil {
		fail(err)
	}
	emu, err := linkemu.New(cfg)
	if err != nil {
		fail(err)
	}
	dev, err := linkemu.OpenTUN(*tun)
	if err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	var marks []mark
	marked := make(chan struct{})
	go func() {
		defer close(marked)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				st := emu.Stats()
				if s == syscall.SIGUSR1 {
					if emu.Advance() {
						st = emu.Stats()
						fmt.Fprintf(os.Stderr, "linkemu: %.1f s: step %d: down %v; up %v\n", st.Uptime, st.Step, st.Params[0], st.Params[1])
					} else {
						fmt.Fprintln(os.Stderr, "linkemu: SIGUSR1: no next step")
					}
					continue
				}
				marks = append(marks, mark{At: st.Uptime, Step: st.Step, Down: st.Down, Up: st.Up})
			}
		}
	}()
	fmt.Fprintf(os.Stderr, "linkemu: running on %s, %v\n", dev.Name(), p)
	start := time.Now()
	runErr := emu.Run(ctx, dev)
	stop()
	<-marked
	out := struct {
		linkemu.Stats
		Marks []mark `json:"marks,omitempty"`
		Error string `json:"error,omitempty"`
	}{Stats: emu.Stats(), Marks: marks}
	out.Uptime = time.Since(start).Seconds()
	if runErr != nil {
		out.Error = runErr.Error()
	}
	enc := json.NewEncoder(os.Stdout)
	_ = enc.Encode(out)
	if runErr != nil {
		fail(runErr)
	}
}

// prefixes parses "10.0.0.2,10.1.0.0/16" (a bare address is a /32).
func prefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
