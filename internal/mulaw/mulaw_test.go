package mulaw

import (
	"testing"
)

// Known pairs from the reference Sun g711.c (ulaw2linear, linear2ulaw).
func TestReferenceValues(t *testing.T) {
	dec := []struct {
		code byte
		want int16
	}{
		{0x00, -32124}, {0x80, 32124}, {0xFF, 0}, {0x7F, 0},
		{0x01, -31100}, {0x81, 31100}, {0x7E, -8}, {0xFE, 8},
		{0x70, -120}, {0xF0, 120}, {0x0F, -16764}, {0x8F, 16764},
	}
	for _, c := range dec {
		if got := DecodeSample(c.code); got != c.want {
			t.Errorf("DecodeSample(%#02x) = %d, want %d", c.code, got, c.want)
		}
	}
	enc := []struct {
		pcm  int16
		want byte
	}{
		{0, 0xFF}, {32767, 0x80}, {-32768, 0x00}, {-1, 0x7E}, {1, 0xFF}, {3, 0xFF}, {4, 0xFE},
		{8, 0xFE}, {-8, 0x7E}, {32124, 0x80}, {-32124, 0x00}, {120, 0xF0}, {-120, 0x70},
		{1000, 0xCE}, {-1000, 0x4E},
	}
	for _, c := range enc {
		if got := EncodeSample(c.pcm); got != c.want {
			t.Errorf("EncodeSample(%d) = %#02x, want %#02x", c.pcm, got, c.want)
		}
	}
}

// Every code survives decode -> encode; the two zeros (0x7F, 0xFF) both
// re-encode to 0xFF, the canonical zero.
func TestRoundTripAllCodes(t *testing.T) {
	for c := 0; c < 256; c++ {
		u := byte(c)
		got := EncodeSample(DecodeSample(u))
		want := u
		if u == 0x7F {
			want = 0xFF
		}
		if got != want {
			t.Errorf("EncodeSample(DecodeSample(%#02x)) = %#02x, want %#02x", u, got, want)
		}
	}
}

// Encoding is monotonic non-decreasing in the linear value when codes are
// mapped onto their decoded order, and decoding of the 128 positive codes
// (0xFF down to 0x80) is strictly increasing.
func TestMonotonic(t *testing.T) {
	prev := DecodeSample(EncodeSample(-32768))
	for x := -32768; x <= 32767; x++ {
		d := DecodeSample(EncodeSample(int16(x)))
		if d < prev {
			t.Fatalf("not monotonic at %d: %d < %d", x, d, prev)
		}
		prev = d
	}
	for c := 0xFF; c > 0x80; c-- {
		if !(DecodeSample(byte(c)) < DecodeSample(byte(c-1))) {
			t.Fatalf("decode not increasing at %#02x", c)
		}
	}
	for c := 0x7F; c > 0x00; c-- {
		if !(DecodeSample(byte(c)) > DecodeSample(byte(c-1))) {
			t.Fatalf("decode not decreasing at %#02x", c)
		}
	}
}

// The quantisation error stays within half a step of the chosen code's
// segment (plus the 4 lost to the 14-bit truncation).
func TestQuantisationError(t *testing.T) {
	for x := -32635; x <= 32635; x++ {
		c := EncodeSample(int16(x))
		d := int(DecodeSample(c))
		seg := (^c >> 4) & 7
		half := (8 << seg) / 2
		if e := d - x; e > half+4 || e < -(half+4) {
			t.Fatalf("x=%d -> %#02x -> %d: error %d exceeds %d", x, c, d, e, half+4)
		}
	}
}

func TestSliceAPI(t *testing.T) {
	pcm := []int16{0, 1000, -1000, 32767, -32768}
	u := Encode([]byte{0xAA}, pcm)
	want := []byte{0xAA, 0xFF, 0xCE, 0x4E, 0x80, 0x00}
	if string(u) != string(want) {
		t.Fatalf("Encode = %x, want %x", u, want)
	}
	d := Decode(nil, u[1:])
	for i, c := range u[1:] {
		if d[i] != DecodeSample(c) {
			t.Fatalf("Decode[%d] = %d, want %d", i, d[i], DecodeSample(c))
		}
	}
	bufU := make([]byte, 0, 160)
	bufP := make([]int16, 0, 160)
	src := make([]int16, 160)
	if n := testing.AllocsPerRun(100, func() {
		bufU = Encode(bufU[:0], src)
		bufP = Decode(bufP[:0], bufU)
	}); n != 0 {
		t.Fatalf("allocs per run = %v, want 0", n)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0x00, 0x7F, 0x80, 0xFF})
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Interpret pairs of bytes as PCM: encode, decode, encode again must be stable.
		pcm := make([]int16, len(b)/2)
		for i := range pcm {
			pcm[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
		u := Encode(nil, pcm)
		if len(u) != len(pcm) {
			t.Fatalf("len %d != %d", len(u), len(pcm))
		}
		d := Decode(nil, u)
		u2 := Encode(nil, d)
		for i := range u {
			if u2[i] != u[i] && !(u[i] == 0x7F && u2[i] == 0xFF) {
				t.Fatalf("re-encode of %d (code %#02x -> %d) gave %#02x", pcm[i], u[i], d[i], u2[i])
			}
		}
		// Raw bytes as codes: decode then encode is the identity up to the two zeros.
		for _, c := range b {
			e := EncodeSample(DecodeSample(c))
			if e != c && !(c == 0x7F && e == 0xFF) {
				t.Fatalf("code %#02x -> %#02x", c, e)
			}
		}
	})
}

func BenchmarkMulaw(b *testing.B) {
	// 20 ms at 8 kHz, the telephony frame: encode and decode.
	src := make([]int16, 160)
	for i := range src {
		src[i] = int16(i*397 - 30000)
	}
	u := make([]byte, 0, 160)
	p := make([]int16, 0, 160)
	b.ReportAllocs()
	for b.Loop() {
		u = Encode(u[:0], src)
		p = Decode(p[:0], u)
	}
}

// linear2ulawRef is a literal transcription of linear2ulaw from Sun's g711.c.
func linear2ulawRef(pcmVal int) byte {
	segUend := [8]int{0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF}
	var mask int
	pcmVal = pcmVal >> 2
	if pcmVal < 0 {
		pcmVal = -pcmVal
		mask = 0x7F
	} else {
		mask = 0xFF
	}
	if pcmVal > 8159 {
		pcmVal = 8159
	}
	pcmVal += 0x84 >> 2
	seg := 0
	for seg < 8 && pcmVal > segUend[seg] {
		seg++
	}
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	uval := (seg << 4) | ((pcmVal >> (seg + 1)) & 0xF)
	return byte(uval ^ mask)
}

func TestEncodeMatchesReferenceExhaustive(t *testing.T) {
	for x := -32768; x <= 32767; x++ {
		if got, want := EncodeSample(int16(x)), linear2ulawRef(x); got != want {
			t.Fatalf("EncodeSample(%d) = %#02x, g711.c gives %#02x", x, got, want)
		}
	}
}
