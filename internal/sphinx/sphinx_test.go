package sphinx

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/wav"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testVoice is the espeak-ng voice the fixtures are spoken with. The
// default en-us voice is recognised very poorly by this acoustic model
// (about 10% word accuracy); its Klatt variant reaches about 70%.
const testVoice = "en-us+klatt"

// sentences for the recognition test, with the words that carry the
// meaning (the ones a command parser would need).
var sentences = []struct{ text, content string }{
	{"hello computer", "hello computer"},
	{"what is the weather today", "what weather today"},
	{"turn on the lights", "turn lights"},
	{"please tell me the time", "please tell time"},
	{"open the door", "open door"},
	{"call my mother", "call mother"},
	{"play some music", "play music"},
	{"set an alarm for seven", "set alarm seven"},
}

func modelConfig(t testing.TB) Config {
	t.Helper()
	c, err := DefaultConfig()
	if errors.Is(err, ErrNoModel) {
		t.Skipf("English model not installed (package pocketsphinx-en-us): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newDecoder(t testing.TB, c Config) *Decoder {
	t.Helper()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var (
	speechMu    sync.Mutex
	speechCache = map[string][]int16{}
)

// speech returns text spoken by the espeak-ng command in testVoice,
// converted to 16 kHz mono by sox, with 0.3 s of silence appended (a
// spotted keyphrase is reported only once 100 ms have followed it).
func speech(t testing.TB, text string) []int16 {
	t.Helper()
	speechMu.Lock()
	defer speechMu.Unlock()
	if s, ok := speechCache[text]; ok {
		return s
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.wav")
	if b, err := exec.Command("espeak-ng", "-v", testVoice, "-w", in, text).CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng (package espeak-ng): %v: %s", err, b)
	}
	if b, err := exec.Command("sox", "-D", in, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", out, "pad", "0", "0.3").CombinedOutput(); err != nil {
		t.Fatalf("sox (package sox): %v: %s", err, b)
	}
	s, rate, ch, err := wav.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 16000 || ch != 1 {
		t.Fatalf("%s: %d Hz, %d channels", out, rate, ch)
	}
	speechCache[text] = s
	return s
}

// wordErrors is the word-level edit distance between ref and hyp.
func wordErrors(ref, hyp string) int {
	r, h := strings.Fields(ref), strings.Fields(hyp)
	prev := make([]int, len(h)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(r); i++ {
		cur := make([]int, len(h)+1)
		cur[0] = i
		for j := 1; j <= len(h); j++ {
			sub := prev[j-1]
			if r[i-1] != h[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev = cur
	}
	return prev[len(h)]
}

// found counts the words of content present in hyp.
func found(content, hyp string) (n, of int) {
	words := map[string]bool{}
	for _, w := range strings.Fields(hyp) {
		words[w] = true
	}
	for _, w := range strings.Fields(content) {
		of++
		if words[w] {
			n++
		}
	}
	return n, of
}

// score reports word accuracy (1 - WER) over all sentences and how many
// sentences had at least half their content words recognised.
func score(t *testing.T, label string, hyps []string) (accuracy float64, mostContent int) {
	t.Helper()
	errs, words := 0, 0
	for i, s := range sentences {
		e := wordErrors(s.text, hyps[i])
		n, of := found(s.content, hyps[i])
		errs += e
		words += len(strings.Fields(s.text))
		if 2*n >= of {
			mostContent++
		}
		t.Logf("%s: %-26q -> %-28q %d word errors, content %d/%d", label, s.text, hyps[i], e, n, of)
	}
	accuracy = 1 - float64(errs)/float64(words)
	t.Logf("%s: word accuracy %.0f%% (%d errors in %d words); %d/%d sentences with at least half the content words",
		label, 100*accuracy, errs, words, mostContent, len(sentences))
	return accuracy, mostContent
}

// Measured with espeak-ng 1.51 (en-us+klatt) and pocketsphinx-en-us
// 5prealpha: whole utterances 70% word accuracy, 7/8 sentences with at
// least half their content words; streaming 80%, 8/8. Whole-utterance
// decoding never gets "hello computer" (it hears "the multitudes a"). The
// bounds leave margin for other espeak-ng versions.
const (
	minAccuracy    = 0.55
	minMostContent = 5
)

func TestTranscribe(t *testing.T) {
	d := newDecoder(t, modelConfig(t))
	hyps := make([]string, len(sentences))
	for i, s := range sentences {
		h, err := d.Transcribe(speech(t, s.text))
		if err != nil {
			t.Fatal(err)
		}
		hyps[i] = h
	}
	acc, most := score(t, "whole", hyps)
	if acc < minAccuracy || most < minMostContent {
		t.Errorf("word accuracy %.0f%% (want >= %.0f%%), %d sentences mostly recognised (want >= %d)",
			100*acc, 100*minAccuracy, most, minMostContent)
	}

	// Silence and empty input give no words.
	for name, pcm := range map[string][]int16{"silence": make([]int16, 16000), "empty": nil} {
		if h, err := d.Transcribe(pcm); err != nil || h != "" {
			t.Errorf("%s: %q, %v; want no words", name, h, err)
		}
	}
}

func TestStreaming(t *testing.T) {
	d := newDecoder(t, modelConfig(t))
	hyps := make([]string, len(sentences))
	for i, s := range sentences {
		pcm := speech(t, s.text)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		partials := 0
		for off := 0; off < len(pcm); off += 320 { // 20 ms blocks
			if err := d.Process(pcm[off:min(off+320, len(pcm))]); err != nil {
				t.Fatal(err)
			}
			if d.Partial() != "" {
				partials++
			}
		}
		h, err := d.End()
		if err != nil {
			t.Fatal(err)
		}
		if h != "" && partials == 0 {
			t.Errorf("%q: no partial hypothesis before End", s.text)
		}
		hyps[i] = h
	}
	acc, most := score(t, "streamed", hyps)
	if acc < minAccuracy-0.1 || most < minMostContent-1 {
		t.Errorf("streamed: word accuracy %.0f%%, %d sentences mostly recognised", 100*acc, most)
	}
}

func TestCallOrder(t *testing.T) {
	d := newDecoder(t, modelConfig(t))
	if err := d.Process(make([]int16, 320)); !errors.Is(err, ErrState) {
		t.Errorf("Process before Start: %v", err)
	}
	if _, err := d.End(); !errors.Is(err, ErrState) {
		t.Errorf("End before Start: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); !errors.Is(err, ErrState) {
		t.Errorf("Start twice: %v", err)
	}
	if _, err := d.Transcribe(nil); !errors.Is(err, ErrState) {
		t.Errorf("Transcribe during an utterance: %v", err)
	}
	if _, err := d.End(); err != nil {
		t.Fatal(err)
	}
	// Closing mid-utterance is fine.
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.Process(speech(t, "open the door")); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if err := d.Process(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Process after Close: %v", err)
	}
	if _, err := d.End(); !errors.Is(err, ErrClosed) {
		t.Errorf("End after Close: %v", err)
	}
	if _, err := d.Transcribe(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Transcribe after Close: %v", err)
	}
	if p := d.Partial(); p != "" {
		t.Errorf("Partial after Close: %q", p)
	}
}

func TestKeyphrase(t *testing.T) {
	c := modelConfig(t)
	c.Keyphrase = "Hello  Computer"
	// The synthetic voice needs a low threshold: with en-us+klatt nothing
	// is detected at 1e-30, one of the two positives at 1e-40, both at
	// 1e-50 (the default) and below; no false alarm on these negatives
	// even at 1e-200.
	var d *Decoder
	for _, th := range []float64{0, 1e-80} {
		c.KeyphraseThreshold = th
		d = newDecoder(t, c)
		if !d.KeywordSpotting() {
			t.Fatal("KeywordSpotting false")
		}
		for _, s := range []string{"hello computer what time is it", "okay hello computer turn on the lights"} {
			h, err := d.Transcribe(speech(t, s))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("threshold %g: %q -> %q", th, s, h)
			if !strings.Contains(h, "hello computer") {
				t.Errorf("threshold %g: %q: hypothesis %q lacks the keyphrase", th, s, h)
			}
		}
		for _, s := range []string{"turn on the lights", "what is the weather today", "hello there", "my computer is broken"} {
			h, err := d.Transcribe(speech(t, s))
			if err != nil {
				t.Fatal(err)
			}
			if h != "" {
				t.Errorf("threshold %g: %q: false detection %q", th, s, h)
			}
		}
	}

	// Streaming: the detection shows in Partial before the end of input.
	pcm := speech(t, "hello computer what time is it")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	at := -1
	for off := 0; off < len(pcm); off += 320 {
		if err := d.Process(pcm[off:min(off+320, len(pcm))]); err != nil {
			t.Fatal(err)
		}
		if at < 0 && strings.Contains(d.Partial(), "hello computer") {
			at = off
		}
	}
	h, err := d.End()
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 || !strings.Contains(h, "hello computer") {
		t.Errorf("streamed: detected at sample %d, final %q", at, h)
	} else {
		t.Logf("streamed: detected after %.2f of %.2f s", float64(at)/16000, float64(len(pcm))/16000)
	}
}

func TestConfigErrors(t *testing.T) {
	c := modelConfig(t)
	if c.SampleRate != 16000 || c.LM == "" || c.Dict == "" || c.HMM == "" {
		t.Fatalf("DefaultConfig = %+v", c)
	}
	for name, mod := range map[string]func(*Config){
		"hmm":  func(c *Config) { c.HMM = "/nonexistent/hmm" },
		"lm":   func(c *Config) { c.LM = "/nonexistent/lm.bin" },
		"dict": func(c *Config) { c.Dict = "" },
		"dir":  func(c *Config) { c.HMM = c.Dict },
	} {
		bad := c
		mod(&bad)
		if _, err := New(bad); !errors.Is(err, ErrNoModel) {
			t.Errorf("%s: %v, want ErrNoModel", name, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"8 kHz":     func(c *Config) { c.SampleRate = 8000 },
		"threshold": func(c *Config) { c.Keyphrase, c.KeyphraseThreshold = "hello", 2 },
		"blank":     func(c *Config) { c.Keyphrase = "  " },
		"nul":       func(c *Config) { c.Keyphrase = "a\x00b" },
	} {
		bad := c
		mod(&bad)
		if _, err := New(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	// A keyphrase word missing from the dictionary.
	bad := c
	bad.Keyphrase = "hello xyzzyplugh"
	if _, err := New(bad); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown keyphrase word: %v, want ErrConfig", err)
	}
	// The language model is not needed for keyword spotting.
	kws := c
	kws.LM, kws.Keyphrase = "/nonexistent/lm.bin", "hello computer"
	d, err := New(kws)
	if err != nil {
		t.Fatalf("keyphrase without LM: %v", err)
	}
	d.Close()
}

// rssKB returns the process's resident set size.
func rssKB(t testing.TB) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestInitCost measures New's time and RSS increase, and checks that
// Close, and the runtime cleanup of an unreachable decoder, give the
// memory back (no C leak across create/free cycles). It measures in a
// fresh child process: in this one, memory freed by earlier tests' decoders
// is kept by malloc and reused, hiding the cost.
func TestInitCost(t *testing.T) {
	modelConfig(t)
	if os.Getenv(initCostChild) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitCostChild$", "-test.v")
	cmd.Env = append(os.Environ(), initCostChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if _, r, ok := strings.Cut(l, "COST "); ok {
			lines = append(lines, r)
			t.Log(r)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("child output:\n%s", out)
	}
}

const initCostChild = "FASTRTC_SPHINX_INITCOST_CHILD"

func TestInitCostChild(t *testing.T) {
	if os.Getenv(initCostChild) == "" {
		t.Skip("run by TestInitCost")
	}
	c := modelConfig(t)
	kws := c
	kws.Keyphrase = "hello computer"
	for _, tc := range []struct {
		name string
		cfg  Config
		min  int // kB
	}{{"language model", c, 20 << 10}, {"keyword spotting", kws, 2 << 10}} {
		runtime.GC()
		before := rssKB(t)
		start := time.Now()
		d, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		grew := rssKB(t) - before
		// Decoding touches the memory-mapped acoustic model.
		if _, err := d.Transcribe(make([]int16, 16000)); err != nil {
			t.Fatal(err)
		}
		used := rssKB(t) - before
		d.Close()
		after := rssKB(t) - before
		t.Logf("COST %s: New %v, RSS +%.1f MB after New, +%.1f MB after a decode, +%.1f MB after Close",
			tc.name, took.Round(time.Millisecond), float64(grew)/1024, float64(used)/1024, float64(after)/1024)
		if grew < tc.min {
			t.Errorf("%s: RSS grew only %d kB: measurement broken?", tc.name, grew)
		}
	}

	// An unreachable decoder is freed by its runtime cleanup (which runs on
	// a runtime goroutine, some time after a GC).
	live := func() int {
		d, err := New(kws)
		if err != nil {
			t.Fatal(err)
		}
		kb := rssKB(t)
		runtime.KeepAlive(d)
		return kb
	}()
	freed := false
	for deadline := time.Now().Add(3 * time.Second); !freed && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		freed = live-rssKB(t) > 15<<10
	}
	if !freed {
		t.Errorf("dropped decoder not freed: RSS %d kB, %d kB while live", rssKB(t), live)
	}

	// Repeated create/free cycles do not accumulate memory: a leaked
	// keyword-spotting decoder would add about 27 MB each time.
	base := rssKB(t)
	for i := range 8 {
		d, err := New(kws)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			d.Close()
		}
		// Odd iterations drop d for the cleanup.
	}
	var growth int
	for deadline := time.Now().Add(3 * time.Second); ; {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		if growth = rssKB(t) - base; growth < 10<<10 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("COST 8 keyword-spotting decoders created and freed (4 by Close, 4 by cleanup): RSS %+.1f MB", float64(growth)/1024)
	if growth > 25<<10 {
		t.Errorf("RSS grew %d kB over 8 create/free cycles: decoders leak", growth)
	}
}

func BenchmarkTranscribe(b *testing.B) {
	c := modelConfig(b)
	start := time.Now()
	d, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	initTime := time.Since(start)
	pcm := speech(b, "what is the weather today")
	audio := float64(len(pcm)) / SampleRate
	var decode time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := d.Transcribe(pcm); err != nil {
			b.Fatal(err)
		}
		decode += time.Since(t0)
	}
	b.ReportMetric(decode.Seconds()/(audio*float64(b.N)), "rtf")
	b.ReportMetric(initTime.Seconds(), "init-s")
}
