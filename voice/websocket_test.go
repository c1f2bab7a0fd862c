package voice

// TestWebSocketReplyOnPause: the two-utterance fixture over /websocket/offer gets two
// replies, with FastRTC's log messages.
func TestWebSocketReplyOnPause(t *testing.T) {
	rec := &replyRecorder{replyLen: 500 * time.Millisecond}
	_, srv := newTestStream(t, NewReplyOnPause(rec.reply), Audio, SendReceive)
	c := dialWS(t, wsURL(srv, "/websocket/offer"), nil, true)
	c.send(map[string]any{"event": "start", "websocket_id": "rop"})
	pcm, truth := speechFixture(t) // 48 kHz: the handler's input rate
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := c.streamAudio(ctx, pcm, 48000, false, nil)
	<-done
	media, other := c.collectMedia(1500 * time.Millisecond)
	utts, finished, _ := rec.snapshot()
	if len(utts) != 2 {
		t.Fatalf("%d replies (utterances %v), want 2", len(utts), utts)
	}
	for i, u := range utts {
		if want := truth[i] + 0.2; math.Abs(u.Seconds()-want) > 0.3 { // plus 0.1 s padding each side
			t.Errorf("utterance %d: %.2f s, want %.2f ± 0.3", i, u.Seconds(), want)
		}
	}
	if finished != 2 {
		t.Errorf("%d replies finished", finished)
	}
	var logs []string
	for _, m := range other {
		if m.str("type") == "log" {
			logs = append(logs, m.str("data"))
		}
	}
	want := "started_talking pause_detected response_starting started_talking pause_detected response_starting"
	if got := strings.Join(logs, " "); got != want {
		t.Errorf("log messages %q, want %q", got, want)
	}
	var out []int16
	for _, m := range media {
		out = append(out, mediaPCM(t, m, false)...)
	}
	if got := float64(len(out)) / 24000; math.Abs(got-1) > 0.1 {
		t.Errorf("received %.2f s of reply audio, want 1.0", got)
	}
	if f := zeroCrossFreq(out[1200:10800], 24000); math.Abs(f-300) > 6 {
		t.Errorf("reply tone at %.1f Hz, want 300", f)
	}
}
