// Package resample converts streams of interleaved int16 audio between
// sample rates with a polyphase windowed-sinc FIR filter, in pure Go.
//
// The ratio outRate/inRate is reduced to L/M by their greatest common
// divisor; conceptually the input is upsampled by L, low-pass filtered and
// decimated by M, but only the needed outputs are computed, each with one
// of L precomputed filter phases. The prototype filter is a sinc with its
// cutoff at 85% of the lower rate's Nyquist frequency, windowed by a
// Blackman-Harris window (gonum dsp/window) spanning 24 samples of the lower
// rate on each side. Measured response: flat to within 0.1 dB up to 0.75
// of the lower Nyquist (6 kHz when one side is 16 kHz), -87 dB at the
// Nyquist frequency and below -105 dB beyond 1.06 of it, so a tone above
// the new Nyquist does not alias back. The latency is 24 samples of the
// lower rate (1.5 ms at 16 kHz), reported by Delay.
//
// The cost is about 48 multiply-adds per sample of the higher rate for
// every ratio (48 -> 16 kHz uses 144 taps per 16 kHz output sample, 24 ->
// 48 kHz 48 taps per 48 kHz output sample): roughly 30-45 us per 20 ms of
// mono audio on one core here, without allocating.
//
// # Streaming
//
// A Resampler keeps its filter history between Process calls, so a stream
// may be fed in chunks of any size (even a partial frame) and the output is
// bit-identical to converting the whole stream in one call. The output is
// delayed by Delay() output samples and arrives as soon as the input allows:
// after n input frames in total, exactly ceil(n*outRate/inRate) output
// frames have been produced (for example 960 in, 320 out per 20 ms call from
// 48 to 16 kHz). At the end of a stream, Flush drains the last Delay()
// samples; out[Delay():] of the whole output is then time-aligned with the
// input.
//
// # Concurrency
//
// A Resampler is not safe for concurrent use; use one per stream. New
// designs the filter (about 15 us for 48 -> 16 kHz, 0.2 ms for 44.1 ->
// 48 kHz) and its tables are not shared between instances.
package resample

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/dsp/window"
)

const (
	// halfWidthLow is the filter's half length in samples of the lower rate.
	halfWidthLow = 24
	// cutoffFraction places the -6 dB point as a fraction of the lower Nyquist.
	cutoffFraction = 0.85
	// blockFrames is the number of input frames converted per inner pass.
	blockFrames = 1024
	// maxBank bounds the polyphase table (L phases x taps coefficients).
	maxBank = 1 << 20
	// MaxChannels is the largest channel count New accepts.
	MaxChannels = 32
)

var (
	// ErrInvalidArg is returned by New for a non-positive rate or a channel
	// count outside 1..MaxChannels.
	ErrInvalidArg = errors.New("resample: invalid argument")
	// ErrRatio is returned by New when the reduced ratio L/M needs a filter
	// table too large to precompute (rates whose gcd is tiny, e.g. 44100
	// to 48001 Hz).
	ErrRatio = errors.New("resample: unsupported rate ratio")
)

// Resampler converts one stream of interleaved int16 audio from inRate to
// outRate. It is not safe for concurrent use.
type Resampler struct {
	inRate, outRate, channels int

	passthrough bool
	l, m        int       // output/input ratio L/M in lowest terms
	taps        int       // filter taps per phase
	bank        []float32 // l phases x taps, phase-major; phase p at [p*taps:(p+1)*taps]
	delay       int       // group delay in output samples
	stepInt     int       // m / l
	stepFrac    int       // m % l

	// Stream state. buf[ch][:fill] holds input history (as float32); the
	// next output uses buf[ch][pos:pos+taps] with filter phase phase.
	buf       [][]float32
	fill, pos int
	phase     int
	startFill int     // zeros in the history at the start of a stream
	pend      []int16 // a trailing partial frame carried to the next call
}

// New returns a Resampler from inRate to outRate Hz for interleaved audio
// with the given number of channels. Equal rates give a passthrough copy.
func New(inRate, outRate, channels int) (*Resampler, error) {
	if inRate <= 0 || outRate <= 0 || channels < 1 || channels > MaxChannels {
		return nil, fmt.Errorf("resample: %d Hz -> %d Hz, %d channels: %w", inRate, outRate, channels, ErrInvalidArg)
	}
	r := &Resampler{inRate: inRate, outRate: outRate, channels: channels, pend: make([]int16, 0, channels)}
	if inRate == outRate {
		r.passthrough = true
		return r, nil
	}
	g := gcd(inRate, outRate)
	r.l, r.m = outRate/g, inRate/g
	low := min(inRate, outRate)
	// Half length of the filter in input samples: halfWidthLow samples of
	// the lower rate.
	half := (halfWidthLow*inRate + low - 1) / low
	if r.l > maxBank/(4*half) {
		return nil, fmt.Errorf("resample: %d Hz -> %d Hz needs %d filter phases: %w", inRate, outRate, r.l, ErrRatio)
	}
	// Output n is centred on input position (n-delay)*M/L, where
	// delay = ceil(half*L/M) makes it depend on no input after
	// floor(n*M/L): so n input frames yield exactly ceil(n*L/M) outputs.
	r.delay = (half*r.l + r.m - 1) / r.m
	r.bank, r.taps = design(r.l, r.m, half, r.delay, cutoffFraction*float64(low)/2/float64(inRate))
	r.stepInt, r.stepFrac = r.m/r.l, r.m%r.l
	r.startFill = r.taps - 1 // zeros standing for the inputs before the stream
	r.buf = make([][]float32, channels)
	for ch := range r.buf {
		r.buf[ch] = make([]float32, r.taps+blockFrames)
	}
	r.Reset()
	return r, nil
}

// design returns the polyphase bank and its taps per phase for ratio L/M,
// a prototype of half length half input samples with cutoff fcn cycles per
// input sample, and an output delay of delay samples. Phase q = n*M mod L
// serves output n; its last tap multiplies input floor(n*M/L).
func design(l, m, half, delay int, fcn float64) ([]float32, int) {
	// Windowed-sinc prototype at L times the input rate, centred on index
	// l*half; index i is (i - l*half)/l input samples from the centre.
	n := 2 * half * l
	proto := make([]float64, n+1)
	centre := float64(l * half)
	for i := range proto {
		u := (float64(i) - centre) / float64(l)
		x := 2 * fcn * u
		s := 1.0
		if x != 0 {
			s = math.Sin(math.Pi*x) / (math.Pi * x)
		}
		proto[i] = 2 * fcn * s
	}
	window.BlackmanHarris(proto)
	proto = proto[:n] // the last point is the window's (near-zero) edge
	// Normalise the DC gain to L, so each phase passes DC at unity gain
	// (to within the stopband attenuation).
	var sum float64
	for _, v := range proto {
		sum += v
	}
	for i := range proto {
		proto[i] *= float64(l) / sum
	}

	// Tap j of phase q (of tmax) multiplies input floor(n*M/L)-(tmax-1-j);
	// the output's centre is q/L - delay*M/L from floor(n*M/L), so the tap
	// sits at prototype index idx(q, j).
	tmax := 1 + half + (delay*m+l-1)/l
	idx := func(q, j int) int { return l*half + q - delay*m + l*(tmax-1-j) }
	lead := 0 // leading taps outside the prototype for every phase
	for lead < tmax && idx(0, lead) >= n {
		lead++
	}
	taps := tmax - lead
	bank := make([]float32, l*taps)
	for q := range l {
		for j := range taps {
			if i := idx(q, j+lead); i >= 0 && i < n {
				bank[q*taps+j] = float32(proto[i])
			}
		}
	}
	return bank, taps
}

// InRate returns the input sample rate in Hz.
func (r *Resampler) InRate() int { return r.inRate }

// OutRate returns the output sample rate in Hz.
func (r *Resampler) OutRate() int { return r.outRate }

// Channels returns the number of interleaved channels.
func (r *Resampler) Channels() int { return r.channels }

// Delay returns the filter's group delay in output samples (per channel):
// an input event at time t appears in the output at t + Delay()/outRate.
// It is 0 for a passthrough.
func (r *Resampler) Delay() int { return r.delay }

// Reset clears the filter history and any carried partial frame, as at the
// start of a new stream (use it after an interruption or a seek).
func (r *Resampler) Reset() {
	r.pend = r.pend[:0]
	if r.passthrough {
		return
	}
	for _, b := range r.buf {
		clear(b[:r.startFill])
	}
	r.fill, r.pos, r.phase = r.startFill, 0, 0
}

// Flush appends the output still inside the filter — the last Delay()
// samples per channel, made by feeding silence — and then resets the
// Resampler for a new stream. A carried partial frame is dropped. For a
// passthrough it only resets.
func (r *Resampler) Flush(dst []int16) []int16 {
	if !r.passthrough && r.delay > 0 {
		r.pend = r.pend[:0]
		want := r.delay * r.channels
		k := (r.delay*r.m + r.l - 1) / r.l // input frames of silence
		for r.OutputLen(k*r.channels) < want {
			k++
		}
		start := len(dst)
		dst = r.Process(dst, make([]int16, k*r.channels))
		dst = dst[:start+want]
	}
	r.Reset()
	return dst
}

// OutputLen returns how many samples (all channels) the next Process call
// will append for an input of n samples.
func (r *Resampler) OutputLen(n int) int {
	if r.passthrough {
		return n
	}
	frames := (len(r.pend) + n) / r.channels
	avail := r.fill + frames - r.taps - r.pos
	if avail < 0 {
		return 0
	}
	// Output k >= 0 needs pos + floor((phase + k*M)/L) <= avail.
	return ((avail+1)*r.l - r.phase + r.m - 1) / r.m * r.channels
}

// Process appends the resampled form of src (interleaved, any length) to
// dst and returns the extended slice. It allocates only when dst lacks
// capacity for the output (see OutputLen); a trailing partial frame of src
// is kept for the next call.
func (r *Resampler) Process(dst, src []int16) []int16 {
	if r.passthrough {
		return append(dst, src...)
	}
	dst = slices.Grow(dst, r.OutputLen(len(src)))
	if len(r.pend) > 0 {
		take := min(r.channels-len(r.pend), len(src))
		r.pend = append(r.pend, src[:take]...)
		src = src[take:]
		if len(r.pend) < r.channels {
			return dst
		}
		dst = r.process(dst, r.pend)
		r.pend = r.pend[:0]
	}
	whole := len(src) - len(src)%r.channels
	dst = r.process(dst, src[:whole])
	r.pend = append(r.pend, src[whole:]...)
	return dst
}

// process converts whole frames.
func (r *Resampler) process(dst, src []int16) []int16 {
	nch := r.channels
	for len(src) > 0 {
		// Load a block of input into the history, deinterleaving.
		n := min(len(src)/nch, len(r.buf[0])-r.fill)
		if nch == 1 {
			b := r.buf[0][r.fill : r.fill+n]
			for i, s := range src[:n] {
				b[i] = float32(s)
			}
		} else {
			for ch, b := range r.buf {
				b = b[r.fill : r.fill+n]
				for i := range b {
					b[i] = float32(src[i*nch+ch])
				}
			}
		}
		src = src[n*nch:]
		r.fill += n

		// Compute every output whose taps are all available.
		taps := r.taps
		for r.pos+taps <= r.fill {
			h := r.bank[r.phase*taps : r.phase*taps+taps]
			for _, b := range r.buf {
				dst = append(dst, toInt16(dot(h, b[r.pos:r.pos+taps])))
			}
			r.pos += r.stepInt
			r.phase += r.stepFrac
			if r.phase >= r.l {
				r.phase -= r.l
				r.pos++
			}
		}

		// Drop history no later output needs (pos <= fill always holds,
		// since a step never exceeds the filter length).
		if r.pos > 0 {
			for _, b := range r.buf {
				copy(b, b[r.pos:r.fill])
			}
			r.fill -= r.pos
			r.pos = 0
		}
	}
	return dst
}

// dot returns the inner product of h and x[:len(h)], with eight
// accumulators so the additions pipeline.
func dot(h, x []float32) float32 {
	x = x[:len(h)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	for len(h) >= 8 {
		hh, xx := h[:8:8], x[:8:8]
		s0 += hh[0] * xx[0]
		s1 += hh[1] * xx[1]
		s2 += hh[2] * xx[2]
		s3 += hh[3] * xx[3]
		s4 += hh[4] * xx[4]
		s5 += hh[5] * xx[5]
		s6 += hh[6] * xx[6]
		s7 += hh[7] * xx[7]
		h, x = h[8:], x[8:]
	}
	for i, v := range h {
		s0 += v * x[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// toInt16 rounds to nearest (half away from zero) and saturates.
func toInt16(v float32) int16 {
	switch {
	case v >= 32767:
		return 32767
	case v <= -32768:
		return -32768
	case v >= 0:
		return int16(v + 0.5)
	default:
		return int16(v - 0.5)
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
