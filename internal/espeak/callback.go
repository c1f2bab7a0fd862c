package espeak

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// fastrtcEspeakChunk is called by the C synthesis callback with the
// cgo.Handle of the running Synthesize call's state. It returns 1 to make
// libespeak-ng stop the synthesis, 0 to continue.
//
//export fastrtcEspeakChunk
func fastrtcEspeakChunk(handle C.uintptr_t, wav *C.short, n C.int) C.int {
	st, ok := cgo.Handle(handle).Value().(*synthState)
	if !ok {
		return 1
	}
	if st.chunk((*int16)(unsafe.Pointer(wav)), int(n)) {
		return 1
	}
	return 0
}
