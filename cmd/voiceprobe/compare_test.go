package main

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func testClip(t *testing.T) ([]int16, clipInfo) {
	t.Helper()
	clip, info, err := loadClip("../../testdata/audio/two_utterances48k.wav", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Utterances) != 2 || len(clip)%frame != 0 {
		t.Fatalf("clip: %d utterances, %d samples", len(info.Utterances), len(clip))
	}
	return clip, info
}

// A copy of an utterance taken from an unknown place is found at exactly that place, with a
// correlation of 1 and every speech segment at the 35 dB ceiling.
func TestAlignDelayedCopy(t *testing.T) {
	pcm, info := testClip(t)
	clip := floats(pcm)
	u := info.Utterances[1]
	from := u.Start - rate/10 + 777 // 0.1 s of padding, and 777 samples of delay
	deg := window(clip, from, u.End-u.Start+rate/5)
	lag, corr := align(clip, deg, u.Start-searchBefore, u.Start+searchAfter)
	if lag != from || corr < 0.999999 {
		t.Fatalf("align: lag %d corr %.6f, want %d and 1", lag, corr, from)
	}
	st := segmentalSNR(window(clip, lag, len(deg)), deg, frame, nil)
	if st.Mean != snrCeil || st.Min != snrCeil || st.Low != 0 || st.Segments < 40 {
		t.Fatalf("segmental SNR of an exact copy: %+v, want every one of >= 40 segments at %v", st, snrCeil)
	}
	// The other utterance's window holds a worse match.
	if _, c := align(clip, deg, info.Utterances[0].Start-searchBefore, info.Utterances[0].Start+searchAfter); c > 0.5 {
		t.Fatalf("utterance 0's window correlates %.3f with utterance 1", c)
	}
}

// White noise at 15 dB below every segment: still aligned exactly, segmental SNR 15 dB,
// correlation 1/sqrt(1+10^-1.5).
func TestNoiseLowersSNR(t *testing.T) {
	pcm, info := testClip(t)
	clip := floats(pcm)
	u := info.Utterances[0]
	from := u.Start - 3000
	ref := window(clip, from, u.End-u.Start+6000)
	rng := rand.New(rand.NewPCG(1, 2))
	deg := slices.Clone(ref)
	for k := 0; (k+1)*frame <= len(deg); k++ {
		noise := make([]float64, frame)
		var es, en float64
		for i := range noise {
			noise[i] = rng.NormFloat64()
			en += noise[i] * noise[i]
			es += ref[k*frame+i] * ref[k*frame+i]
		}
		g := math.Sqrt(es * math.Pow(10, -1.5) / en)
		for i := range noise {
			deg[k*frame+i] += g * noise[i]
		}
	}
	lag, corr := align(clip, deg, u.Start-searchBefore, u.Start+searchAfter)
	if lag != from {
		t.Fatalf("align with noise: lag %d, want %d", lag, from)
	}
	if want := 1 / math.Sqrt(1+math.Pow(10, -1.5)); math.Abs(corr-want) > 0.003 {
		t.Fatalf("correlation %.4f, want %.4f", corr, want)
	}
	st := segmentalSNR(ref, deg, frame, nil)
	if math.Abs(st.Mean-15) > 1e-6 || math.Abs(st.Min-15) > 1e-6 || st.Low != 0 {
		t.Fatalf("segmental SNR %+v, want 15 dB in every segment", st)
	}

	// Stationary noise on a steady tone: the expected SNR is A²/2 / σ² (50: 16.99 dB),
	// measured over 50 segments of random noise.
	tone := make([]float64, 50*frame)
	noisy := make([]float64, len(tone))
	for i := range tone {
		tone[i] = 8000 * math.Sin(2*math.Pi*440*float64(i)/rate)
		noisy[i] = tone[i] + 800*rng.NormFloat64()
	}
	st = segmentalSNR(tone, noisy, frame, nil)
	if want := 10 * math.Log10(50); math.Abs(st.Mean-want) > 0.1 || st.Segments != 50 {
		t.Fatalf("tone + noise: %+v, want %.2f dB over 50 segments", st, want)
	}
	if c := correlation(tone, noisy); math.Abs(c-math.Sqrt(50.0/51)) > 0.002 {
		t.Fatalf("tone + noise: correlation %.4f, want %.4f", c, math.Sqrt(50.0/51))
	}
	// The clamp: a segment swamped by noise counts -10 dB, not less.
	for i := range noisy[:frame] {
		noisy[i] = tone[i] + 1e6*rng.NormFloat64()
	}
	if st2 := segmentalSNR(tone, noisy, frame, nil); st2.Min != snrFloor || st2.Low != 1 {
		t.Fatalf("swamped segment: %+v, want min %v and one low segment", st2, snrFloor)
	}
}

// A zeroed 20 ms segment (a dropout) scores 0 dB and is counted; silence is not compared.
func TestZeroedSegment(t *testing.T) {
	pcm, info := testClip(t)
	clip := floats(pcm)
	u := info.Utterances[0]
	ref := window(clip, u.Start-rate/2, u.End-u.Start+rate) // 0.5 s of silence each side
	speech := speechSegments(ref, frame)
	n := 0
	for _, s := range speech {
		if s {
			n++
		}
	}
	if total := len(ref) / frame; n < 40 || n > total-40 {
		t.Fatalf("%d of %d segments are speech: the 1 s of silence should not be", n, total)
	}
	k := slices.Index(speech, true) + 20
	if !speech[k] {
		t.Fatalf("segment %d is not speech", k)
	}
	deg := slices.Clone(ref)
	clear(deg[k*frame : (k+1)*frame])
	st := segmentalSNR(ref, deg, frame, speech)
	if st.Low != 1 || st.Min != 0 || st.Segments != n {
		t.Fatalf("zeroed segment: %+v, want one low segment at 0 dB of %d", st, n)
	}
	if want := snrCeil * float64(n-1) / float64(n); math.Abs(st.Mean-want) > 1e-9 {
		t.Fatalf("mean %.3f, want %.3f", st.Mean, want)
	}
	// An inverted segment is worse than a missing one: -6 dB.
	for i := k * frame; i < (k+1)*frame; i++ {
		deg[i] = -ref[i]
	}
	if st := segmentalSNR(ref, deg, frame, speech); math.Abs(st.Min+10*math.Log10(4)) > 1e-9 {
		t.Fatalf("inverted segment: min %.3f dB, want -6.02", st.Min)
	}
}

// compare maps turns to utterances and rounds, and against the perfect-link decode a turn
// that is that decode scores 35 dB; against the clean clip it scores Opus's own error.
func TestCompareTurns(t *testing.T) {
	pcm, info := testClip(t)
	sent := append(slices.Clone(pcm), pcm...)
	perfect, err := perfectLink(sent)
	if err != nil {
		t.Fatal(err)
	}
	again, err := perfectLink(sent)
	if err != nil || !slices.Equal(perfect, again) {
		t.Fatal("perfectLink is not deterministic: the network measure needs it to be")
	}
	pf := floats(perfect)
	var tr turnsReply
	cut := func(r, u int, zero bool) {
		ut := info.Utterances[u]
		seg := slices.Clone(perfect[r*len(pcm)+ut.Start-rate/10 : r*len(pcm)+ut.End+rate/10])
		if zero {
			clear(seg[rate/2 : rate/2+frame])
		}
		b := make([]byte, 2*len(seg))
		for i, v := range seg {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		}
		tr.Turns = append(tr.Turns, recordTurn{Rate: rate, PCM: base64.StdEncoding.EncodeToString(b)})
	}
	cut(0, 0, false)
	cut(0, 1, false)
	cut(1, 1, true) // round 1's first utterance was missed
	res := compare(floats(pcm), info, len(pcm), pf, tr)
	if res.TurnsDetected != 3 || len(res.Turns) != 3 {
		t.Fatalf("%d turns", len(res.Turns))
	}
	for i, want := range [][2]int{{0, 0}, {1, 0}, {1, 1}} {
		got := res.Turns[i]
		if got.Utterance != want[0] || got.Round != want[1] {
			t.Fatalf("turn %d: utterance %d round %d, want %v", i, got.Utterance, got.Round, want)
		}
		if got.Corr < 0.85 || got.SegSNR < 5 || got.SegSNR > 15 {
			t.Fatalf("turn %d against the clean clip: corr %.3f segSNR %.1f, want Opus's ~0.95 and ~9 dB", i, got.Corr, got.SegSNR)
		}
	}
	if a, b := res.Turns[0], res.Turns[1]; a.NetSegSNR != snrCeil || b.NetSegSNR != snrCeil || a.NetCorr < 0.999999 || a.LowSegs+b.LowSegs != 0 {
		t.Fatalf("undamaged turns against the perfect-link decode: %+v %+v", a, b)
	}
	if z := res.Turns[2]; z.LowSegs < 1 || z.LowSegs > 2 || z.NetSegSNR >= snrCeil || z.Corr >= res.Turns[1].Corr-0.01 {
		t.Fatalf("a turn with a dropout: %+v, want its 20 ms zeroed counted and a lower correlation than %.3f", z, res.Turns[1].Corr)
	}
	if res.NetSegSNRMin != res.Turns[2].NetSegSNR || res.LowSegments != res.Turns[2].LowSegs {
		t.Fatalf("aggregates: %+v", res)
	}
}
