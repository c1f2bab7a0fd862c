package fastrtc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// guardDeadlock turns a hung test into a fast, readable failure. If the test (and its
// cleanups registered before this call) is still running d after the call, it writes every
// goroutine's stack to stderr, marks the test failed with t.Errorf, and then panics, which
// ends the test binary: the only way to stop a test whose goroutine is blocked, since
// t.FailNow/t.Fatalf must be called from the test's own goroutine, and that goroutine is the
// one that is stuck. The panic names the test, so `go test` output reads
//
//	guardDeadlock: TestX still running after 30s (goroutine stacks above)
//
// with the full dump just before it, instead of the package timeout's dump 15 minutes later.
// The guard is cancelled by t.Cleanup; cleanups run last-in first-out, so a guard set at the
// start of a test also covers the cleanups registered after it (Stream.Close and friends,
// where hangs tend to show). The stacks go straight to stderr because a running test's
// t.Log output is held back until it ends (without -v), and this test will not end.
//
// d is shortened to end 5 s before the -timeout deadline when that comes first, so that the
// guard, not the package timeout, reports the hang.
func guardDeadlock(t testing.TB, d time.Duration) {
	t.Helper()
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := dl.Deadline(); ok {
			if left := time.Until(deadline) - 5*time.Second; left > 0 && left < d {
				d = left
			}
		}
	}
	var (
		mu   sync.Mutex
		done bool
	)
	name := t.Name()
	timer := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if done { // the test ended just as the timer fired
			return
		}
		stacks := allStacks()
		fmt.Fprintf(os.Stderr, "\n=== guardDeadlock: %s still running after %v; all goroutines:\n%s\n", name, d, stacks)
		// Errorf is safe from any goroutine while the test has not completed, and it has not:
		// its cleanup (below) would have set done first, under mu.
		t.Errorf("guardDeadlock: still running after %v (deadlock or hang; goroutine stacks on stderr)", d)
		panic(fmt.Sprintf("guardDeadlock: %s still running after %v (goroutine stacks above)", name, d))
	})
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
		timer.Stop()
	})
}

// allStacks returns runtime.Stack(all), grown until it fits.
func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestGuardDeadlockQuiet: a test that ends in time is not disturbed, and the timer is gone.
func TestGuardDeadlockQuiet(t *testing.T) {
	t.Parallel()
	t.Run("inner", func(t *testing.T) {
		guardDeadlock(t, 50*time.Millisecond)
	})
	time.Sleep(100 * time.Millisecond) // past the inner guard's d: it must not fire
}

// guardHelperEnv makes TestGuardDeadlockFires's child process run the hanging test.
const guardHelperEnv = "FASTRTC_GUARD_HELPER"

// TestGuardDeadlockHang hangs on purpose; it runs only in TestGuardDeadlockFires's child.
func TestGuardDeadlockHang(t *testing.T) {
	if os.Getenv(guardHelperEnv) != "1" {
		t.Skip("helper for TestGuardDeadlockFires")
	}
	guardDeadlock(t, 200*time.Millisecond)
	stuck := make(chan struct{})
	go func() { guardStuckHere(stuck) }()
	<-stuck // never closed
}

//go:noinline
func guardStuckHere(ch chan struct{}) { <-ch }

// TestGuardDeadlockFires runs TestGuardDeadlockHang in a child test binary: it must end
// quickly, failed, with the stacks of every goroutine (the stuck one included) and the
// test's name.
func TestGuardDeadlockFires(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a child test binary")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGuardDeadlockHang$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), guardHelperEnv+"=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child passed; want a failure. Output:\n%s", out)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("child took %v; the guard should end it after ~200ms", el)
	}
	for _, want := range []string{
		"guardDeadlock: TestGuardDeadlockHang still running after 200ms",
		"goroutine ",
		"guardStuckHere",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}
