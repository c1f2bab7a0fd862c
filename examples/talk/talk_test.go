package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/loadgen"
	"github.com/fastrtc-go/fastrtc/internal/talkagent"
	"github.com/fastrtc-go/fastrtc/internal/wav"
	"github.com/fastrtc-go/fastrtc/media"
	"github.com/fastrtc-go/fastrtc/speech"
)

// say makes speech with the espeak-ng command line (another path than the library's), at 48
// kHz, with silence around it.
func say(t *testing.T, text string) []int16 {
	t.Helper()
	for _, tool := range []string{"espeak-ng", "sox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "raw.wav"), filepath.Join(dir, "out.wav")
	if b, err := exec.Command("espeak-ng", "-v", "en-us", "-s", "150", "-w", raw, text).CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v %s", err, b)
	}
	if b, err := exec.Command("sox", "-D", raw, "-r", "48000", "-c", "1", "-b", "16", "-e", "signed-integer", out,
		"pad", "0.5", "2.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, b)
	}
	pcm, _, _, err := wav.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return pcm
}

// talkSession is a client of the talk example that collects transcript lines and reply audio.
type talkSession struct {
	c     *client.Conn
	mu    sync.Mutex
	lines []string // "role: text"
	stops int
	audio []int16
	loud  time.Time // when the first loud reply frame arrived

	partials []partialLine // the user's partial transcripts, in order
}

// partialLine is one transcript_partial message, with how many lines had arrived before it.
type partialLine struct {
	text        string
	final       bool
	linesBefore int
}

func dialTalk(t *testing.T, base string) *talkSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, base, &client.Options{SendAudio: true, ReceiveAudio: true, PaceAudio: true, SettingEngine: loadgen.Loopback})
	if err != nil {
		t.Fatal(err)
	}
	ts := &talkSession{c: c}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		for {
			m, err := c.Message(context.Background())
			if err != nil {
				return
			}
			ts.mu.Lock()
			switch m.Type {
			case "transcript":
				var l struct{ Role, Text string }
				_ = json.Unmarshal(m.Data, &l)
				ts.lines = append(ts.lines, l.Role+": "+l.Text)
			case "stopword":
				ts.stops++
			case "transcript_partial":
				var l struct {
					Role, Text string
					Final      bool
				}
				_ = json.Unmarshal(m.Data, &l)
				ts.partials = append(ts.partials, partialLine{l.Text, l.Final, len(ts.lines)})
			}
			ts.mu.Unlock()
		}
	}()
	go func() {
		for {
			f, err := c.ReadAudio(context.Background())
			if err != nil {
				return
			}
			e := 0.0
			for _, x := range f.Samples {
				e += float64(x) * float64(x)
			}
			ts.mu.Lock()
			ts.audio = append(ts.audio, f.Samples...)
			if ts.loud.IsZero() && len(f.Samples) > 0 && math.Sqrt(e/float64(len(f.Samples))) > 300 {
				ts.loud = time.Now()
			}
			ts.mu.Unlock()
		}
	}()
	return ts
}

func (ts *talkSession) snapshot() ([]string, int, float64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	e := 0.0
	for _, s := range ts.audio {
		e += float64(s) * float64(s)
	}
	loud := 0.0
	if len(ts.audio) > 0 {
		loud = math.Sqrt(e / float64(len(ts.audio)))
	}
	return append([]string(nil), ts.lines...), ts.stops, loud
}

func (ts *talkSession) send(t *testing.T, pcm []int16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ts.c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm}); err != nil {
		t.Fatal(err)
	}
}

func waitLines(t *testing.T, ts *talkSession, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if lines, _, _ := ts.snapshot(); len(lines) >= n {
			return lines
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines, _, _ := ts.snapshot()
	t.Fatalf("transcript %q: fewer than %d lines after %v", lines, n, d)
	return nil
}

func newTalkServer(t *testing.T, wake string) string {
	t.Helper()
	if _, err := os.Stat("/usr/share/pocketsphinx/model/en-us"); err != nil {
		t.Skip("PocketSphinx model not installed (apt-get install pocketsphinx-en-us)")
	}
	stt, err := speech.NewPocketSphinx(speech.PocketSphinxOptions{Decoders: 1})
	if err != nil {
		t.Fatal(err)
	}
	tts, err := speech.NewEspeak(speech.EspeakOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStream(&talkagent.Agent{STT: stt, TTS: tts}, wake, nil, fastrtc.WithSettingEngine(loadgen.Loopback))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); _ = s.Close(); _ = stt.Close(); _ = tts.Close() })
	return srv.URL
}

// TestTalkByVoiceAndText: a spoken question is transcribed (its words appear in the user's
// line), answered "You said: ..." in the transcript and with audible speech; then a typed
// line (posted as FastRTC's pages post it) is answered the same way.
func TestTalkByVoiceAndText(t *testing.T) {
	base := newTalkServer(t, "")
	ts := dialTalk(t, base)
	q := say(t, "what is the weather today")
	t0 := time.Now()
	ts.send(t, q)
	speechEnd := t0.Add(time.Duration(len(q)-48000*25/10) * time.Second / 48000) // before the 2.5 s pad
	lines := waitLines(t, ts, 2, 10*time.Second)
	t.Logf("voice: %q", lines)
	if !strings.HasPrefix(lines[0], "user: ") || !strings.Contains(lines[0], "weather") || !strings.HasPrefix(lines[1], "assistant: You said: ") {
		t.Errorf("transcript %q: want the user's words (weather) and the answer", lines)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, _, loud := ts.snapshot(); loud < 300 {
		t.Errorf("reply audio RMS %.0f: no speech came back", loud)
	}
	ts.mu.Lock()
	t.Logf("turn latency (end of speech to the first reply audio, transcription and synthesis included): %v", ts.loud.Sub(speechEnd).Round(time.Millisecond))
	ts.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"webrtc_id": ts.c.ID(), "textbox": "hello from the keyboard"})
	res, err := http.Post(base+"/input_hook", "application/json", bytes.NewReader(body))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("input_hook: %v %v", err, res)
	}
	res.Body.Close()
	// The user's words showed while they spoke: partials before the line, the last one final.
	ts.mu.Lock()
	partials := append([]partialLine(nil), ts.partials...)
	ts.mu.Unlock()
	t.Logf("partials: %+v", partials)
	live, final := 0, ""
	for _, p := range partials {
		if p.linesBefore == 0 && !p.final && p.text != "" {
			live++
		}
		if p.final && p.linesBefore == 0 {
			final = p.text
		}
	}
	if live == 0 || !strings.Contains(final, "weather") {
		t.Errorf("partial transcripts %+v: want some while speaking, then a final one with the words", partials)
	}
	lines = waitLines(t, ts, 4, 10*time.Second)
	if lines[2] != "user: hello from the keyboard" || lines[3] != "assistant: You said: hello from the keyboard" {
		t.Errorf("typed turn: %q", lines[2:])
	}
}

// TestTalkWakePhrase: with -wake, a question without the phrase gets no answer; "hello
// computer, what is the weather today" gets "stopword" and an answer to the words after it.
func TestTalkWakePhrase(t *testing.T) {
	base := newTalkServer(t, "hello computer")
	ts := dialTalk(t, base)
	ts.send(t, say(t, "turn on the lights"))
	time.Sleep(1500 * time.Millisecond)
	if lines, stops, _ := ts.snapshot(); len(lines) != 0 || stops != 0 {
		t.Errorf("no wake phrase, yet transcript %q, %d stopwords", lines, stops)
	}
	ts.send(t, say(t, "hello computer what is the weather today"))
	lines := waitLines(t, ts, 2, 10*time.Second)
	_, stops, _ := ts.snapshot()
	t.Logf("wake: %q", lines)
	if stops != 1 || !strings.Contains(lines[0], "weather") || strings.Contains(lines[0], "computer") || !strings.HasPrefix(lines[1], "assistant: You said: ") {
		t.Errorf("transcript %q, %d stopwords; want the request after the phrase, answered, 1 stopword", lines, stops)
	}
}
