package fastrtc

import "github.com/fastrtc-go/fastrtc/internal/cmem"

// LimitMallocArenas caps the C allocator's arenas for the whole process at n (glibc's
// M_ARENA_MAX), unless the operator set MALLOC_ARENA_MAX in the environment, which then
// wins. Call it once from main, before the first Stream starts sessions; the examples and
// cmd/e2eserver do, with n = 1. Nothing in this package calls it for you.
//
// Why: the C codecs (libvpx, libopus) allocate on whichever threads cgo uses, and glibc
// gives each thread its own arena (up to 8 per core), whose freed memory it never returns.
// Measured here, RSS grew by 80 MB over 20 rounds of 8 parallel video sessions with the
// default and stayed flat with one arena (./scripts/soak.sh prints the figures). The codecs
// allocate when a session starts, not per frame, so one arena costs no measurable
// contention. It affects every C allocation of the process, and only arenas created after
// the call. (Each session's end also asks glibc to return free pages, malloc_trim, which
// changes no setting.)
func LimitMallocArenas(n int) { cmem.LimitArenas(n) }
