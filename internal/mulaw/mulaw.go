// Package mulaw implements ITU-T G.711 mu-law companding of 16-bit linear
// PCM, bit-exact with the public-domain Sun Microsystems g711.c
// (linear2ulaw / ulaw2linear, the version that quantises the top 14 bits
// with bias 33 and clips the magnitude at 8159, as used by SoX and pjmedia).
//
// Telephony media (Twilio and other SIP/PSTN bridges) carries 8 kHz mu-law;
// use this package with internal/resample to convert to and from the 48 kHz
// PCM the rest of the server uses.
//
// All functions are pure and safe for concurrent use; the package state is
// a single immutable decode table.
package mulaw

import "math/bits"

const (
	bias   = 0x84 // 132: the decoder's bias in 16-bit units
	bias14 = bias >> 2
	clip14 = 8159 // largest 14-bit magnitude before the bias is added
)

// decodeTable maps every mu-law code to its linear value. It is filled once
// at init and never written again.
var decodeTable = func() (t [256]int16) {
	for i := range t {
		t[i] = decodeSlow(byte(i))
	}
	return t
}()

// decodeSlow is the reference ulaw2linear of g711.c.
func decodeSlow(u byte) int16 {
	u = ^u
	t := (int(u&0x0F) << 3) + bias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(bias - t)
	}
	return int16(t - bias)
}

// EncodeSample compresses one linear PCM sample to a mu-law code.
// EncodeSample(0) is 0xFF, full scale positive is 0x80, full scale negative 0x00.
func EncodeSample(s int16) byte {
	x := int(s) >> 2 // 14-bit, arithmetic shift as in g711.c
	mask := 0xFF
	if x < 0 {
		x = -x
		mask = 0x7F
	}
	if x > clip14 {
		x = clip14
	}
	x += bias14 // now in [33, 8192]
	seg := bits.Len(uint(x >> 6))
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	return byte((seg<<4 | (x>>(seg+1))&0x0F) ^ mask)
}

// DecodeSample expands one mu-law code to linear PCM. Both 0xFF and 0x7F
// decode to 0; 0x00 decodes to -32124 and 0x80 to 32124.
func DecodeSample(u byte) int16 { return decodeTable[u] }

// Encode appends the mu-law encoding of pcm (one byte per sample) to dst and
// returns the extended slice. It does not allocate when dst has capacity for
// len(pcm) more bytes.
func Encode(dst []byte, pcm []int16) []byte {
	n := len(dst)
	dst = grow(dst, len(pcm))
	out := dst[n : n+len(pcm)]
	for i, s := range pcm {
		out[i] = EncodeSample(s)
	}
	return dst
}

// Decode appends the linear PCM decoding of ulaw to dst and returns the
// extended slice. It does not allocate when dst has capacity for len(ulaw)
// more samples.
func Decode(dst []int16, ulaw []byte) []int16 {
	n := len(dst)
	dst = grow(dst, len(ulaw))
	out := dst[n : n+len(ulaw)]
	for i, u := range ulaw {
		out[i] = decodeTable[u]
	}
	return dst
}

// grow extends s by n elements, reallocating only when the capacity is short.
func grow[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) < n {
		ns := make(S, len(s), len(s)+n)
		copy(ns, s)
		s = ns
	}
	return s[:len(s)+n]
}
