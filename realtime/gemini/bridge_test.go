package gemini_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/wav"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/realtime/gemini"
	"github.com/fastrtc-go/fastrtc/voice"
)

// liveServer is a local stand-in for the Live API's BidiGenerateContent endpoint, speaking
// its messages as the reference describes them (camelCase JSON; server messages as binary
// frames, as the service sends them; audio/pcm base64 at 16 kHz up and 24 kHz down).
type liveServer struct {
	srv   *httptest.Server
	conns chan *liveConn
}

type liveConn struct {
	t      testing.TB
	ws     *websocket.Conn
	setup  map[string]any
	msgs   chan map[string]any // every client message but audio
	mu     sync.Mutex
	audio  []int16
	mimes  map[string]bool
	wmu    sync.Mutex
	closed chan struct{}
}

func newLiveServer(t testing.TB) *liveServer {
	l := &liveServer{conns: make(chan *liveConn, 4)}
	up := websocket.Upgrader{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".BidiGenerateContent") {
			http.NotFound(w, r)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if r.Header.Get("x-goog-api-key") != "test-key" {
			_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "API key not valid. Please pass a valid API key."))
			_ = ws.Close()
			return
		}
		c := &liveConn{t: t, ws: ws, msgs: make(chan map[string]any, 256), mimes: map[string]bool{}, closed: make(chan struct{})}
		var first map[string]any
		if err := ws.ReadJSON(&first); err != nil || first["setup"] == nil {
			t.Errorf("live: the first message is not setup: %v %v", first, err)
			_ = ws.Close()
			return
		}
		c.setup = first["setup"].(map[string]any)
		c.send(map[string]any{"setupComplete": map[string]any{}})
		go c.readLoop()
		l.conns <- c
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *liveServer) url() string {
	return "ws" + strings.TrimPrefix(l.srv.URL, "http") + "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
}

func (l *liveServer) accept(t testing.TB, ctx context.Context) *liveConn {
	select {
	case c := <-l.conns:
		return c
	case <-ctx.Done():
		t.Fatal("no connection from the bridge")
		return nil
	}
}

func (c *liveConn) readLoop() {
	defer close(c.closed)
	defer close(c.msgs)
	for {
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			return
		}
		if ri, ok := m["realtimeInput"].(map[string]any); ok {
			if a, ok := ri["audio"].(map[string]any); ok {
				pcm, err := realtime.DecodePCM(nil, a["data"].(string))
				if err != nil {
					c.t.Errorf("live: audio: %v", err)
				}
				c.mu.Lock()
				c.audio = append(c.audio, pcm...)
				c.mimes[a["mimeType"].(string)] = true
				c.mu.Unlock()
				continue
			}
		}
		c.msgs <- m
	}
}

// send writes a server message as a binary frame.
func (c *liveConn) send(v any) {
	b, _ := json.Marshal(v)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (c *liveConn) next(ctx context.Context, key string) map[string]any {
	c.t.Helper()
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("live: closed while waiting for %s", key)
			}
			if v, ok := m[key].(map[string]any); ok {
				return v
			}
		case <-ctx.Done():
			c.t.Fatalf("live: no %s", key)
		}
	}
}

func (c *liveConn) appended() ([]int16, map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.audio...), c.mimes
}

// reply sends d of a tone as modelTurn audio chunks of 100 ms, all at once.
func (c *liveConn) reply(freq float64, d time.Duration) {
	for i := 0; i < int(d/(100*time.Millisecond)); i++ {
		pcm := make([]int16, 2400)
		for j := range pcm {
			pcm[j] = int16(8000 * math.Sin(2*math.Pi*freq*float64(i*2400+j)/24000))
		}
		c.send(map[string]any{"serverContent": map[string]any{"modelTurn": map[string]any{"parts": []any{
			map[string]any{"inlineData": map[string]any{"mimeType": "audio/pcm;rate=24000", "data": realtime.EncodePCM(pcm)}},
		}}}})
	}
}

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

func serve(t *testing.T, live *liveServer, o gemini.Options) (*fastrtc.Stream, *httptest.Server) {
	t.Helper()
	if o.APIKey == "" {
		o.APIKey = "test-key"
	}
	o.BaseURL = live.url()
	agent, err := gemini.New(o)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(stream.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = stream.Close()
		if st := stream.Stats(); st.Sessions != 0 {
			t.Errorf("after Close: %d sessions", st.Sessions)
		}
	})
	return stream, srv
}

type cityArgs struct {
	City string `json:"city"`
}

// TestBridge: setup, the user's audio as 16 kHz PCM, a reply sent at once and paced,
// transcripts of both sides, an interruption that clears the audio within 100 ms, a tool
// call answered with toolResponse, and an error close that ends only that session.
func TestBridge(t *testing.T) {
	t.Parallel()
	live := newLiveServer(t)
	tool := realtime.Func("get_weather", "the weather", func(ctx context.Context, s *fastrtc.Session, a cityArgs) (any, error) {
		return "sunny in " + a.City, nil
	})
	_, srv := serve(t, live, gemini.Options{Instructions: "Be brief.", Voice: "Kore", Tools: []realtime.Tool{tool}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 24000, Channels: 1, PaceAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := live.accept(t, ctx)
	b, _ := json.Marshal(m.setup)
	for _, want := range []string{`"model":"models/gemini-2.5-flash-native-audio-preview-12-2025"`, `"responseModalities":["AUDIO"]`, `"voiceName":"Kore"`,
		`"systemInstruction":{"parts":[{"text":"Be brief."}]}`, `"functionDeclarations":[{`, `"inputAudioTranscription":{}`, `"outputAudioTranscription":{}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("setup lacks %s: %s", want, b)
		}
	}

	// 1 s of 440 Hz at 24 kHz reaches the model as 16 kHz PCM.
	tone := make([]int16, 480)
	for i := 0; i < 50; i++ {
		for j := range tone {
			tone[j] = int16(6000 * math.Sin(2*math.Pi*440*float64(i*480+j)/24000))
		}
		if err := c.SendAudio(ctx, fastrtc.AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for pcm, _ := m.appended(); len(pcm) < 15500 && time.Now().Before(deadline); pcm, _ = m.appended() {
		time.Sleep(20 * time.Millisecond)
	}
	pcm, mimes := m.appended()
	if len(pcm) < 15500 || len(pcm) > 17000 || !mimes["audio/pcm;rate=16000"] || len(mimes) != 1 {
		t.Fatalf("the model got %d samples as %v for 1 s, want ~16000 as audio/pcm;rate=16000", len(pcm), mimes)
	}
	if share := toneShare(pcm[1600:14400], 440, 16000); share < 0.8 {
		t.Fatalf("not the 440 Hz tone at 16 kHz: %.2f", share)
	}

	// A turn with transcripts, and a 3 s reply sent at once.
	m.send(map[string]any{"serverContent": map[string]any{"inputTranscription": map[string]any{"text": "What is "}}})
	m.send(map[string]any{"serverContent": map[string]any{"inputTranscription": map[string]any{"text": "the weather?"}}})
	m.send(map[string]any{"serverContent": map[string]any{"outputTranscription": map[string]any{"text": "It is sunny."}}})
	m.reply(600, 3*time.Second)
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
	interrupted := time.Now()
	m.send(map[string]any{"serverContent": map[string]any{"interrupted": true}})
	// (The service stops generating at an interruption: what it sent before, 2 s queued
	// here, must not play.)
	var last time.Time
	for {
		rctx, rcancel := context.WithTimeout(ctx, 400*time.Millisecond)
		f, err := c.ReadAudio(rctx)
		rcancel()
		if err != nil {
			break
		}
		if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
			last = time.Now()
		}
	}
	if !last.IsZero() && last.Sub(interrupted) > 100*time.Millisecond {
		t.Errorf("reply audio went on %v after the interruption (want within 100 ms)", last.Sub(interrupted))
	}
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
	if !strings.Contains(lines[0], `"role":"user","text":"What is the weather?"`) || !strings.Contains(lines[1], `"role":"assistant","text":"It is sunny."`) {
		t.Errorf("transcripts %q", lines)
	}

	// A tool call.
	m.send(map[string]any{"toolCall": map[string]any{"functionCalls": []any{map[string]any{"id": "fc_1", "name": "get_weather", "args": map[string]any{"city": "Oslo"}}}}})
	resp := m.next(ctx, "toolResponse")
	rb, _ := json.Marshal(resp)
	if !strings.Contains(string(rb), `"id":"fc_1"`) || !strings.Contains(string(rb), `"name":"get_weather"`) || !strings.Contains(string(rb), `"result":"sunny in Oslo"`) {
		t.Errorf("toolResponse %s", rb)
	}

	// An error close ends the session, with the reason.
	_ = m.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInvalidFramePayloadData, "Request contains an invalid argument."))
	for {
		msg, err := c.Message(ctx)
		if err != nil {
			t.Fatalf("no error message: %v", err)
		}
		if msg.Type == "error" {
			if !strings.Contains(msg.Message, "invalid argument") {
				t.Errorf("error %q", msg.Message)
			}
			break
		}
	}
}

// TestBadKey: the service's refusal reaches the client, without the key.
func TestBadKey(t *testing.T) {
	t.Parallel()
	live := newLiveServer(t)
	_, srv := serve(t, live, gemini.Options{APIKey: "wrong-secret"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 16000, Channels: 1})
	if err == nil || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := gemini.New(gemini.Options{}); !errors.Is(err, realtime.ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
}

// TestBridgeLocalVAD: with Options.LocalVAD (the WebRTC VAD here), setup disables the
// service's activity detection, each spoken utterance is framed by activityStart and
// activityEnd, and speech over a reply drops its queued audio at once.
func TestBridgeLocalVAD(t *testing.T) {
	t.Parallel()
	pcm, rate, ch, err := wav.ReadFile("../../testdata/audio/two_utterances48k.wav")
	if err != nil || rate != 48000 || ch != 1 {
		t.Fatalf("fixture: %v (%d Hz, %d ch)", err, rate, ch)
	}
	live := newLiveServer(t)
	_, srv := serve(t, live, gemini.Options{LocalVAD: func() (voice.VAD, error) { return voice.NewWebRTCVAD(3) }})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 48000, Channels: 1, PaceAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := live.accept(t, ctx)
	b, _ := json.Marshal(m.setup)
	if !strings.Contains(string(b), `"realtimeInputConfig":{"automaticActivityDetection":{"disabled":true}}`) {
		t.Fatalf("setup %s: want the service's activity detection disabled", b)
	}
	go func() {
		for i := 0; i+960 <= len(pcm) && ctx.Err() == nil; i += 960 {
			if c.SendAudio(ctx, fastrtc.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm[i : i+960]}) != nil {
				return
			}
		}
	}()
	activity := func() string {
		in := m.next(ctx, "realtimeInput")
		for k := range in {
			return k
		}
		return ""
	}
	if a, e := activity(), activity(); a != "activityStart" || e != "activityEnd" {
		t.Fatalf("first utterance: %s, %s; want activityStart, activityEnd", a, e)
	}
	m.reply(600, 3*time.Second)
	var received time.Duration
	var last time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rctx, rcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			f, err := c.ReadAudio(rctx)
			rcancel()
			if err != nil {
				return
			}
			if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
				received += time.Duration(len(f.Samples)) * time.Second / time.Duration(f.SampleRate)
				last = time.Now()
			}
		}
	}()
	if a := activity(); a != "activityStart" { // the second utterance, over the reply
		t.Fatalf("second utterance: %s", a)
	}
	barge := time.Now()
	<-done
	t.Logf("reply received %v, last reply audio %v after activityStart", received, last.Sub(barge))
	if received <= 0 || received >= 2500*time.Millisecond || last.Sub(barge) > 100*time.Millisecond {
		t.Errorf("the reply was not cut: %v received, last audio %v after the user spoke", received, last.Sub(barge))
	}
}
