// Package vad is a voice activity detector: the classic WebRTC VAD (a GMM
// over six sub-band log energies, from Chromium's common_audio/vad), called
// through cgo from Debian's libwebrtc-audio-processing (0.3).
//
// The library exports the C API (WebRtcVad_Create, _Init, _set_mode,
// _Process, _Free) but ships no header for it, so the prototypes are
// declared here.
//
// The detector classifies single 10, 20 or 30 ms frames of mono int16 audio
// at 8, 16, 32 or 48 kHz. It adapts its noise model over time, so feed one
// stream's frames in order to one VAD. Input at 32 and 48 kHz is decimated
// internally to 8 kHz; 16 kHz, 20 ms frames are the usual choice.
//
// Measured on the espeak-ng fixtures in testdata/audio (every rate, frame
// length and mode): 94-100% of frames inside an utterance are called speech;
// no frame of digital silence is, nor of -60 dBFS white noise once the
// first ~120 ms of the stream have set the noise model (before that a few
// noise frames are called speech). Higher modes miss more speech onsets.
//
// # Concurrency
//
// A VAD is not safe for concurrent use; use one per stream. Distinct VADs
// share nothing.
//
// # Memory
//
// Each VAD owns a small C allocation (about 740 bytes) freed by Close,
// which is idempotent; an unreachable VAD is also freed by a runtime
// cleanup. IsSpeech does not allocate.
package vad

/*
#cgo pkg-config: webrtc-audio-processing
#include <stddef.h>
#include <stdint.h>

typedef struct WebRtcVadInst VadInst;
VadInst* WebRtcVad_Create(void);
void WebRtcVad_Free(VadInst* handle);
int WebRtcVad_Init(VadInst* handle);
int WebRtcVad_set_mode(VadInst* handle, int mode);
int WebRtcVad_Process(VadInst* handle, int fs, const int16_t* audio_frame, size_t frame_length);
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Aggressiveness modes for New and SetMode: higher modes call less audio
// speech (fewer false positives on noise, more missed quiet speech).
const (
	ModeQuality        = 0
	ModeLowBitrate     = 1
	ModeAggressive     = 2
	ModeVeryAggressive = 3
)

var (
	// ErrMode is returned for a mode outside 0..3.
	ErrMode = errors.New("vad: mode must be 0, 1, 2 or 3")
	// ErrFrame is returned for a sample rate other than 8, 16, 32 or 48 kHz,
	// or a frame that is not 10, 20 or 30 ms long at that rate.
	ErrFrame = errors.New("vad: frame must be 10, 20 or 30 ms of 8, 16, 32 or 48 kHz audio")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("vad: closed")
	// ErrInternal is returned when the library fails for another reason.
	ErrInternal = errors.New("vad: internal error")
)

// VAD is one WebRTC voice activity detector. It is not safe for concurrent use.
type VAD struct {
	inst    *C.VadInst
	mode    int
	cleanup runtime.Cleanup
}

// New creates a detector with aggressiveness mode 0 (least) to 3 (most).
func New(mode int) (*VAD, error) {
	if mode < 0 || mode > 3 {
		return nil, fmt.Errorf("vad: new: mode %d: %w", mode, ErrMode)
	}
	inst := C.WebRtcVad_Create()
	if inst == nil {
		return nil, fmt.Errorf("vad: new: %w: out of memory", ErrInternal)
	}
	v := &VAD{inst: inst, mode: mode}
	v.cleanup = runtime.AddCleanup(v, func(p *C.VadInst) { C.WebRtcVad_Free(p) }, inst)
	if err := v.Reset(); err != nil {
		v.Close()
		return nil, fmt.Errorf("vad: new: %w", err)
	}
	return v, nil
}

// ValidFrame reports whether n samples at sampleRate is a frame IsSpeech accepts.
func ValidFrame(sampleRate, n int) bool {
	switch sampleRate {
	case 8000, 16000, 32000, 48000:
	default:
		return false
	}
	ms10 := sampleRate / 100
	return n == ms10 || n == 2*ms10 || n == 3*ms10
}

// IsSpeech classifies one 10, 20 or 30 ms frame of mono audio at 8000,
// 16000, 32000 or 48000 Hz. Any other rate or length returns an error
// wrapping ErrFrame.
func (v *VAD) IsSpeech(sampleRate int, frame []int16) (bool, error) {
	if v.inst == nil {
		return false, ErrClosed
	}
	if !ValidFrame(sampleRate, len(frame)) {
		return false, fmt.Errorf("vad: %d samples at %d Hz: %w", len(frame), sampleRate, ErrFrame)
	}
	r := C.WebRtcVad_Process(v.inst, C.int(sampleRate), (*C.int16_t)(unsafe.Pointer(&frame[0])), C.size_t(len(frame)))
	switch r {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("vad: process returned %d: %w", int(r), ErrInternal)
}

// SetMode changes the aggressiveness (0..3) without resetting the
// detector's adaptation.
func (v *VAD) SetMode(mode int) error {
	if v.inst == nil {
		return ErrClosed
	}
	if mode < 0 || mode > 3 {
		return fmt.Errorf("vad: set mode %d: %w", mode, ErrMode)
	}
	if C.WebRtcVad_set_mode(v.inst, C.int(mode)) != 0 {
		return fmt.Errorf("vad: set mode %d: %w", mode, ErrInternal)
	}
	v.mode = mode
	return nil
}

// Mode returns the current aggressiveness mode.
func (v *VAD) Mode() int { return v.mode }

// Reset forgets the adapted noise and speech model (for a new stream),
// keeping the mode.
func (v *VAD) Reset() error {
	if v.inst == nil {
		return ErrClosed
	}
	if C.WebRtcVad_Init(v.inst) != 0 {
		return fmt.Errorf("vad: init: %w", ErrInternal)
	}
	if C.WebRtcVad_set_mode(v.inst, C.int(v.mode)) != 0 {
		return fmt.Errorf("vad: set mode %d: %w", v.mode, ErrInternal)
	}
	return nil
}

// Close frees the detector's C memory. It is idempotent.
func (v *VAD) Close() error {
	if v.inst != nil {
		v.cleanup.Stop()
		C.WebRtcVad_Free(v.inst)
		v.inst = nil
	}
	return nil
}
