package cmem

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func rssKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestTrim: memory malloc'd in small pieces (kept by glibc after free) goes back to the OS.
func TestTrim(t *testing.T) {
	const n, size = 20000, 4000 // 80 MB in pieces below the mmap threshold
	start := rssKB(t)
	ptrs := make([]unsafe.Pointer, n)
	for i := range ptrs {
		ptrs[i] = malloc(size)
		b := unsafe.Slice((*byte)(ptrs[i]), size)
		for j := range b {
			b[j] = byte(j)
		}
	}
	live := rssKB(t)
	for i := 0; i < n; i++ { // free all but the last: glibc cannot shrink the heap's top
		if i != n-1 {
			free(ptrs[i])
		}
	}
	before := rssKB(t)
	Trim()
	after := rssKB(t)
	free(ptrs[n-1])
	t.Logf("RSS at start %d kB, live %d kB, after free %d kB, after Trim %d kB", start, live, before, after)
	if after-start > 20_000 {
		t.Errorf("after Trim RSS is %d kB above the start (80 MB were allocated and freed)", after-start)
	}
}
