package voice

import (
	"errors"
	"fmt"
	"github.com/fastrtc-go/fastrtc"
	"io"
	"os"
	"time"

	"github.com/fastrtc-go/fastrtc/voice/internal/silero"
)

// SileroModel is a loaded Silero VAD v5 model: the neural voice activity detector that Python
// FastRTC, Pipecat and LiveKit use, run here in pure Go (no ONNX runtime, no cgo) from the
// weights in its ONNX file. One model serves any number of sessions: it is immutable and safe
// for concurrent use; each VAD made from it keeps only its own stream's state (about 6 KB).
//
// The model file (MIT-licensed, github.com/snakers4/silero-vad) ships in npm packages, e.g.
//
//	npm install --ignore-scripts @ricky0123/vad-web
//	# node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx
//
// (./scripts/silero.sh does this for the tests and examples). The network's probabilities
// match onnxruntime's within 1e-5 (internal/silero's tests compare them window by window).
type SileroModel struct{ m *silero.Model }

// ErrBadModel is returned by LoadSileroModel and LoadSileroModelFile when the data is not a
// Silero VAD v5 ONNX model.
var ErrBadModel = errors.New("voice: not a Silero VAD v5 model")

// LoadSileroModel reads a Silero VAD v5 model from its ONNX file's bytes. It returns an
// error wrapping ErrBadModel if the data is not such a model (the older v4 model is not).
func LoadSileroModel(r io.Reader) (*SileroModel, error) {
	m, err := silero.Load(r)
	if err != nil {
		return nil, fmt.Errorf("voice: %w: %w", ErrBadModel, err)
	}
	return &SileroModel{m}, nil
}

// LoadSileroModelFile reads a Silero VAD v5 model from an ONNX file.
func LoadSileroModelFile(path string) (*SileroModel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("voice: Silero model: %w", err)
	}
	defer f.Close()
	return LoadSileroModel(f)
}

// SileroOptions tune how Silero's per-window speech probabilities become speech and silence:
// the equivalents of FastRTC's SileroVadOptions. The zero value means the defaults.
//
// A window (32 ms) with probability >= Threshold starts or continues speech; speech ends after
// MinSilence of windows below NegThreshold (windows between the two continue it). A speech run
// counts only once it lasted MinSpeech: a shorter burst (a click, a cough) counts as no speech
// at all, and a longer one counts from its start. FastRTC's speech_pad_ms is
// WithUtterancePadding; its max_speech_duration_s is WithMaxContinuousSpeech.
type SileroOptions struct {
	// Threshold is the probability at or above which a window is speech (default 0.6; Silero's
	// own is 0.5, which the quality benchmark, BenchmarkVADQuality, found to answer music in
	// noise: at 0.6 every utterance got exactly one reply down to 0 dB SNR).
	Threshold float32
	// NegThreshold is the probability below which a window is silence (default Threshold -
	// 0.15, at least 0.01).
	NegThreshold float32
	// MinSpeech is the shortest run that counts as speech (default 96 ms: three windows).
	MinSpeech time.Duration
	// MinSilence is how long speech must stay below NegThreshold to end (default 100 ms).
	MinSilence time.Duration
}

func (o SileroOptions) withDefaults() (SileroOptions, error) {
	if o.Threshold == 0 {
		o.Threshold = 0.6
	}
	if o.NegThreshold == 0 {
		o.NegThreshold = max(o.Threshold-0.15, 0.01)
	}
	if o.MinSpeech == 0 {
		o.MinSpeech = 96 * time.Millisecond
	}
	if o.MinSilence == 0 {
		o.MinSilence = 100 * time.Millisecond
	}
	switch {
	case o.Threshold <= 0 || o.Threshold >= 1:
		return o, fmt.Errorf("%w: Silero threshold %v is not in (0, 1)", fastrtc.ErrInvalidConfig, o.Threshold)
	case o.NegThreshold <= 0 || o.NegThreshold > o.Threshold:
		return o, fmt.Errorf("%w: Silero negative threshold %v is not in (0, threshold]", fastrtc.ErrInvalidConfig, o.NegThreshold)
	case o.MinSpeech < 0 || o.MinSilence < 0:
		return o, fmt.Errorf("%w: negative Silero durations", fastrtc.ErrInvalidConfig)
	}
	return o, nil
}

// NewVAD returns a Silero voice activity detector for one 16 kHz stream. It implements
// WindowedVAD: it classifies 32 ms windows (512 samples).
func (m *SileroModel) NewVAD(o SileroOptions) (VAD, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	d, err := m.m.NewDetector(16000)
	if err != nil {
		return nil, fmt.Errorf("voice: Silero VAD: %w", err)
	}
	const win = 32 * time.Millisecond
	return &sileroVAD{d: d, o: o,
		minSpeech:  int((o.MinSpeech + win - 1) / win),
		minSilence: int((o.MinSilence + win - 1) / win),
	}, nil
}

// sileroVAD turns Silero's probabilities into speech with hysteresis, a minimum speech run and
// a minimum silence. It is not safe for concurrent use (one session's VAD).
type sileroVAD struct {
	d                     *silero.Detector
	o                     SileroOptions
	minSpeech, minSilence int // in windows

	speaking  bool
	confirmed bool // the current run reached minSpeech
	run       int  // windows since the run began
	pending   int  // speech windows of an unconfirmed run
	silent    int  // consecutive windows below NegThreshold
	last      float32
}

// WindowSamples is 512: Silero classifies 32 ms windows at 16 kHz.
func (v *sileroVAD) WindowSamples() int { return 512 }

// IsSpeech classifies the next 512-sample window of the stream.
func (v *sileroVAD) IsSpeech(frame []int16) (bool, error) {
	n, err := v.speechWindows(frame)
	return n > 0, err
}

// Probability is the last window's speech probability.
func (v *sileroVAD) Probability() float32 { return v.last }

// speechWindows classifies the next window and returns how many windows just became speech:
// 0, 1, or, when a run is confirmed by reaching MinSpeech, all of its windows so far.
func (v *sileroVAD) speechWindows(frame []int16) (int, error) {
	p, err := v.d.ProbabilityInt16(frame)
	if err != nil {
		return 0, fmt.Errorf("voice: Silero VAD: %w", err)
	}
	v.last = p
	switch {
	case p >= v.o.Threshold:
		v.silent = 0
		if !v.speaking {
			v.speaking, v.confirmed, v.run, v.pending = true, false, 0, 0
		}
	case !v.speaking:
		return 0, nil
	case p < v.o.NegThreshold:
		v.silent++
		if v.silent >= v.minSilence {
			v.speaking, v.silent, v.pending = false, 0, 0
			return 0, nil
		}
		v.run++
		return 0, nil // a dip does not count as speech, nor end it yet
	}
	v.run++
	if v.confirmed {
		return 1, nil
	}
	v.pending++
	if v.run >= v.minSpeech {
		v.confirmed = true
		n := v.pending
		v.pending = 0
		return n, nil
	}
	return 0, nil
}

// Close frees nothing: the detector is plain Go memory.
func (v *sileroVAD) Close() error { return nil }
