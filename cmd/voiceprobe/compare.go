package main

import (
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Segmental SNR conventions: 20 ms segments, each segment's SNR clamped to [snrFloor,
// snrCeil] dB (a silent or perfect segment would otherwise dominate the mean), and only
// segments whose reference energy is within speechRangeDB of the loudest segment count as
// speech.
const (
	snrFloor      = -10.0
	snrCeil       = 35.0
	speechRangeDB = 30.0
	// lowSegmentDB: a speech segment at or below this SNR lost its content (a dropout, a
	// concealed packet that guessed wrong): a zeroed segment scores exactly 0 dB.
	lowSegmentDB = 1.0
)

// floats converts PCM to float64.
func floats(s []int16) []float64 {
	f := make([]float64, len(s))
	for i, v := range s {
		f[i] = float64(v)
	}
	return f
}

// align finds where deg sits in ref: the lag in [lo, hi] that maximises the normalised
// correlation of deg with ref[lag : lag+len(deg)] (ref is taken as zero outside its bounds),
// and that correlation. It cross-correlates with one FFT, so a window of seconds at 48 kHz
// costs milliseconds.
func align(ref, deg []float64, lo, hi int) (lag int, corr float64) {
	n := len(deg)
	if n == 0 || hi < lo {
		return lo, 0
	}
	// The stretch of ref any lag in the window can touch, zero-padded where it leaves ref.
	w := hi - lo + n
	seg := make([]float64, w)
	for i := range seg {
		if j := lo + i; j >= 0 && j < len(ref) {
			seg[i] = ref[j]
		}
	}
	size := 1
	for size < w+n {
		size <<= 1
	}
	fft := fourier.NewFFT(size)
	a := make([]float64, size)
	copy(a, seg)
	b := make([]float64, size)
	copy(b, deg)
	ca := fft.Coefficients(nil, a)
	cb := fft.Coefficients(nil, b)
	for i := range ca {
		ca[i] *= complex(real(cb[i]), -imag(cb[i]))
	}
	xc := fft.Sequence(nil, ca) // xc[l] = size * sum_i seg[l+i] deg[i]
	var ed float64
	for _, v := range deg {
		ed += v * v
	}
	// Energy of seg[l : l+n], slid along.
	var es float64
	for _, v := range seg[:n] {
		es += v * v
	}
	best, bestLag := math.Inf(-1), lo
	for l := 0; l <= hi-lo; l++ {
		if l > 0 {
			es += seg[l+n-1]*seg[l+n-1] - seg[l-1]*seg[l-1]
		}
		den := math.Sqrt(ed * max(es, 0))
		if den <= 0 {
			continue
		}
		if c := xc[l] / float64(size) / den; c > best {
			best, bestLag = c, lo+l
		}
	}
	if math.IsInf(best, -1) {
		return lo, 0
	}
	return bestLag, best
}

// correlation is the normalised correlation of a and b over their common length.
func correlation(a, b []float64) float64 {
	n := min(len(a), len(b))
	var ab, aa, bb float64
	for i := range n {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// segStats is the segmental SNR of a degraded signal against its reference.
type segStats struct {
	Mean     float64 // mean clamped SNR over the speech segments, dB
	Min      float64 // the worst speech segment, dB
	Segments int     // speech segments compared
	Low      int     // speech segments at or below lowSegmentDB
}

// segmentalSNR compares deg with ref (already aligned: deg[i] is ref[i]) in segments of seg
// samples over their common length. speech, if not nil, says which segments count (one
// entry per segment); otherwise speechSegments(ref) decides.
func segmentalSNR(ref, deg []float64, seg int, speech []bool) segStats {
	n := min(len(ref), len(deg)) / seg
	if speech == nil {
		speech = speechSegments(ref[:n*seg], seg)
	}
	st := segStats{Min: snrCeil}
	var sum float64
	for k := 0; k < n && k < len(speech); k++ {
		if !speech[k] {
			continue
		}
		var es, en float64
		for i := k * seg; i < (k+1)*seg; i++ {
			d := ref[i] - deg[i]
			es += ref[i] * ref[i]
			en += d * d
		}
		snr := snrCeil
		if en > 0 {
			snr = min(snrCeil, max(snrFloor, 10*math.Log10(es/en)))
		}
		sum += snr
		st.Segments++
		st.Min = min(st.Min, snr)
		if snr <= lowSegmentDB {
			st.Low++
		}
	}
	if st.Segments == 0 {
		return segStats{}
	}
	st.Mean = sum / float64(st.Segments)
	return st
}

// speechSegments marks the segments of ref whose energy is within speechRangeDB of the
// loudest one.
func speechSegments(ref []float64, seg int) []bool {
	n := len(ref) / seg
	e := make([]float64, n)
	var top float64
	for k := range n {
		for _, v := range ref[k*seg : (k+1)*seg] {
			e[k] += v * v
		}
		top = max(top, e[k])
	}
	out := make([]bool, n)
	if top == 0 {
		return out
	}
	th := top * math.Pow(10, -speechRangeDB/10)
	for k := range n {
		out[k] = e[k] > th
	}
	return out
}

// window returns ref[from : from+n], zero-padded where it leaves ref.
func window(ref []float64, from, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		if j := from + i; j >= 0 && j < len(ref) {
			out[i] = ref[j]
		}
	}
	return out
}
