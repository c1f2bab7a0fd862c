package fastrtc

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every session's goroutines
// (pion's included) must end with it. Each test's cleanup also checks that its Stream has no
// session and no codec context left.
//
// Most tests call t.Parallel: they wait on the network and on real time far more than they
// compute, so they run minParallel at a time even on a machine of fewer cores (unless
// -parallel is given). Tests that measure the whole process (its heap, its goroutines by
// function, its UDP sockets) do not: they run first, alone, before any parallel test.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit && runtime.GOMAXPROCS(0) < minParallel {
		_ = flag.Set("test.parallel", strconv.Itoa(minParallel))
	}
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// minParallel is the least number of parallel tests run at once by default (TestMain).
const minParallel = 4
