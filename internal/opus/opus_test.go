package opus

import (
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fastrtc-go/fastrtc/internal/wav"
)

const rate = 48000

func tone(freq float64, amp float64, n, channels, ch int, dst []int16) {
	for i := range n {
		dst[i*channels+ch] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/rate))
	}
}

// channel extracts one channel of interleaved audio as float64.
func channel(pcm []int16, channels, ch int) []float64 {
	out := make([]float64, len(pcm)/channels)
	for i := range out {
		out[i] = float64(pcm[i*channels+ch])
	}
	return out
}

// goertzelDB returns the level of freq in x, in dB relative to a full-scale
// sine of amplitude 1 (so a sine of amplitude A reads 20*log10(A)).
func goertzelDB(x []float64, freq, sampleRate float64) float64 {
	w := 2 * math.Pi * freq / sampleRate
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	return 10*math.Log10(p+1e-12) - 20*math.Log10(float64(len(x))/2)
}

func rmsDB(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return 10 * math.Log10(s/float64(len(x))+1e-12)
}

// zcFreq estimates the frequency of a clean tone from rising zero crossings,
// interpolating the crossing instants.
func zcFreq(x []float64, sampleRate float64) float64 {
	first, last, n := -1.0, -1.0, 0
	for i := 1; i < len(x); i++ {
		if x[i-1] < 0 && x[i] >= 0 {
			t := float64(i-1) + x[i-1]/(x[i-1]-x[i])
			if first < 0 {
				first = t
			} else {
				n++
			}
			last = t
		}
	}
	if n == 0 {
		return 0
	}
	return float64(n) * sampleRate / (last - first)
}

func loadSpeech(t testing.TB) []int16 {
	t.Helper()
	s, r, ch, err := wav.ReadFile(filepath.Join("..", "..", "testdata", "audio", "hello48k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	if r != rate || ch != 1 {
		t.Fatalf("fixture is %d Hz %d ch", r, ch)
	}
	return s
}

// encodeAll encodes pcm in 20 ms frames (dropping a trailing partial frame).
func encodeAll(t testing.TB, enc *Encoder, pcm []int16) [][]byte {
	t.Helper()
	fs := rate / 50 * enc.Channels()
	var pkts [][]byte
	buf := make([]byte, MaxPacketBytes)
	for off := 0; off+fs <= len(pcm); off += fs {
		n, err := enc.Encode(pcm[off:off+fs], buf)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, append([]byte(nil), buf[:n]...))
	}
	return pkts
}

func decodeAll(t testing.TB, dec *Decoder, pkts [][]byte) []int16 {
	t.Helper()
	pcm := make([]int16, 5760*dec.Channels())
	var out []int16
	for _, p := range pkts {
		n, err := dec.Decode(p, pcm)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pcm[:n*dec.Channels()]...)
	}
	return out
}

func TestToneRoundTrip(t *testing.T) {
	enc, err := NewEncoder(DefaultEncoderConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := NewDecoder(rate, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()

	in := make([]int16, rate) // 1 s
	tone(440, 16000, len(in), 1, 0, in)
	out := decodeAll(t, dec, encodeAll(t, enc, in))
	if len(out) != len(in) {
		t.Fatalf("decoded %d samples, want %d", len(out), len(in))
	}
	// Skip the codec's start-up (lookahead + decoder warm-up).
	x := channel(out[rate/5:], 1, 0)
	ref := channel(in[rate/5:], 1, 0)
	f := zcFreq(x, rate)
	if math.Abs(f-440) > 440*0.005 {
		t.Errorf("decoded frequency %.2f Hz, want 440", f)
	}
	if d := rmsDB(x) - rmsDB(ref); math.Abs(d) > 1 {
		t.Errorf("level changed by %.2f dB", d)
	}
	t.Logf("440 Hz tone: decoded %.2f Hz, level %+.2f dB", f, rmsDB(x)-rmsDB(ref))
}

func TestStereoRoundTrip(t *testing.T) {
	cfg := DefaultEncoderConfig()
	cfg.Channels = 2
	cfg.BitrateBps = 64000
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := NewDecoder(rate, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	in := make([]int16, 2*rate)
	tone(440, 12000, rate, 2, 0, in)
	tone(660, 12000, rate, 2, 1, in)
	out := decodeAll(t, dec, encodeAll(t, enc, in))
	if len(out) != len(in) {
		t.Fatalf("decoded %d samples, want %d", len(out), len(in))
	}
	// Whole periods of both tones: 0.5 s (220 and 330 cycles).
	for ch, f := range [][2]float64{{440, 660}, {660, 440}} {
		x := channel(out[2*rate/5:2*rate/5+rate], 2, ch)[:rate/2]
		want := 20 * math.Log10(12000)
		own, other := goertzelDB(x, f[0], rate), goertzelDB(x, f[1], rate)
		t.Logf("channel %d: %.0f Hz at %+.2f dB, %.0f Hz (other channel) at %.1f dB", ch, f[0], own-want, f[1], other-want)
		if math.Abs(own-want) > 1 {
			t.Errorf("channel %d: %.0f Hz level off by %.2f dB", ch, f[0], own-want)
		}
		if other-want > -20 {
			t.Errorf("channel %d: crosstalk from the other channel at %.1f dB", ch, other-want)
		}
	}
}

// A mono decoder accepts the stereo stream WebRTC negotiates and downmixes;
// a decoder at 16 kHz resamples internally.
func TestDecoderRatesAndChannels(t *testing.T) {
	enc, err := NewEncoder(DefaultEncoderConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	in := make([]int16, rate/2)
	tone(440, 16000, len(in), 1, 0, in)
	pkts := encodeAll(t, enc, in)
	for _, r := range []int{8000, 12000, 16000, 24000, 48000} {
		for _, ch := range []int{1, 2} {
			dec, err := NewDecoder(r, ch)
			if err != nil {
				t.Fatal(err)
			}
			pcm := make([]int16, 5760*ch)
			n, err := dec.Decode(pkts[0], pcm)
			if err != nil || n != r/50 {
				t.Errorf("%d Hz %d ch: n=%d err=%v, want %d", r, ch, n, err, r/50)
			}
			if ns, err := PacketSamples(pkts[0], r); err != nil || ns != r/50 {
				t.Errorf("PacketSamples(%d) = %d, %v", r, ns, err)
			}
			dec.Close()
		}
	}
}

// frameSNR compares got against ref (same length) in dB.
func frameSNR(ref, got []int16) float64 {
	var s, e float64
	for i := range ref {
		d := float64(ref[i]) - float64(got[i])
		s += float64(ref[i]) * float64(ref[i])
		e += d * d
	}
	return 10 * math.Log10((s+1)/(e+1))
}

func energyDB(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return 10 * math.Log10(s/float64(len(x))+1e-12)
}

// With FEC on, a lost packet is rebuilt from the next packet's LBRR data:
// the rebuilt frame has speech energy and tracks the real frame far better
// than plain concealment does.
func TestFECRecoversLostPacket(t *testing.T) {
	speech := loadSpeech(t)
	enc, err := NewEncoder(DefaultEncoderConfig()) // FEC on, 10% loss
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	pkts := encodeAll(t, enc, speech)

	ref, _ := NewDecoder(rate, 1)
	defer ref.Close()
	refPCM := decodeAll(t, ref, pkts)

	const fs = 960
	pcm := make([]int16, 5760)
	var fecWins, tried int
	var sumFEC, sumPLC, sumEF, sumEP float64
	// Lose one packet at a time in the voiced middle of the utterance.
	for lost := 30; lost < len(pkts)-20; lost += 7 {
		want := refPCM[lost*fs : (lost+1)*fs]
		if energyDB(want) < 50 { // skip quiet frames (|x| ~ 300)
			continue
		}
		recover := func(useFEC bool) []int16 {
			dec, err := NewDecoder(rate, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			for i := range lost {
				if _, err := dec.Decode(pkts[i], pcm); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if useFEC {
				n, err = dec.DecodeFEC(pkts[lost+1], pcm, fs)
			} else {
				n, err = dec.Conceal(pcm, fs)
			}
			if err != nil || n != fs {
				t.Fatalf("fec=%v: n=%d err=%v", useFEC, n, err)
			}
			got := append([]int16(nil), pcm[:fs]...)
			if n, err := dec.Decode(pkts[lost+1], pcm); err != nil || n != fs {
				t.Fatalf("decode after loss: n=%d err=%v", n, err)
			}
			return got
		}
		fec, plc := recover(true), recover(false)
		ef, ep := math.Abs(energyDB(fec)-energyDB(want)), math.Abs(energyDB(plc)-energyDB(want))
		if ef > 4 {
			t.Errorf("packet %d: FEC frame energy %.1f dB, real frame %.1f dB", lost, energyDB(fec), energyDB(want))
		}
		sumEF += ef
		sumEP += ep
		sf, sp := frameSNR(want, fec), frameSNR(want, plc)
		sumFEC += sf
		sumPLC += sp
		tried++
		if sf > sp {
			fecWins++
		}
	}
	if tried < 5 {
		t.Fatalf("only %d voiced frames tried", tried)
	}
	nt := float64(tried)
	t.Logf("%d lost packets: mean SNR vs real frame: FEC %.1f dB, concealment %.1f dB (FEC better in %d); mean |energy error|: FEC %.1f dB, concealment %.1f dB",
		tried, sumFEC/nt, sumPLC/nt, fecWins, sumEF/nt, sumEP/nt)
	// Waveform SNR over 20 ms is phase-sensitive, so compare means.
	if sumFEC/nt < sumPLC/nt+3 || fecWins*2 <= tried || sumEF >= sumEP {
		t.Errorf("FEC does not beat concealment")
	}
}

func TestConceal(t *testing.T) {
	dec, err := NewDecoder(rate, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	pcm := make([]int16, 5760*2)
	for _, fs := range []int{120, 480, 960, 1920, 2880} {
		n, err := dec.Conceal(pcm, fs)
		if err != nil || n != fs {
			t.Errorf("Conceal(%d) = %d, %v", fs, n, err)
		}
	}
	if d, err := dec.LastPacketDuration(); err != nil || d != 2880 {
		t.Errorf("LastPacketDuration = %d, %v", d, err)
	}
	if _, err := dec.Conceal(pcm, 961); !errors.Is(err, ErrFrameSize) {
		t.Errorf("Conceal(961): %v, want ErrFrameSize", err)
	}
	if _, err := dec.Conceal(pcm[:100], 960); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("Conceal into short buffer: %v, want ErrBufferTooSmall", err)
	}
}

func TestInvalidPackets(t *testing.T) {
	dec, err := NewDecoder(rate, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	pcm := make([]int16, 5760)
	bad := [][]byte{
		{0x03, 0x00},             // code 3 with zero frames
		{0x01, 0xAA, 0xBB, 0xCC}, // code 1 (two equal frames) with an odd payload
		{0x03, 0xFF, 0x00},       // code 3 claiming 63 frames (> 120 ms)
		{0x02, 0xFF},             // code 2 whose first frame length overruns
	}
	for _, p := range bad {
		if _, err := dec.Decode(p, pcm); !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("Decode(%x) = %v, want ErrInvalidPacket", p, err)
		}
	}
	if _, err := dec.Decode(nil, pcm); !errors.Is(err, ErrEmptyPacket) {
		t.Errorf("Decode(nil) = %v, want ErrEmptyPacket", err)
	}
	// A valid 60 ms packet does not fit a 20 ms buffer.
	cfg := DefaultEncoderConfig()
	enc, _ := NewEncoder(cfg)
	defer enc.Close()
	buf := make([]byte, MaxPacketBytes)
	n, err := enc.Encode(make([]int16, 2880), buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Decode(buf[:n], pcm[:960]); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("Decode 60 ms into 20 ms: %v, want ErrBufferTooSmall", err)
	}
	// Still usable afterwards.
	if n, err := dec.Decode(buf[:n], pcm); err != nil || n != 2880 {
		t.Errorf("Decode 60 ms = %d, %v", n, err)
	}
}

func TestEncoderArgs(t *testing.T) {
	for _, cfg := range []EncoderConfig{
		{SampleRate: 44100},
		{Channels: 3},
		{Complexity: 11},
		{PacketLossPercent: 101},
		{BitrateBps: 100},
		{Application: 7},
	} {
		if e, err := NewEncoder(cfg); err == nil {
			e.Close()
			t.Errorf("NewEncoder(%+v) succeeded", cfg)
		} else if !errors.Is(err, ErrBadArg) {
			t.Errorf("NewEncoder(%+v) = %v, want ErrBadArg", cfg, err)
		}
	}
	if _, err := NewDecoder(44100, 1); !errors.Is(err, ErrBadArg) {
		t.Errorf("NewDecoder(44100) = %v", err)
	}
	enc, err := NewEncoder(EncoderConfig{}) // all defaults where zero is invalid
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxPacketBytes)
	for _, n := range []int{120, 240, 480, 960, 1920, 2880, 3840, 4800, 5760} {
		if _, err := enc.Encode(make([]int16, n), buf); err != nil {
			t.Errorf("Encode(%d samples): %v", n, err)
		}
	}
	for _, n := range []int{0, 100, 961, 6720} {
		if _, err := enc.Encode(make([]int16, n), buf); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Encode(%d samples) = %v, want ErrFrameSize", n, err)
		}
	}
	if _, err := enc.Encode(make([]int16, 960), nil); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("Encode into nil: %v", err)
	}
	if la, err := enc.Lookahead(); err != nil || la <= 0 || la > 1000 {
		t.Errorf("Lookahead = %d, %v", la, err)
	}
	if err := enc.SetBitrate(24000); err != nil {
		t.Error(err)
	}
	if err := enc.SetPacketLossPercent(20); err != nil {
		t.Error(err)
	}
	if err := enc.Reset(); err != nil {
		t.Error(err)
	}
	enc.Close()
	if err := enc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := enc.Encode(make([]int16, 960), buf); !errors.Is(err, ErrClosed) {
		t.Errorf("Encode after Close: %v", err)
	}
}

func TestDecoderClose(t *testing.T) {
	dec, _ := NewDecoder(rate, 1)
	dec.Close()
	if err := dec.Close(); err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 960)
	if _, err := dec.Decode([]byte{0xF8}, pcm); !errors.Is(err, ErrClosed) {
		t.Errorf("Decode after Close: %v", err)
	}
	if _, err := dec.Conceal(pcm, 960); !errors.Is(err, ErrClosed) {
		t.Errorf("Conceal after Close: %v", err)
	}
	if _, err := dec.DecodeFEC([]byte{0xF8}, pcm, 960); !errors.Is(err, ErrClosed) {
		t.Errorf("DecodeFEC after Close: %v", err)
	}
}

// DTX: digital silence yields tiny packets most of the time.
func TestDTX(t *testing.T) {
	cfg := DefaultEncoderConfig()
	cfg.DTX = true
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	pkts := encodeAll(t, enc, make([]int16, rate*2))
	small := 0
	for _, p := range pkts {
		if len(p) <= 2 {
			small++
		}
	}
	if small < len(pkts)/2 {
		t.Errorf("DTX: %d of %d silent packets are <= 2 bytes", small, len(pkts))
	}
}

func TestZeroAllocs(t *testing.T) {
	speech := loadSpeech(t)
	enc, _ := NewEncoder(DefaultEncoderConfig())
	defer enc.Close()
	dec, _ := NewDecoder(rate, 1)
	defer dec.Close()
	buf := make([]byte, MaxPacketBytes)
	pcm := make([]int16, 5760)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		off := (i * 960) % (len(speech) - 960)
		i++
		n, err := enc.Encode(speech[off:off+960], buf)
		if err != nil {
			panic(err)
		}
		if _, err := dec.Decode(buf[:n], pcm); err != nil {
			panic(err)
		}
		if _, err := dec.DecodeFEC(buf[:n], pcm, 960); err != nil {
			panic(err)
		}
		if _, err := dec.Conceal(pcm, 960); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Encode+Decode+DecodeFEC+Conceal: %v allocs per run, want 0", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xF8, 0xFF, 0xFE})
	f.Add([]byte{0x03, 0x00})
	f.Add([]byte{0x7B, 0x83, 0x01, 0x02})
	dec, err := NewDecoder(rate, 2)
	if err != nil {
		f.Fatal(err)
	}
	pcm := make([]int16, 5760*2)
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := dec.Decode(p, pcm)
		if err == nil && (n <= 0 || n > 5760) {
			t.Fatalf("Decode returned %d samples", n)
		}
		if len(p) > 0 {
			if _, err := dec.DecodeFEC(p, pcm, 960); err != nil && !errors.Is(err, ErrInvalidPacket) && !errors.Is(err, ErrBufferTooSmall) && !errors.Is(err, ErrBadArg) {
				t.Fatalf("DecodeFEC: %v", err)
			}
		}
	})
}

func BenchmarkOpusDecode20ms(b *testing.B) {
	speech := loadSpeech(b)
	enc, _ := NewEncoder(DefaultEncoderConfig())
	defer enc.Close()
	pkts := encodeAll(b, enc, speech)
	dec, _ := NewDecoder(rate, 1)
	defer dec.Close()
	pcm := make([]int16, 5760)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := dec.Decode(pkts[i], pcm); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(pkts) {
			i = 0
		}
	}
}

func BenchmarkOpusEncode20ms(b *testing.B) {
	speech := loadSpeech(b)
	for _, c := range []int{0, 5, 10} {
		b.Run("complexity="+strconv.Itoa(c), func(b *testing.B) {
			cfg := DefaultEncoderConfig()
			cfg.Complexity = c
			enc, _ := NewEncoder(cfg)
			defer enc.Close()
			buf := make([]byte, MaxPacketBytes)
			frames := len(speech) / 960
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := enc.Encode(speech[i*960:(i+1)*960], buf); err != nil {
					b.Fatal(err)
				}
				if i++; i == frames {
					i = 0
				}
			}
		})
	}
}

// Control for the FEC test: without FEC in the stream, DecodeFEC falls back
// to concealment and yields exactly what Conceal yields.
func TestDecodeFECWithoutFECIsConcealment(t *testing.T) {
	speech := loadSpeech(t)
	cfg := DefaultEncoderConfig()
	cfg.FEC = false
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	pkts := encodeAll(t, enc, speech)
	const lost = 44
	run := func(useFEC bool) []int16 {
		dec, _ := NewDecoder(rate, 1)
		defer dec.Close()
		pcm := make([]int16, 5760)
		for i := range lost {
			if _, err := dec.Decode(pkts[i], pcm); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if useFEC {
			_, err = dec.DecodeFEC(pkts[lost+1], pcm, 960)
		} else {
			_, err = dec.Conceal(pcm, 960)
		}
		if err != nil {
			t.Fatal(err)
		}
		return pcm[:960]
	}
	a, b := run(true), run(false)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("sample %d: DecodeFEC %d, Conceal %d", i, a[i], b[i])
		}
	}
}
