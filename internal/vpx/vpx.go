// Package vpx is a cgo wrapper over libvpx's VP8 encoder and decoder, tuned for real-time
// (WebRTC) use.
//
// The Decoder turns complete compressed VP8 frames (as rebuilt from RTP by package
// internal/vp8rtp) into 4:2:0 pictures without copying them out of libvpx. The Encoder turns
// 4:2:0 pictures into VP8 frames with libvpx's real-time settings: one pass, constant bit
// rate, error resilient, no look-ahead and no alt-ref frames, so every input picture is
// encoded immediately.
//
// # Concurrency
//
// A Decoder or an Encoder must be used by one goroutine at a time (or with external
// locking); distinct values are independent and may be used concurrently.
//
// # Memory
//
// Both types own C memory that is released by Close. Close is idempotent. As a safety net
// the memory is also released when an unreachable, unclosed value is garbage collected, but
// callers should not rely on it.
//
// Building requires libvpx's development files (Debian: libvpx-dev) and pkg-config.
package vpx

/*
#cgo pkg-config: vpx
#include "frvpx.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by the error Decoder.Decode returns for a frame that libvpx could
// not decode: truncated or damaged data, an inter frame without a preceding key frame, or a
// picture that references damaged data. Test for it with errors.Is.
var ErrCorrupt = errors.New("vpx: corrupt frame")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("vpx: use of closed codec")

// Error describes a failed libvpx call.
type Error struct {
	// Op is the operation that failed, such as "decode" or "encoder init".
	Op string
	// Code is libvpx's vpx_codec_err_t value.
	Code int
	// Msg is libvpx's description of Code.
	Msg string
	// Detail is libvpx's additional error detail, if any.
	Detail string

	corrupt bool
}

// Error implements the error interface.
func (e *Error) Error() string {
	s := "vpx: " + e.Op + ": " + e.Msg
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns ErrCorrupt for errors caused by undecodable input, nil otherwise.
func (e *Error) Unwrap() error {
	if e.corrupt {
		return ErrCorrupt
	}
	return nil
}

// codecError builds an *Error from a libvpx return code. If withDetail is set, ctx must be an
// initialised context whose error detail may be read.
func codecError(op string, ctx *C.vpx_codec_ctx_t, rc C.vpx_codec_err_t, withDetail, corrupt bool) error {
	e := &Error{Op: op, Code: int(rc), Msg: C.GoString(C.vpx_codec_err_to_string(rc)), corrupt: corrupt}
	if withDetail && ctx != nil {
		if d := C.vpx_codec_error_detail(ctx); d != nil {
			e.Detail = C.GoString(d)
		}
	}
	return e
}

// Version returns the version string of the libvpx library in use.
func Version() string {
	return C.GoString(C.vpx_codec_version_str())
}

func errNoMemory(what string) error {
	return fmt.Errorf("vpx: %s: cannot allocate C memory", what)
}
