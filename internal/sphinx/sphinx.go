// Package sphinx is speech to text in the same process: it wraps
// CMU PocketSphinx (Debian's libpocketsphinx-dev, the 5prealpha API,
// with libsphinxbase) through cgo, for whole utterances (Transcribe), for
// streaming audio (Start, Process, Partial, End), and for keyword
// spotting (Config.Keyphrase).
//
// Input is mono signed 16-bit PCM at 16 kHz, the rate of the acoustic
// model Debian ships (pocketsphinx-en-us, a 16 kHz phonetically tied
// mixture model). 8 kHz is not supported: the model's feat.params fixes the mel
// filter bank's upper edge at 6800 Hz and overrides any -upperf given,
// so -samprate 8000 cannot produce features the model was trained on;
// resample telephone audio to 16 kHz first.
//
// Recognition uses the general English trigram model (en-us.lm.bin) and
// the 134k-word CMU dictionary. It is far from a modern recogniser: on
// espeak-ng's Klatt voice (en-us+klatt) the tests measure 70% word
// accuracy on short command sentences (80% streamed), and on espeak-ng's
// default voice only about 10%. Keyword spotting is the robust mode for
// fixed phrases; a spotted keyphrase is reported only once 100 ms of audio
// (-kws_delay, 10 frames) have followed it, so end an utterance with a
// little non-speech. Decoding runs at about 0.14 times real time on one
// x86-64 core (BenchmarkTranscribe).
//
// # Concurrency
//
// A Decoder is not safe for concurrent use: use one per stream and
// serialise calls, including Close. Distinct Decoders share no mutable
// state and may run in parallel on different goroutines.
//
// libsphinxbase logs through one process-wide FILE pointer, and its -logfn
// option (err_set_logfile) replaces and fcloses that pointer, which would
// race with another decoder logging at the same moment. So this package
// never passes -logfn: instead, the first New in the process disables the
// library's logging once (err_set_logfp(NULL), guarded by a sync.Once, the
// package's only global state). No other code in the process should
// re-enable it. The library calls exit() on a few fatal conditions
// (E_FATAL, for example a corrupt model file); New checks that the model
// files exist first but cannot guard against corrupt ones.
//
// # Memory and cost
//
// A Decoder owns the loaded models in C memory. Measured with the Debian
// English model on an x86-64 core (TestInitCost, in a fresh process): New
// takes 0.5-0.8 s and raises the process RSS by about 91 MB (the trigram
// model and its search structures, the dictionary, and the acoustic
// model, part of which is memory-mapped); keyword spotting loads no language
// model: about 0.2 s and 27 MB. Create decoders once and reuse them across
// utterances. Close frees everything (ps_free, then cmd_ln_free_r on the
// configuration; valgrind reports no leak) and then calls glibc's
// malloc_trim, since the models are some 800,000 small allocations whose
// freed pages malloc would otherwise keep (about 30-90 MB per closed
// decoder, depending on which threads allocated it). Close is idempotent;
// a Decoder that becomes unreachable without Close is freed the same way
// by a runtime cleanup. The decoding calls allocate no Go memory except
// the returned strings.
package sphinx

/*
#cgo pkg-config: pocketsphinx
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <sphinxbase/cmd_ln.h>
#include <sphinxbase/ckd_alloc.h>

// fastrtc_sphinx_has_word reports whether word is in the decoder's dictionary.
static int fastrtc_sphinx_has_word(ps_decoder_t *ps, const char *word) {
	char *phones = ps_lookup_word(ps, word);
	if (phones == NULL) {
		return 0;
	}
	ckd_free(phones);
	return 1;
}

static cmd_ln_t *fastrtc_sphinx_config(int argc, char **argv) {
	return cmd_ln_parse_r(NULL, ps_args(), argc, argv, TRUE);
}

static void fastrtc_sphinx_quiet(void) {
	err_set_logfp(NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Paths of Debian's pocketsphinx-en-us model, used by DefaultConfig.
const (
	DebianModelDir = "/usr/share/pocketsphinx/model/en-us"
	debianHMM      = DebianModelDir + "/en-us"
	debianLM       = DebianModelDir + "/en-us.lm.bin"
	debianDict     = DebianModelDir + "/cmudict-en-us.dict"
)

// SampleRate is the only input sample rate supported, in Hz.
const SampleRate = 16000

var (
	// ErrNoModel is returned when a model file or directory is missing.
	ErrNoModel = errors.New("sphinx: model not found")
	// ErrConfig is returned for an invalid Config.
	ErrConfig = errors.New("sphinx: invalid configuration")
	// ErrInit is returned when PocketSphinx fails to load the models.
	ErrInit = errors.New("sphinx: decoder initialisation failed")
	// ErrState is returned for a call out of order: Process or End without
	// Start, Start or Transcribe during an utterance.
	ErrState = errors.New("sphinx: call out of order")
	// ErrDecode is returned when PocketSphinx fails while decoding.
	ErrDecode = errors.New("sphinx: decoding failed")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("sphinx: decoder is closed")
)

// quietOnce disables libsphinxbase's process-wide logging (see the package
// documentation).
var quietOnce sync.Once

// Config selects the models and the search mode of a Decoder.
type Config struct {
	// HMM is the acoustic model directory (containing mdef, means, ...).
	HMM string
	// LM is the n-gram language model (ARPA or binary). It is not loaded
	// when Keyphrase is set.
	LM string
	// Dict is the pronunciation dictionary.
	Dict string
	// Keyphrase, when set, switches the decoder to keyword spotting: the
	// hypothesis is the keyphrase when it is heard, otherwise empty.
	// Every word must be in Dict.
	Keyphrase string
	// KeyphraseThreshold is the detection threshold for the ratio
	// p(keyphrase)/p(alternatives), typically 1e-50 (more detections,
	// more false alarms) to 1e-10 for multi-word phrases; 0 selects
	// DefaultKeyphraseThreshold.
	KeyphraseThreshold float64
	// SampleRate is the input rate in Hz; 0 or 16000 (the only rate
	// supported).
	SampleRate int
}

// DefaultKeyphraseThreshold is the keyword spotting threshold used when
// Config.KeyphraseThreshold is 0, chosen for two- or three-word phrases:
// on espeak-ng speech "hello computer" is missed at 1e-30, found in some
// sentences at 1e-40 and in all the tests' at 1e-50, with no false alarm
// on unrelated sentences even at 1e-200. Tune it on real recordings of
// the phrase.
const DefaultKeyphraseThreshold = 1e-50

// DefaultConfig returns the configuration for Debian's English model
// (package pocketsphinx-en-us) at 16 kHz, or an error wrapping ErrNoModel
// if it is not installed.
func DefaultConfig() (Config, error) {
	c := Config{HMM: debianHMM, LM: debianLM, Dict: debianDict, SampleRate: SampleRate}
	if err := c.checkFiles(); err != nil {
		return Config{}, fmt.Errorf("sphinx: default config: %w", err)
	}
	return c, nil
}

// checkFiles reports a missing model file as ErrNoModel.
func (c Config) checkFiles() error {
	check := func(what, path string, dir bool) error {
		if path == "" {
			return fmt.Errorf("%w: no %s path", ErrNoModel, what)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNoModel, what, err)
		}
		if fi.IsDir() != dir {
			return fmt.Errorf("%w: %s %s: wrong file type", ErrNoModel, what, path)
		}
		return nil
	}
	if err := check("acoustic model", c.HMM, true); err != nil {
		return err
	}
	if err := check("acoustic model definition", filepath.Join(c.HMM, "mdef"), false); err != nil {
		return err
	}
	if err := check("dictionary", c.Dict, false); err != nil {
		return err
	}
	if c.Keyphrase == "" {
		return check("language model", c.LM, false)
	}
	return nil
}

// args returns the PocketSphinx command-line arguments for c.
func (c Config) args() ([]string, error) {
	for _, s := range []string{c.HMM, c.LM, c.Dict, c.Keyphrase} {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("%w: NUL byte in %q", ErrConfig, s)
		}
	}
	if c.SampleRate != 0 && c.SampleRate != SampleRate {
		return nil, fmt.Errorf("%w: sample rate %d Hz (only %d supported)", ErrConfig, c.SampleRate, SampleRate)
	}
	if c.KeyphraseThreshold < 0 || c.KeyphraseThreshold > 1 {
		return nil, fmt.Errorf("%w: keyphrase threshold %g (want 0-1)", ErrConfig, c.KeyphraseThreshold)
	}
	args := []string{"-hmm", c.HMM, "-dict", c.Dict, "-samprate", strconv.Itoa(SampleRate)}
	if kp := strings.Join(strings.Fields(strings.ToLower(c.Keyphrase)), " "); kp != "" {
		th := c.KeyphraseThreshold
		if th == 0 {
			th = DefaultKeyphraseThreshold
		}
		args = append(args, "-keyphrase", kp, "-kws_threshold", strconv.FormatFloat(th, 'g', -1, 64))
	} else if c.Keyphrase != "" {
		return nil, fmt.Errorf("%w: blank keyphrase", ErrConfig)
	} else {
		args = append(args, "-lm", c.LM)
	}
	return args, nil
}

// handles is what a Decoder's runtime cleanup frees.
type handles struct {
	ps  *C.ps_decoder_t
	cfg *C.cmd_ln_t
}

func (h handles) free() {
	C.ps_free(h.ps)
	C.cmd_ln_free_r(h.cfg)
	C.malloc_trim(0)
}

// Decoder is one PocketSphinx decoder (ps_decoder_t). It is not safe for
// concurrent use.
type Decoder struct {
	h       handles
	kws     bool
	inUtt   bool
	cleanup runtime.Cleanup
}

// New loads the models named by c and returns a decoder ready for an
// utterance. It is slow (see Memory and cost in the package documentation).
func New(c Config) (*Decoder, error) {
	args, err := c.args()
	if err != nil {
		return nil, fmt.Errorf("sphinx: new: %w", err)
	}
	if err := c.checkFiles(); err != nil {
		return nil, fmt.Errorf("sphinx: new: %w", err)
	}
	quietOnce.Do(func() { C.fastrtc_sphinx_quiet() })

	argv := make([]*C.char, len(args))
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	// cmd_ln_parse_r copies the strings. argv itself is Go memory holding
	// C pointers only, which cgo allows passing for the call's duration.
	cfg := C.fastrtc_sphinx_config(C.int(len(argv)), &argv[0])
	for _, p := range argv {
		C.free(unsafe.Pointer(p))
	}
	if cfg == nil {
		return nil, fmt.Errorf("sphinx: new: %w: arguments %q rejected", ErrConfig, args)
	}
	ps := C.ps_init(cfg)
	if ps == nil {
		C.cmd_ln_free_r(cfg)
		return nil, fmt.Errorf("sphinx: new: %w (hmm %s, dict %s, lm %s, keyphrase %q)", ErrInit, c.HMM, c.Dict, c.LM, c.Keyphrase)
	}
	d := &Decoder{h: handles{ps: ps, cfg: cfg}, kws: c.Keyphrase != ""}
	d.cleanup = runtime.AddCleanup(d, handles.free, d.h)
	// PocketSphinx silently drops a keyphrase word missing from the
	// dictionary, which would make the phrase undetectable.
	for _, w := range strings.Fields(strings.ToLower(c.Keyphrase)) {
		cw := C.CString(w)
		ok := C.fastrtc_sphinx_has_word(ps, cw) != 0
		C.free(unsafe.Pointer(cw))
		if !ok {
			d.Close()
			return nil, fmt.Errorf("sphinx: new: %w: keyphrase word %q is not in the dictionary %s", ErrConfig, w, c.Dict)
		}
	}
	return d, nil
}

// SampleRate returns the input sample rate in Hz (16000).
func (d *Decoder) SampleRate() int { return SampleRate }

// KeywordSpotting reports whether the decoder spots Config.Keyphrase
// rather than transcribing with the language model.
func (d *Decoder) KeywordSpotting() bool { return d.kws }

// Transcribe decodes pcm, one whole utterance of 16 kHz mono audio, and
// returns the recognised words separated by single spaces, or "" if
// nothing was recognised (for keyword spotting: the keyphrase if it was
// heard, else ""). Whole-utterance decoding normalises the cepstrum over
// the utterance (batch CMN), while streaming uses a running estimate that
// carries over from one utterance to the next; on the test fixtures
// streaming was slightly more accurate.
func (d *Decoder) Transcribe(pcm []int16) (string, error) {
	if d.h.ps == nil {
		return "", ErrClosed
	}
	if d.inUtt {
		return "", fmt.Errorf("sphinx: transcribe: %w: utterance in progress", ErrState)
	}
	if C.ps_start_utt(d.h.ps) < 0 {
		return "", fmt.Errorf("sphinx: transcribe: start: %w", ErrDecode)
	}
	if len(pcm) > 0 {
		if C.ps_process_raw(d.h.ps, (*C.int16)(unsafe.Pointer(&pcm[0])), C.size_t(len(pcm)), 0, 1) < 0 {
			C.ps_end_utt(d.h.ps)
			return "", fmt.Errorf("sphinx: transcribe: process: %w", ErrDecode)
		}
	}
	if C.ps_end_utt(d.h.ps) < 0 {
		return "", fmt.Errorf("sphinx: transcribe: end: %w", ErrDecode)
	}
	return d.hyp(), nil
}

// Start begins a streamed utterance.
func (d *Decoder) Start() error {
	if d.h.ps == nil {
		return ErrClosed
	}
	if d.inUtt {
		return fmt.Errorf("sphinx: start: %w: utterance in progress", ErrState)
	}
	if C.ps_start_utt(d.h.ps) < 0 {
		return fmt.Errorf("sphinx: start: %w", ErrDecode)
	}
	d.inUtt = true
	return nil
}

// Process decodes the next block of the streamed utterance (16 kHz mono;
// any length, typically 20-100 ms).
func (d *Decoder) Process(pcm []int16) error {
	if d.h.ps == nil {
		return ErrClosed
	}
	if !d.inUtt {
		return fmt.Errorf("sphinx: process: %w: no utterance started", ErrState)
	}
	if len(pcm) == 0 {
		return nil
	}
	if C.ps_process_raw(d.h.ps, (*C.int16)(unsafe.Pointer(&pcm[0])), C.size_t(len(pcm)), 0, 0) < 0 {
		return fmt.Errorf("sphinx: process: %w", ErrDecode)
	}
	return nil
}

// Partial returns the current best hypothesis of the streamed utterance
// ("" if none yet, or after Close). For keyword spotting it is the
// keyphrase once it has been detected.
func (d *Decoder) Partial() string {
	if d.h.ps == nil {
		return ""
	}
	return d.hyp()
}

// End finishes the streamed utterance and returns its final hypothesis.
func (d *Decoder) End() (string, error) {
	if d.h.ps == nil {
		return "", ErrClosed
	}
	if !d.inUtt {
		return "", fmt.Errorf("sphinx: end: %w: no utterance started", ErrState)
	}
	d.inUtt = false
	if C.ps_end_utt(d.h.ps) < 0 {
		return "", fmt.Errorf("sphinx: end: %w", ErrDecode)
	}
	return d.hyp(), nil
}

// hyp returns the current hypothesis with whitespace normalised.
func (d *Decoder) hyp() string {
	var score C.int32
	h := C.ps_get_hyp(d.h.ps, &score)
	if h == nil {
		return ""
	}
	return strings.Join(strings.Fields(C.GoString(h)), " ")
}

// Close frees the decoder and its models. It is idempotent.
func (d *Decoder) Close() error {
	if d.h.ps != nil {
		d.cleanup.Stop()
		d.h.free()
		d.h = handles{}
		d.inUtt = false
	}
	return nil
}
