// Package espeak is text to speech in the same process: it wraps
// libespeak-ng (Debian's libespeak-ng-dev, 1.51) through cgo and streams
// the synthesised audio, mono signed 16-bit PCM at SampleRate (22050 Hz),
// to a Go callback chunk by chunk as the synthesiser produces it.
//
// An Engine holds a voice, a speaking rate and a pitch. Voices are eSpeak
// NG voice names or file names ("en-us", "en", "de", "en-us+f3" for a
// variant) or, failing that, language tags matched against the installed
// voices ("en-gb", "fr-fr"), as the espeak-ng command's -v option accepts.
// Language matching falls back from a dialect to its language, so a
// misspelt name may still find a voice ("no-such-voice" speaks Norwegian);
// only a tag matching no language at all yields ErrVoice.
//
// libespeak-ng synthesises a short sentence in about a millisecond on a
// current x86-64 core (a real-time factor near 0.001; see
// BenchmarkSynthesize), so serialising all synthesis behind one lock (see
// Concurrency) costs little at conversational rates.
//
// # Concurrency
//
// libespeak-ng keeps its whole state (current voice, parameters, output
// buffer, synthesis callback) in process-wide C globals and is not thread
// safe. This package therefore has the only package-level state it
// allows itself: a sync.Once that initialises the library the first time
// New is called (espeak_ng_InitializePath, espeak_ng_Initialize,
// espeak_ng_InitializeOutput in synchronous mode, espeak_SetSynthCallback),
// and a process-wide mutex that serialises every call into the library.
// Each Synthesize call takes the mutex, selects its Engine's voice, rate
// and pitch, and synthesises the whole text before releasing it: Engines
// may be used from any number of goroutines and share nothing visible,
// but syntheses run one at a time in the process. Selecting a voice costs
// 0.1-1 ms once its data is cached by the library (30 ms the first time).
//
// An Engine is safe for concurrent use. fn is called on the goroutine that
// called Synthesize, with the library lock held: it must not call New or
// Synthesize (that deadlocks), and a slow fn delays every other Engine in
// the process. Hand the audio to a channel or buffer if the
// consumer is slow.
//
// No other code in the process may use libespeak-ng directly. Initialising
// the library also sets the C locale's LC_CTYPE to C.UTF-8
// (libespeak-ng's own setlocale call), which affects other C code in the
// process; Go code is unaffected.
//
// # Memory
//
// The library's data (phoneme tables, the current voice and its
// dictionary, a 60 ms output buffer: measured at under 3 MB of RSS) is
// loaded once and kept for the life of the process; the library is never
// terminated, since another Engine may be created later. Initialisation
// also starts one idle C thread (libespeak-ng's queue for asynchronous
// mode, unused here). An Engine owns no C memory: Close only marks it
// closed and is idempotent. Each Synthesize call allocates a C copy of the
// text (freed before it returns) and a Go slice per chunk handed to fn,
// which fn may keep.
package espeak

/*
#cgo pkg-config: espeak-ng
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>

// Defined in callback.go.
extern int fastrtcEspeakChunk(uintptr_t handle, short *wav, int n);

// fastrtc_espeak_cb is the process-wide synthesis callback. In synchronous
// mode libespeak-ng calls it on the thread running espeak_ng_Synthesize;
// every event list (at least its terminator) carries the user_data given
// to that call, which is a cgo.Handle.
static int fastrtc_espeak_cb(short *wav, int n, espeak_EVENT *events) {
	if (events == NULL) {
		return 1;
	}
	return fastrtcEspeakChunk((uintptr_t)events[0].user_data, wav, n);
}

static espeak_ng_STATUS fastrtc_espeak_init(void) {
	espeak_ng_ERROR_CONTEXT ctx = NULL;
	espeak_ng_InitializePath(NULL);
	espeak_ng_STATUS s = espeak_ng_Initialize(&ctx);
	espeak_ng_ClearErrorContext(&ctx);
	if (s != ENS_OK) {
		return s;
	}
	s = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, 0, NULL);
	if (s != ENS_OK) {
		return s;
	}
	espeak_SetSynthCallback(fastrtc_espeak_cb);
	return ENS_OK;
}

// fastrtc_espeak_voice selects a voice by name or file name, else by
// language as the espeak-ng command does.
static espeak_ng_STATUS fastrtc_espeak_voice(const char *name) {
	espeak_ng_STATUS s = espeak_ng_SetVoiceByName(name);
	if (s != ENS_VOICE_NOT_FOUND) {
		return s;
	}
	espeak_VOICE sel;
	memset(&sel, 0, sizeof(sel));
	sel.languages = name;
	return espeak_ng_SetVoiceByProperties(&sel);
}

static espeak_ng_STATUS fastrtc_espeak_synth(const char *text, size_t size, uintptr_t handle) {
	return espeak_ng_Synthesize(text, size, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, (void *)handle);
}

static void fastrtc_espeak_message(espeak_ng_STATUS s, char *buf, size_t n) {
	buf[0] = 0;
	espeak_ng_GetStatusCodeMessage(s, buf, n);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultVoice          = "en-us"
	DefaultWordsPerMinute = 175
	// DefaultPitch is eSpeak's neutral base pitch on its 0-100 scale.
	DefaultPitch = 50
)

// Limits of Options.WordsPerMinute (espeakRATE_MINIMUM, espeakRATE_MAXIMUM).
const (
	MinWordsPerMinute = int(C.espeakRATE_MINIMUM)
	MaxWordsPerMinute = int(C.espeakRATE_MAXIMUM)
)

var (
	// ErrInit is returned by New when libespeak-ng cannot be initialised
	// (typically its espeak-ng-data directory is missing).
	ErrInit = errors.New("espeak: cannot initialise libespeak-ng")
	// ErrVoice is returned by New for a voice the library cannot find.
	ErrVoice = errors.New("espeak: voice not found")
	// ErrOption is returned by New for an out-of-range option.
	ErrOption = errors.New("espeak: invalid option")
	// ErrSynthesis is returned by Synthesize when the library fails.
	ErrSynthesis = errors.New("espeak: synthesis failed")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("espeak: engine is closed")
)

// Process-wide library state (see the package documentation): the
// one-time initialisation and the lock serialising every library call.
var (
	libOnce sync.Once
	libErr  error
	libRate int
	libMu   sync.Mutex
)

// initLib initialises libespeak-ng once per process.
func initLib() error {
	libOnce.Do(func() {
		libMu.Lock()
		defer libMu.Unlock()
		if s := C.fastrtc_espeak_init(); s != C.ENS_OK {
			libErr = fmt.Errorf("%w: %s", ErrInit, statusMessage(s))
			return
		}
		libRate = int(C.espeak_ng_GetSampleRate())
	})
	return libErr
}

// statusMessage returns libespeak-ng's text for a status code.
func statusMessage(s C.espeak_ng_STATUS) string {
	var buf [256]C.char
	C.fastrtc_espeak_message(s, &buf[0], C.size_t(len(buf)))
	msg := C.GoString(&buf[0])
	if msg == "" {
		msg = fmt.Sprintf("status %#x", uint32(s))
	}
	return msg
}

// Options configures an Engine. Zero fields take the defaults.
type Options struct {
	// Voice is an eSpeak NG voice name, file name or language tag
	// (default "en-us"), optionally with a "+variant" suffix.
	Voice string
	// WordsPerMinute is the speaking rate, 80 to 450 (default 175).
	WordsPerMinute int
	// Pitch is the base pitch on eSpeak's 0-100 scale; 0 selects the
	// default, 50.
	Pitch int
}

// Engine synthesises speech with one voice, rate and pitch. It is safe for
// concurrent use; see the package documentation for how syntheses are
// serialised.
type Engine struct {
	name   string
	rate   int
	pitch  int
	closed atomic.Bool
}

// New initialises libespeak-ng if this is the first Engine of the process
// and returns an Engine with the given options, after checking that the
// voice exists.
func New(opts Options) (*Engine, error) {
	if opts.Voice == "" {
		opts.Voice = DefaultVoice
	}
	if opts.WordsPerMinute == 0 {
		opts.WordsPerMinute = DefaultWordsPerMinute
	}
	if opts.Pitch == 0 {
		opts.Pitch = DefaultPitch
	}
	if opts.WordsPerMinute < MinWordsPerMinute || opts.WordsPerMinute > MaxWordsPerMinute {
		return nil, fmt.Errorf("espeak: new: %d words per minute (want %d-%d): %w",
			opts.WordsPerMinute, MinWordsPerMinute, MaxWordsPerMinute, ErrOption)
	}
	if opts.Pitch < 0 || opts.Pitch > 100 {
		return nil, fmt.Errorf("espeak: new: pitch %d (want 0-100): %w", opts.Pitch, ErrOption)
	}
	if strings.IndexByte(opts.Voice, 0) >= 0 {
		return nil, fmt.Errorf("espeak: new: voice %q: %w", opts.Voice, ErrOption)
	}
	if err := initLib(); err != nil {
		return nil, fmt.Errorf("espeak: new: %w", err)
	}
	e := &Engine{name: opts.Voice, rate: opts.WordsPerMinute, pitch: opts.Pitch}
	libMu.Lock()
	err := e.apply()
	libMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("espeak: new: %w", err)
	}
	return e, nil
}

// apply selects e's voice and parameters in the library. libMu must be held.
func (e *Engine) apply() error {
	cv := C.CString(e.name)
	defer C.free(unsafe.Pointer(cv))
	if s := C.fastrtc_espeak_voice(cv); s != C.ENS_OK {
		if s == C.ENS_VOICE_NOT_FOUND {
			return fmt.Errorf("voice %q: %w", e.name, ErrVoice)
		}
		return fmt.Errorf("voice %q: %w: %s", e.name, ErrSynthesis, statusMessage(s))
	}
	if s := C.espeak_ng_SetParameter(C.espeakRATE, C.int(e.rate), 0); s != C.ENS_OK {
		return fmt.Errorf("rate %d: %w: %s", e.rate, ErrSynthesis, statusMessage(s))
	}
	if s := C.espeak_ng_SetParameter(C.espeakPITCH, C.int(e.pitch), 0); s != C.ENS_OK {
		return fmt.Errorf("pitch %d: %w: %s", e.pitch, ErrSynthesis, statusMessage(s))
	}
	return nil
}

// Voice returns the voice the Engine was created with.
func (e *Engine) Voice() string { return e.name }

// SampleRate returns the sample rate of the synthesised audio in Hz
// (22050 for the voices shipped with espeak-ng).
func (e *Engine) SampleRate() int { return libRate }

// synthState is what the C callback reaches through its cgo.Handle.
type synthState struct {
	ctx      context.Context
	fn       func(pcm []int16) bool
	err      error // ctx.Err() if cancellation stopped the synthesis
	stopped  bool  // fn returned false
	panic    any   // a panic raised by fn, re-raised by Synthesize
	panicked bool
}

// Synthesize speaks text (UTF-8; SSML is not interpreted) and passes the
// audio, mono int16 at SampleRate, to fn chunk by chunk (up to 60 ms per
// chunk) as the synthesiser produces it. Each chunk is a fresh slice that
// fn may keep. fn returning false stops the synthesis and Synthesize
// returns nil; ctx being cancelled stops it before the next chunk and
// Synthesize returns ctx.Err(). A panic in fn stops the synthesis and is
// re-raised once the library is idle again.
//
// Synthesize blocks until any other synthesis in the process finishes
// (see the package documentation). fn must not call New or Synthesize.
func (e *Engine) Synthesize(ctx context.Context, text string, fn func(pcm []int16) bool) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if fn == nil {
		return fmt.Errorf("espeak: synthesize: nil callback: %w", ErrOption)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	st := &synthState{ctx: ctx, fn: fn}
	h := cgo.NewHandle(st)
	defer h.Delete()

	libMu.Lock()
	err := e.apply()
	var s C.espeak_ng_STATUS
	if err == nil {
		s = C.fastrtc_espeak_synth(ctext, C.size_t(len(text)+1), C.uintptr_t(h))
	}
	libMu.Unlock()

	switch {
	case st.panicked:
		panic(st.panic)
	case err != nil:
		return fmt.Errorf("espeak: synthesize: %w", err)
	case st.err != nil:
		return st.err
	case st.stopped:
		return nil
	case s != C.ENS_OK:
		return fmt.Errorf("espeak: synthesize: %w: %s", ErrSynthesis, statusMessage(s))
	}
	return nil
}

// chunk handles one buffer from the synthesis callback and reports whether
// the synthesis should stop.
func (st *synthState) chunk(wav *int16, n int) (stop bool) {
	if err := st.ctx.Err(); err != nil {
		st.err = err
		return true
	}
	if wav == nil || n <= 0 {
		return false
	}
	pcm := make([]int16, n)
	copy(pcm, unsafe.Slice(wav, n))
	defer func() {
		if r := recover(); r != nil {
			st.panic, st.panicked = r, true
			stop = true
		}
	}()
	if !st.fn(pcm) {
		st.stopped = true
		return true
	}
	return false
}

// Close marks the Engine closed; later calls return ErrClosed, while a
// synthesis already running completes. It is idempotent. The library's
// process-wide data stays loaded (see Memory in the package documentation).
func (e *Engine) Close() error {
	e.closed.Store(true)
	return nil
}
