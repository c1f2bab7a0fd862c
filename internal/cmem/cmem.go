// Package cmem gives memory that C libraries (libvpx, libopus) freed back to the operating
// system. glibc keeps freed memory in its per-thread arenas; cgo calls run on many threads,
// so after sessions end the process keeps tens of megabytes it no longer uses unless asked
// to trim them.
package cmem

/*
#include <malloc.h>
#include <stdlib.h>
*/
import "C"

import "unsafe"

// Trim returns the C allocator's free memory to the operating system (glibc malloc_trim):
// free pages of every arena are released, not only those at the top of the heap. It takes
// a fraction of a millisecond to a few milliseconds, and is safe to call from any goroutine.
func Trim() { C.malloc_trim(0) }

// malloc and free are for the package's tests (cgo is not allowed in test files).
func malloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }
func free(p unsafe.Pointer)       { C.free(p) }
