package sphinx

import (
	"math"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/wav"
)

func gen(t *testing.T, text string, extra ...string) []int16 {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.wav")
	args := append(append([]string{}, extra...), "-w", in, text)
	if b, err := exec.Command("espeak-ng", args...).CombinedOutput(); err != nil {
		t.Fatal(err, string(b))
	}
	if b, err := exec.Command("sox", "-D", in, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", out).CombinedOutput(); err != nil {
		t.Fatal(err, string(b))
	}
	s, r, c, err := wav.ReadFile(out)
	if err != nil || r != 16000 || c != 1 {
		t.Fatal(err, r, c)
	}
	return s
}

var sents = []string{"hello computer", "what is the weather today", "turn on the lights", "please tell me the time", "open the door", "call my mother"}

func TestExplore(t *testing.T) {
	c, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("init %v", time.Since(t0))
	for _, s := range sents {
		pcm := gen(t, s)
		var sum, peak float64
		for _, v := range pcm { sum += float64(v)*float64(v); peak = math.Max(peak, math.Abs(float64(v))) }
		h, _ := d.Transcribe(pcm)
		d.Start()
		for i := 0; i < len(pcm); i += 1600 { d.Process(pcm[i:min(i+1600, len(pcm))]) }
		h2, _ := d.End()
		t.Logf("%q (%.2fs rms %.0f peak %.0f) -> full %q stream %q", s, float64(len(pcm))/16000, math.Sqrt(sum/float64(len(pcm))), peak, h, h2)
	}
}
