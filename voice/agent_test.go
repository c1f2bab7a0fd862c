package voice

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
)

// textRecorder is a ReplyFunc that records what it was asked (text or speech) and answers
// with 200 ms of tone.
type textRecorder struct {
	mu    sync.Mutex
	texts []string
	utts  []time.Duration
	trans []string
}

func (r *textRecorder) reply(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	r.mu.Lock()
	r.texts = append(r.texts, ReplyText(ctx))
	r.utts = append(r.utts, u.Duration())
	r.trans = append(r.trans, ReplyTranscript(ctx))
	r.mu.Unlock()
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		for range 10 {
			if !yield(fastrtc.AudioFrame{SampleRate: 48000, Channels: 1, Samples: tone(48000, 300, 0.3, 960, 0)}, nil) {
				return
			}
		}
	}
}

func (r *textRecorder) snapshot() ([]string, []time.Duration, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.texts...), append([]time.Duration(nil), r.utts...), append([]string(nil), r.trans...)
}

// TestTextInputReply: FastRTC's send_text_or_audio page posts {webrtc_id, chatbot, state,
// textbox} to /input_hook; the textbox triggers a reply that gets the text, and the JSON
// inputs (a chat history) arrive intact. Text on the data channel does the same; a JSON input
// over its size bound is refused with the field named. The on-input hook sees each post.
func TestTextInputReply(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{}
	posted := make(chan []string, 8)
	s, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithTextInput("textbox")), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.JSON("chatbot", []any{}), fastrtc.JSON("state", map[string]any{}).WithMaxBytes(256), fastrtc.Text("textbox", "")),
		fastrtc.WithOnInput(func(_ *fastrtc.Session, names []string) { posted <- names }))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	history := []any{map[string]any{"role": "user", "content": "hi"}, map[string]any{"role": "assistant", "content": "hello!"}}
	r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "chatbot": history,
		"state": map[string]any{"turn": 2}, "textbox": "What is the weather?"})
	if r.status != http.StatusOK {
		t.Fatalf("input_hook: %d %s", r.status, r.body)
	}
	if names := <-posted; strings.Join(names, ",") != "chatbot,state,textbox" {
		t.Errorf("on-input hook got %v", names)
	}
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) == 1 })
	capt := c.receiveAudio(5 * time.Second) // the first reply's audio
	sess, _ := s.Session(c.id)
	var got []map[string]string
	if err := sess.Inputs().JSON("chatbot", &got); err != nil || len(got) != 2 || got[1]["content"] != "hello!" {
		t.Errorf("chatbot input: %v %v", got, err)
	}
	// Text on the data channel.
	if err := c.sendText("and tomorrow?"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) == 2 })
	if err := c.sendText(`{"type":"text","data":"thanks"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) == 3 })
	texts, utts, _ := rec.snapshot()
	if texts[0] != "What is the weather?" || texts[1] != "and tomorrow?" || texts[2] != "thanks" || utts[0] != 0 {
		t.Errorf("replies got texts %q, utterances %v", texts, utts)
	}
	// Too much JSON: refused, with the field named; the session goes on.
	r = postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "state": map[string]any{"big": strings.Repeat("x", 300)}})
	if r.status != http.StatusBadRequest || r.json["field"] != "state" {
		t.Errorf("oversized JSON input: %d %s", r.status, r.body)
	}
	// An empty textbox (the page clearing it) triggers nothing.
	postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "textbox": ""})
	time.Sleep(300 * time.Millisecond) // the time a reply would have had to start (none may)
	if texts, _, _ := rec.snapshot(); len(texts) != 3 {
		t.Errorf("%d replies after an empty textbox, want 3", len(texts))
	}
	waitFor(t, 5*time.Second, func() bool { out, _, _ := capt.snapshot(); return len(out) >= 48000*18/100 }) // replies interrupt each other; the last plays whole
}

// TestOutputsBeforeStart: an EventSource opened before the connection exists is held open
// until it does (FastRTC's webrtc_vs_websocket page), then gets its outputs; an id that never
// comes is 404 after the wait. LatestOutput returns the last value.
func TestOutputsBeforeStart(t *testing.T) {
	t.Parallel()
	var once sync.Once
	emit := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		once.Do(func() {
			_ = s.Emit(map[string]int{"n": 5})
			_ = s.Transcript(fastrtc.RoleUser, "hello there")
		})
		return fastrtc.AudioFrame{}, nil
	})
	s, srv := newTestStream(t, emit, fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithOutputsWait(3*time.Second))
	// In front of the stream: tells when the server has the request for the outputs.
	asked := make(chan struct{}, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/outputs" && r.URL.Query().Get("webrtc_id") != "never" {
			select {
			case asked <- struct{}{}:
			default:
			}
		}
		srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c := newTestClient(t, front.URL, clientOpts{sendAudio: true, recvAudio: true})
	lines := make(chan string, 16)
	go func() {
		res, err := http.Get(front.URL + "/outputs?webrtc_id=" + c.id) // before the offer
		if err != nil {
			lines <- "error: " + err.Error()
			return
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				lines <- sc.Text()
			}
		}
	}()
	<-asked
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendAudio(ctx, tone(48000, 440, 0.3, 48000, 0), nil)
	for _, want := range []string{`data: {"n":5}`, `data: {"transcript":{"role":"user","text":"hello there"}}`} {
		select {
		case l := <-lines:
			if l != want {
				t.Errorf("SSE %q, want %q", l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no SSE line %q", want)
		}
	}
	if m := c.waitMsg("transcript", 5*time.Second); m["data"].(map[string]any)["text"] != "hello there" {
		t.Errorf("transcript message %v", m)
	}
	v, ok, err := s.LatestOutput(c.id)
	if err != nil || !ok || !strings.Contains(string(v), "transcript") {
		t.Errorf("LatestOutput: %s %v %v", v, ok, err)
	}
	start := time.Now()
	res, err := http.Get(front.URL + "/outputs?webrtc_id=never")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || time.Since(start) < 2*time.Second {
		t.Errorf("unknown id: %d after %v, want 404 after the 3 s wait", res.StatusCode, time.Since(start))
	}
}

// scriptTranscriber returns its lines in order.
type scriptTranscriber struct {
	mu    sync.Mutex
	lines []string
	calls int
}

func (s *scriptTranscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *scriptTranscriber) Transcribe(ctx context.Context, a fastrtc.AudioFrame) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.lines) == 0 {
		return "", nil
	}
	l := s.lines[0]
	s.lines = s.lines[1:]
	return l, nil
}

// TestReplyOnStopWords: four turns, transcribed (scripted) as: no phrase; the phrase and a
// request; the phrase alone; a request. Replies go to the second turn (with the words after
// the phrase) and the fourth, "stopword" is sent twice, the first turn gets nothing.
func TestReplyOnStopWords(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{}
	tr := &scriptTranscriber{lines: []string{"hey there how are you", "Hello, Computer! what time is it", "hello computer", "tell me a joke"}}
	s, srv := newTestStream(t, NewReplyOnStopWords(rec.reply, tr, []string{"hello computer"}), fastrtc.Audio, fastrtc.SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	var mu sync.Mutex
	stopwords := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case m := <-c.msgs:
				if m["type"] == "stopword" {
					mu.Lock()
					stopwords++
					mu.Unlock()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	pcm, _ := speechFixture(t)
	audio := append(append([]int16(nil), pcm...), pcm...) // four utterances
	done := c.sendAudio(ctx, audio, nil)
	c.receiveAudio(15 * time.Second) // the first reply is to the second turn
	<-done
	heard(t, s, pcmDuration(len(audio)))
	// Every turn transcribed, both replies started, both stopword messages in.
	eventually(10*time.Second, func() bool {
		_, _, trans := rec.snapshot()
		mu.Lock()
		defer mu.Unlock()
		return tr.count() >= 4 && len(trans) >= 2 && stopwords >= 2
	})
	_, _, trans := rec.snapshot()
	mu.Lock()
	defer mu.Unlock()
	if calls := tr.count(); len(trans) != 2 || trans[0] != "what time is it" || trans[1] != "tell me a joke" || stopwords != 2 || calls != 4 {
		t.Errorf("replies to %q, %d stopword messages, %d transcriptions; want [what time is it, tell me a joke], 2, 4", trans, stopwords, calls)
	}
}

// gateCluster is a one-node Cluster whose Admit waits for open: it holds a session in the
// window where it is registered (found by /input_hook) but its handler is not made yet.
type gateCluster struct {
	admitting chan string
	open      chan struct{}
}

func (g *gateCluster) NodeID() string                 { return "gate" }
func (g *gateCluster) Attach(s *fastrtc.Stream) error { return nil }
func (g *gateCluster) Admit(ctx context.Context, id string) (func(), error) {
	g.admitting <- id
	select {
	case <-g.open:
		return func() {}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (g *gateCluster) Forward(ctx context.Context, f fastrtc.Forwarded, w http.ResponseWriter) error {
	http.Error(w, "no other node", http.StatusNotFound)
	return nil
}

// TestTextPostedWhileAdmitted: text posted to /input_hook while the session is registered
// but its handler not yet made (a cluster admitting it) is answered once the session starts,
// not lost (the post found a session with no handler to tell), and after the start-up
// greeting began (which it interrupts, as later text does), not cancelled by it.
func TestTextPostedWhileAdmitted(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{}
	greeted := make(chan struct{})
	greet := func(ctx context.Context, s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error] {
		close(greeted)
		return func(func(fastrtc.AudioFrame, error) bool) {}
	}
	g := &gateCluster{admitting: make(chan string, 1), open: make(chan struct{})}
	_, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithTextInput("textbox"), WithStartup(greet)), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Text("textbox", "")), fastrtc.WithCluster(g))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	answered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		answered <- c.conn.Connect(ctx) // returns once connected
	}()
	if id := <-g.admitting; id != c.id {
		t.Fatalf("admitting %q, want %q", id, c.id)
	}
	r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "textbox": "early words"})
	if r.status != http.StatusOK {
		t.Fatalf("input_hook during admission: %d %s", r.status, r.body)
	}
	close(g.open)
	if err := <-answered; err != nil {
		t.Fatalf("offer: %v", err)
	}
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) == 1 })
	<-greeted
	if texts, _, _ := rec.snapshot(); texts[0] != "early words" {
		t.Errorf("reply got text %q, want the early post", texts[0])
	}
	capt := c.receiveAudio(5 * time.Second) // its reply (200 ms of tone) plays
	waitFor(t, 5*time.Second, func() bool { out, _, _ := capt.snapshot(); return len(out) >= 48000*15/100 })
}

// TestStopWordsTurnCancelled: a turn whose reply was cancelled (the user spoke again) while
// it was being transcribed is not answered, and does not lose the armed state: an armed
// session stays armed, and a cancelled turn that held the phrase arms it.
func TestStopWordsTurnCancelled(t *testing.T) {
	t.Parallel()
	g := &stopWordGate{phrases: [][]string{words("hello computer")}}
	s := liveSession(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		line       string
		armed      bool
		wantArmed  bool
		wantAnswer bool
	}{
		{"what is the time", true, true, false},     // cancelled: still armed for the next turn
		{"hello computer", false, true, false},      // cancelled, held the phrase: armed
		{"nice weather today", false, false, false}, // cancelled, nothing: stays quiet
		{"hello computer what time", false, true, false},
	} {
		g.t = &scriptTranscriber{lines: []string{c.line}}
		var armed atomic.Bool
		armed.Store(c.armed)
		_, ok, err := g.admit(cancelled, s, fastrtc.AudioFrame{}, &armed)
		if err != nil || ok != c.wantAnswer || armed.Load() != c.wantArmed {
			t.Errorf("%q (armed %v), cancelled: answer %v armed %v err %v; want answer %v armed %v",
				c.line, c.armed, ok, armed.Load(), err, c.wantAnswer, c.wantArmed)
		}
	}
	// Not cancelled, armed: the turn is answered and the state spent.
	g.t = &scriptTranscriber{lines: []string{"what is the time"}}
	var armed atomic.Bool
	armed.Store(true)
	ctx, ok, err := g.admit(context.Background(), s, fastrtc.AudioFrame{}, &armed)
	if err != nil || !ok || armed.Load() || ReplyTranscript(ctx) != "what is the time" {
		t.Errorf("armed turn: answer %v armed %v transcript %q err %v", ok, armed.Load(), ReplyTranscript(ctx), err)
	}
}

// TestTextAnswerToSendInput: with WithReplyInputs, a text reply asks for the inputs
// (send_input), and a page that answers by posting all its inputs, the text box unchanged
// (as FastRTC's pages do), answers that reply: it does not start another (which would ask
// again, and loop without ever playing).
func TestTextAnswerToSendInput(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{}
	_, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithTextInput("textbox"), WithReplyInputs()), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Text("textbox", ""), fastrtc.Number("temperature", 0.5)))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	all := map[string]any{"webrtc_id": c.id, "textbox": "hello there", "temperature": 0.7}
	if r := postJSON(t, srv.URL+"/input_hook", all); r.status != http.StatusOK {
		t.Fatalf("input_hook: %d %s", r.status, r.body)
	}
	c.waitMsg("send_input", 5*time.Second)
	if r := postJSON(t, srv.URL+"/input_hook", all); r.status != http.StatusOK { // the page's answer
		t.Fatalf("input_hook: %d %s", r.status, r.body)
	}
	capt := c.receiveAudio(5 * time.Second)
	waitFor(t, 5*time.Second, func() bool { out, _, _ := capt.snapshot(); return len(out) >= 48000*15/100 })
	if texts, _, _ := rec.snapshot(); len(texts) != 1 || texts[0] != "hello there" {
		t.Errorf("replies to %q, want one to \"hello there\"", texts)
	}
	// The same text posted again later is a new message: it is answered.
	if r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "textbox": "hello there"}); r.status != http.StatusOK {
		t.Fatalf("input_hook: %d %s", r.status, r.body)
	}
	c.waitMsg("send_input", 5*time.Second)
	postJSON(t, srv.URL+"/input_hook", all)
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) == 2 })
}

// TestStopWordsBystander: with ReplyOnStopWords, speech over a playing reply that does not
// hold the stop phrase (a bystander, the user talking to someone else) neither cuts the reply
// nor is answered; speech that holds it does cut the reply, and is answered.
func TestStopWordsBystander(t *testing.T) {
	t.Parallel()
	pcm, _ := speechFixture(t)
	const r = 48000
	b := pcm[r*3557/1000 : r*5200/1000] // utterance B, 1.64 s
	// T1: utterance A and its pause (0-3 s): answered with a 4 s reply. T2 at 4.0 s, over
	// it: a bystander. T3 at 8.0 s, after it: addressed, answered (reply 2). T4 at 11.0 s,
	// over reply 2: addressed, cuts it (reply 3).
	audio := append([]int16(nil), pcm[:3*r]...)
	for _, at := range []int{4, 8, 11} {
		audio = append(audio, make([]int16, at*r-len(audio))...)
		audio = append(audio, b...)
	}
	audio = append(audio, make([]int16, 2*r)...)
	tr := &scriptTranscriber{lines: []string{"hello computer what time is it", "okay thanks see you later",
		"hello computer tell me more", "hello computer stop"}}
	rec := &replyRecorder{replyLen: 4 * time.Second}
	s, srv := newTestStream(t, NewReplyOnStopWords(rec.reply, tr, []string{"hello computer"}), fastrtc.Audio, fastrtc.SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := c.sendAudio(ctx, audio, nil)
	capt := c.receiveAudio(10 * time.Second)
	<-done
	heard(t, s, pcmDuration(len(audio)))
	// What played until 0.5 s after the audio ended is measured: reply 3 is still playing
	// then (a measuring time, not a wait for an event).
	time.Sleep(500 * time.Millisecond)
	utts, finished, cancelled := rec.snapshot()
	out, _, _ := capt.snapshot()
	calls := tr.count()
	t.Logf("replies %d, finished %d, cancelled %d, %.2f s of reply audio, %d transcriptions", len(utts), finished, cancelled, float64(len(out))/r, calls)
	if len(utts) != 3 || calls != 4 {
		t.Errorf("replies %d, transcriptions %d; want 3 (T1, T3, T4), 4", len(utts), calls)
	}
	// Reply 1 plays whole (4 s), reply 2 is cut by T4 (its audio queued ahead is dropped, so
	// the generator may have finished), reply 3 plays whole: 8 s and some of reply 2.
	switch got := float64(len(out)) / r; {
	case got < 7.8:
		t.Errorf("%.2f s of reply audio: a reply was cut short (by the bystander?)", got)
	case got > 11:
		t.Errorf("%.2f s of reply audio: T4 did not cut reply 2", got)
	}
}

// TestTextFlood: texts posted faster than one per 250 ms start at most one reply per 250 ms,
// and the latest text is the one answered last. (The first text's reply starts at once, but
// the next may cut it before it reaches the reply function: which texts are seen is timing.)
func TestTextFlood(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{}
	_, srv := newTestStream(t, NewReplyOnPause(rec.reply, WithTextInput("textbox")), fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Text("textbox", "")))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	start := time.Now()
	for i := range 20 {
		if r := postJSON(t, srv.URL+"/input_hook", map[string]any{"webrtc_id": c.id, "textbox": fmt.Sprintf("t%d", i)}); r.status != http.StatusOK {
			t.Fatalf("input_hook: %d %s", r.status, r.body)
		}
	}
	posting := time.Since(start)
	waitFor(t, 5*time.Second, func() bool { texts, _, _ := rec.snapshot(); return len(texts) > 0 && texts[len(texts)-1] == "t19" })
	answered := time.Since(start) // the last text's reply started: replies span this long
	texts, _, _ := rec.snapshot()
	// One reply at once, then at most one per 250 ms until the last (counted over the time
	// until the last text was answered: under load the gap's timer fires late, and a reply
	// may start after the posting ended).
	if most := 2 + int(answered/(250*time.Millisecond)); len(texts) > most {
		t.Errorf("%d replies to 20 texts posted in %v (the last answered after %v), want at most %d: %q", len(texts), posting, answered, most, texts)
	}
}
