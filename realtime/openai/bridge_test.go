package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/wav"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/realtime/openai"
	"github.com/fastrtc-go/fastrtc/voice"
)

func sin(freq float64, i, rate int) float64 {
	return math.Sin(2 * math.Pi * freq * float64(i) / float64(rate))
}

// toneShare is the share of s's energy at freq (Goertzel).
func toneShare(s []int16, freq float64, rate int) float64 {
	var total, s1, s2 float64
	k := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	for _, v := range s {
		x := float64(v)
		total += x * x
		s0 := x + k*s1 - s2
		s2, s1 = s1, s0
	}
	if total == 0 {
		return 0
	}
	return 2 * (s1*s1 + s2*s2 - k*s1*s2) / (float64(len(s)) * total)
}

type weatherArgs struct {
	City string `json:"city" desc:"the city"`
	Days int    `json:"days,omitempty"`
}

// newBridgeStream serves a stream whose handler is the bridge to model.
func newBridgeStream(t *testing.T, model *modelServer, o openai.Options) (*fastrtc.Stream, *httptest.Server) {
	t.Helper()
	o.APIKey, o.BaseURL = "sk-test", model.url()
	agent, err := openai.New(o)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Text("instructions", ""), fastrtc.Text("question", "")))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stream.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = stream.Close()
		if st := stream.Stats(); st.Sessions != 0 || st.CodecContexts != 0 {
			t.Errorf("after Close: %d sessions, %d codec contexts", st.Sessions, st.CodecContexts)
		}
	})
	return stream, srv
}

func dialPCM(t *testing.T, ctx context.Context, srv *httptest.Server) *client.WebSocketConn {
	t.Helper()
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 16000, Channels: 1, PaceAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestBridge drives one session through the bridge: configuration, the user's audio at the
// model's rate, transcripts of both sides, a reply delivered faster than real time and paced,
// barge-in (audio cleared within 100 ms, the response cancelled, the item truncated to what
// the client received), a function call with typed arguments, and a model error that ends
// only that session.
func TestBridge(t *testing.T) {
	t.Parallel()
	model := newModelServer(t)
	var gotCity string
	weather := realtime.Func("get_weather", "the weather in a city", func(ctx context.Context, s *fastrtc.Session, a weatherArgs) (any, error) {
		gotCity = a.City
		return map[string]string{"forecast": "sunny in " + a.City}, nil
	})
	_, srv := newBridgeStream(t, model, openai.Options{Instructions: "Be brief.", Voice: "marin", Tools: []realtime.Tool{weather}, InstructionsInput: "instructions"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialPCM(t, ctx, srv)
	m := model.accept(ctx)

	// The configuration: GA schema.
	up := m.next(ctx, "session.update")
	sess := up.Raw["session"].(map[string]any)
	audio := sess["audio"].(map[string]any)
	in, out := audio["input"].(map[string]any), audio["output"].(map[string]any)
	if sess["type"] != "realtime" || sess["instructions"] != "Be brief." || sess["model"] != "gpt-realtime" ||
		in["format"].(map[string]any)["type"] != "audio/pcm" || in["format"].(map[string]any)["rate"] != 24000.0 ||
		in["turn_detection"].(map[string]any)["type"] != "server_vad" || out["voice"] != "marin" {
		t.Fatalf("session.update: %v", up.Raw)
	}
	tools := sess["tools"].([]any)
	if len(tools) != 1 || tools[0].(map[string]any)["name"] != "get_weather" ||
		!strings.Contains(mustJSON(tools[0]), `"required":["city"]`) {
		t.Fatalf("tools: %s", mustJSON(tools))
	}
	if !strings.Contains(m.query, "model=gpt-realtime") {
		t.Errorf("query %q", m.query)
	}

	// The user's audio reaches the model as 24 kHz PCM: 1 s of 440 Hz sent at 16 kHz.
	tone := make([]int16, 320)
	for i := 0; i < 50; i++ {
		for j := range tone {
			tone[j] = int16(6000 * sin(440, i*320+j, 16000))
		}
		if err := c.SendAudio(ctx, fastrtc.AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(m.appended()) < 23000 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := m.appended()
	if len(got) < 23000 || len(got) > 25500 {
		t.Fatalf("the model got %d samples for 1 s of audio, want ~24000 (24 kHz)", len(got))
	}
	if share := toneShare(got[2400:21600], 440, 24000); share < 0.8 {
		t.Fatalf("the model's audio is not the 440 Hz tone at 24 kHz: share %.2f", share)
	}

	// A turn: transcripts, then a 3 s reply sent at once.
	m.send(map[string]any{"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "item_u1"})
	m.send(map[string]any{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000, "item_id": "item_u1"})
	m.send(map[string]any{"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u1", "content_index": 0, "transcript": "What is the weather?"})
	m.send(map[string]any{"type": "response.created", "response": map[string]any{"id": "resp_1", "status": "in_progress"}})
	m.send(map[string]any{"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0, "item": map[string]any{"id": "item_a1", "type": "message", "role": "assistant"}})
	m.audioDeltas("resp_1", "item_a1", 600, 3*time.Second)
	m.send(map[string]any{"type": "response.output_audio_transcript.done", "response_id": "resp_1", "item_id": "item_a1", "transcript": "It is sunny today, and tomorrow..."})

	var received time.Duration
	for received < time.Second {
		f, err := c.ReadAudio(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
			received += time.Duration(len(f.Samples)) * time.Second / time.Duration(f.SampleRate)
		}
	}
	// Barge-in, 1 s into a reply whose 3 s were all generated.
	bargeIn := time.Now()
	m.send(map[string]any{"type": "input_audio_buffer.speech_started", "audio_start_ms": 2000, "item_id": "item_u2"})
	cancelEv := m.next(ctx, "response.cancel")
	trunc := m.next(ctx, "conversation.item.truncate")
	var last time.Time
	for {
		rctx, rcancel := context.WithTimeout(ctx, 400*time.Millisecond)
		f, err := c.ReadAudio(rctx)
		rcancel()
		if err != nil {
			break
		}
		if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
			received += time.Duration(len(f.Samples)) * time.Second / time.Duration(f.SampleRate)
			last = time.Now()
		}
	}
	stop := time.Duration(0)
	if !last.IsZero() {
		stop = last.Sub(bargeIn)
	}
	t.Logf("barge-in: last reply audio %v after speech_started; cancel after %v; audio_end_ms %v, client received %v",
		stop, cancelEv.At.Sub(bargeIn), trunc.Raw["audio_end_ms"], received)
	if stop > 100*time.Millisecond {
		t.Errorf("reply audio went on %v after the user spoke (want within 100 ms)", stop)
	}
	audioEnd := time.Duration(trunc.Raw["audio_end_ms"].(float64) * float64(time.Millisecond))
	if trunc.Raw["item_id"] != "item_a1" || trunc.Raw["content_index"] != 0.0 || (audioEnd-received).Abs() > 60*time.Millisecond {
		t.Errorf("truncate %v: want item_a1 at the %v the client received", trunc.Raw, received)
	}

	// Transcripts of both sides reached the client.
	var lines []string
	for len(lines) < 2 {
		msg, err := c.Message(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type == fastrtc.MessageTranscript {
			lines = append(lines, string(msg.Data))
		}
	}
	if !strings.Contains(lines[0], `"role":"user"`) || !strings.Contains(lines[0], "What is the weather?") ||
		!strings.Contains(lines[1], `"role":"assistant"`) || !strings.Contains(lines[1], "It is sunny") {
		t.Errorf("transcripts %q", lines)
	}

	// A function call with typed arguments; its result goes back, then a response.
	m.send(map[string]any{"type": "response.function_call_arguments.done", "response_id": "resp_2", "item_id": "item_f1",
		"output_index": 0, "call_id": "call_1", "name": "get_weather", "arguments": `{"city":"Paris"}`})
	item := m.next(ctx, "conversation.item.create")
	it := item.Raw["item"].(map[string]any)
	if it["type"] != "function_call_output" || it["call_id"] != "call_1" || !strings.Contains(it["output"].(string), "sunny in Paris") || gotCity != "Paris" {
		t.Errorf("function call output %v (city %q)", item.Raw, gotCity)
	}
	m.next(ctx, "response.create")

	// Instructions from the session's input update the live session.
	if err := c.SetInput(ctx, map[string]any{"instructions": "Speak French."}); err != nil {
		t.Fatal(err)
	}
	if up := m.next(ctx, "session.update"); up.Raw["session"].(map[string]any)["instructions"] != "Speak French." {
		t.Errorf("instructions update %v", up.Raw)
	}

	// A model error ends the session, and the client is told.
	m.send(map[string]any{"type": "error", "event_id": "ev_e", "error": map[string]any{"type": "invalid_request_error", "code": "invalid_value", "message": "Invalid value: 'x'."}})
	for {
		msg, err := c.Message(ctx)
		if err != nil {
			t.Fatalf("no error message before the end: %v", err)
		}
		if msg.Type == "error" {
			if !strings.Contains(msg.Message, "Invalid value") {
				t.Errorf("error message %q", msg.Message)
			}
			break
		}
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end after the model's error")
	}
}

// TestBridgeReconnect: a dropped model connection is reopened once (configured again, the
// client warned); a second drop ends the session with realtime.ErrConnection's message.
func TestBridgeReconnect(t *testing.T) {
	t.Parallel()
	model := newModelServer(t)
	stream, srv := newBridgeStream(t, model, openai.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialPCM(t, ctx, srv)
	m := model.accept(ctx)
	m.next(ctx, "session.update")
	sessions := stream.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("sessions %v", sessions)
	}
	sess, err := stream.Session(sessions[0])
	if err != nil {
		t.Fatal(err)
	}
	_ = m.ws.Close()
	m2 := model.accept(ctx)
	m2.next(ctx, "session.update")
	for {
		msg, err := c.Message(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type == "warning" && strings.Contains(msg.Message, "reopened") {
			break
		}
	}
	// The new connection carries the audio.
	frame := fastrtc.AudioFrame{SampleRate: 16000, Channels: 1, Samples: make([]int16, 320)}
	for len(m2.appended()) == 0 {
		if err := c.SendAudio(ctx, frame); err != nil {
			t.Fatal(err)
		}
	}
	_ = m2.ws.Close()
	select {
	case <-sess.Done():
	case <-ctx.Done():
		t.Fatal("the session outlived a second drop")
	}
	if !errors.Is(sess.Err(), realtime.ErrConnection) {
		t.Errorf("session error %v, want ErrConnection", sess.Err())
	}
}

// TestNewOptions: no key, a bad base URL and a refused handshake are clear errors.
func TestNewOptions(t *testing.T) {
	t.Parallel()
	if _, err := openai.New(openai.Options{}); !errors.Is(err, realtime.ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
	if _, err := openai.New(openai.Options{APIKey: "k", BaseURL: "http://x"}); err == nil || !strings.Contains(err.Error(), "ws://") {
		t.Errorf("http base URL: %v", err)
	}
	model := newModelServer(t)
	agent, err := openai.New(openai.Options{APIKey: "sk-wrong-secret", BaseURL: model.url()})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	srv := httptest.NewServer(stream.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The session's start fails: the client is told why (the status), never the key.
	_, err = client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 16000, Channels: 1})
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || strings.Contains(err.Error(), "sk-wrong-secret") {
		t.Errorf("refused handshake: %v (want the status, never the key)", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestBridgeLocalVAD: with Options.LocalVAD (here the WebRTC VAD), turn detection is off at
// the model (turn_detection null); the end of each spoken utterance commits the audio and
// asks for a response, and speech over the reply is barge-in (cancel, truncate to what the
// client received).
func TestBridgeLocalVAD(t *testing.T) {
	t.Parallel()
	pcm, rate, ch, err := wav.ReadFile("../../testdata/audio/two_utterances48k.wav")
	if err != nil || rate != 48000 || ch != 1 {
		t.Fatalf("fixture: %v (%d Hz, %d ch)", err, rate, ch)
	}
	model := newModelServer(t)
	_, srv := newBridgeStream(t, model, openai.Options{LocalVAD: func() (voice.VAD, error) { return voice.NewWebRTCVAD(3) }})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 48000, Channels: 1, PaceAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := model.accept(ctx)
	up := m.next(ctx, "session.update")
	if td, ok := up.Raw["session"].(map[string]any)["audio"].(map[string]any)["input"].(map[string]any)["turn_detection"]; !ok || td != nil {
		t.Fatalf("turn_detection %v, want null", td)
	}
	go func() {
		for i := 0; i+960 <= len(pcm) && ctx.Err() == nil; i += 960 {
			if c.SendAudio(ctx, fastrtc.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm[i : i+960]}) != nil {
				return
			}
		}
	}()
	m.next(ctx, "input_audio_buffer.commit") // the first utterance ended (2.16 s, then 600 ms)
	m.next(ctx, "response.create")
	m.send(map[string]any{"type": "response.created", "response": map[string]any{"id": "resp_1"}})
	m.audioDeltas("resp_1", "item_1", 600, 3*time.Second)
	var received time.Duration
	done := make(chan struct{})
	go func() { // count the reply the client gets
		defer close(done)
		for {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			f, err := c.ReadAudio(rctx)
			rcancel()
			if err != nil {
				return
			}
			if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
				received += time.Duration(len(f.Samples)) * time.Second / time.Duration(f.SampleRate)
			}
		}
	}()
	m.next(ctx, "response.cancel") // the second utterance (3.66 s) over the reply
	trunc := m.next(ctx, "conversation.item.truncate")
	m.next(ctx, "input_audio_buffer.commit")
	<-done
	audioEnd := time.Duration(trunc.Raw["audio_end_ms"].(float64) * float64(time.Millisecond))
	t.Logf("truncate at %v; the client received %v", audioEnd, received)
	if trunc.Raw["item_id"] != "item_1" || audioEnd <= 0 || audioEnd >= 3*time.Second || (audioEnd-received).Abs() > 60*time.Millisecond {
		t.Errorf("truncate %v: want item_1 at the %v received", trunc.Raw, received)
	}
}
