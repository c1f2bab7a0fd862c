// Package gemini puts Google's Gemini Live API behind a fastrtc stream: each session of the
// stream gets its own BidiGenerateContent WebSocket, the user's audio goes up as 16 kHz PCM,
// the model's 24 kHz audio comes back paced in real time, and the user can talk over it.
//
// It speaks the Live API's WebSocket protocol (v1beta BidiGenerateContent) as Google's Live
// API reference (ai.google.dev, as published in August-September 2026) and the google-genai
// Python SDK 2.19.0 (2026-08-21) describe it, read on 2026-12-06: the first message
// is setup (model, generationConfig with responseModalities AUDIO and the voice,
// systemInstruction, tools' functionDeclarations, input and output audio transcription),
// answered by setupComplete; then realtimeInput.audio (audio/pcm;rate=16000) up, and
// serverContent (modelTurn parts with inlineData audio/pcm;rate=24000, inputTranscription,
// outputTranscription, interrupted, turnComplete), toolCall (answered with toolResponse) and
// goAway down; errors come as the WebSocket's close reason. The default model is the
// native-audio model that reference documents for this protocol; newer Live models may
// change it (set Options.Model).
//
// Barge-in: when the service says the user interrupted (serverContent.interrupted), the
// session's queued audio is dropped at once and the rest of that turn's audio is ignored.
// The Live API has no message to truncate the model's memory of its turn (it keeps what it
// generated before the interruption), so the played duration is logged, not sent: that part
// of barge-in only the OpenAI bridge can do.
//
// Google's service is not reachable from the machines this library is tested on: the tests
// run the bridge against a local server that speaks the protocol as the reference describes.
package gemini

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/voice"
)

// DefaultBaseURL is the Live API's WebSocket endpoint; DefaultModel the model.
const (
	DefaultBaseURL = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
	DefaultModel   = "gemini-2.5-flash-native-audio-preview-12-2025"
	// InputRate and OutputRate are the model's PCM rates (mono, 16-bit little-endian).
	InputRate  = 16000
	OutputRate = 24000
)

// Options configure the bridge. APIKey is required; everything else has a default.
type Options struct {
	// APIKey is sent as the x-goog-api-key header (never logged).
	APIKey string
	// BaseURL is the WebSocket endpoint (DefaultBaseURL): a proxy, a test server.
	BaseURL string
	// Model is the model, with or without "models/" (DefaultModel).
	Model string
	// Instructions are the system instructions; Voice a prebuilt voice ("Puck", "Kore",
	// ...; "" leaves the service's default).
	Instructions, Voice string
	// InstructionsInput and VoiceInput name text inputs of the stream (WithInputs) that,
	// when set by the client before it connects, override Instructions and Voice.
	InstructionsInput, VoiceInput string
	// NoTranscription turns off the transcripts of both sides.
	NoTranscription bool
	// Tools are Go functions the model may call (realtime.Func makes one with typed
	// arguments).
	Tools []realtime.Tool
	// LocalVAD, if set, detects the user's turns in this process instead of the service's
	// automatic activity detection (which setup then disables): each session gets its own
	// VAD (the Silero VAD: model.NewVAD(voice.SileroOptions{}); or voice.NewWebRTCVAD); a
	// turn's start is sent as realtimeInput.activityStart (and over a reply is barge-in: the
	// queued audio is dropped at once), its end as activityEnd.
	LocalVAD func() (voice.VAD, error)
	// Header is added to the WebSocket handshake; Dialer dials it (default
	// websocket.DefaultDialer with a 10 s handshake timeout).
	Header http.Header
	Dialer *websocket.Dialer
	// TextInput names a text input of the stream whose posted text is sent to the model
	// as a user turn (the built-in page shows a text box for it); typed text on the data
	// channel is sent too.
	TextInput string
}

// New returns the bridge as an AudioAgent (pass it to fastrtc.New with fastrtc.Audio). It
// returns realtime.ErrNoKey without an API key.
func New(o Options) (*fastrtc.AudioAgent, error) {
	if o.APIKey == "" {
		return nil, realtime.ErrNoKey
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if !strings.HasPrefix(o.Model, "models/") {
		o.Model = "models/" + o.Model
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("gemini: base URL %q: want ws:// or wss://", o.BaseURL)
	}
	tools := map[string]*realtime.Tool{}
	for i := range o.Tools {
		tools[o.Tools[i].Name] = &o.Tools[i]
	}
	return &fastrtc.AudioAgent{
		NewHandler: func() fastrtc.AudioHandler { return &bridge{o: &o, tools: tools} },
		TextInput:  o.TextInput,
		TurnTaking: true,
	}, nil
}

// bridge is one session's connection to the model; see the openai package's for the
// goroutines (the same: Receive on the audio input goroutine, Emit on the output goroutine,
// the Link's reader on a goroutine of the session).
type bridge struct {
	o      *Options
	tools  map[string]*realtime.Tool
	s      *fastrtc.Session
	player *realtime.Player
	link   realtime.Link
	turns  *realtime.Turns // Options.LocalVAD's detector (nil: the service's)

	mu        sync.Mutex
	turn      int             // the model's turn: the item of its audio
	userText  strings.Builder // the user's transcript of this turn, so far
	modelText strings.Builder // the model's
}

// AudioLayout implements fastrtc.AudioLayouter: the core converts to and from the model's
// rates.
func (b *bridge) AudioLayout() fastrtc.AudioLayout {
	return fastrtc.AudioLayout{InputRate: InputRate, OutputRate: OutputRate}
}

// Start connects to the model and sends the setup.
func (b *bridge) Start(s *fastrtc.Session) error {
	b.s = s
	b.player = realtime.NewPlayer(s, OutputRate)
	turns, err := realtime.StartTurns(s, b.o.LocalVAD, InputRate)
	if err != nil {
		return err
	}
	b.turns = turns
	b.link = realtime.Link{Session: s, Open: b.dial, Handle: b.handle, Reopened: func() {
		b.player.Interrupt()
		b.mu.Lock()
		b.turn++
		b.mu.Unlock()
	}}
	return b.link.Start()
}

// dial opens a connection, sends setup and waits for setupComplete.
func (b *bridge) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	for k, v := range b.o.Header {
		h[k] = v
	}
	h.Set("x-goog-api-key", b.o.APIKey)
	conn, err := realtime.Dial(ctx, b.o.Dialer, b.o.BaseURL, h)
	if err != nil {
		return nil, err
	}
	if err := realtime.WriteJSON(conn, map[string]any{"setup": b.setup()}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: setup: %w", realtime.ErrConnection, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%w: waiting for setupComplete: %w", realtime.ErrConnection, err)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			if _, ok := m["setupComplete"]; ok {
				break
			}
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// setup is the setup message's body.
func (b *bridge) setup() map[string]any {
	in := b.s.Inputs()
	instr, voice := b.o.Instructions, b.o.Voice
	if b.o.InstructionsInput != "" {
		if v := in.Text(b.o.InstructionsInput); v != "" {
			instr = v
		}
	}
	if b.o.VoiceInput != "" {
		if v := in.Text(b.o.VoiceInput); v != "" {
			voice = v
		}
	}
	gen := map[string]any{"responseModalities": []string{"AUDIO"}}
	if voice != "" {
		gen["speechConfig"] = map[string]any{"voiceConfig": map[string]any{"prebuiltVoiceConfig": map[string]any{"voiceName": voice}}}
	}
	setup := map[string]any{"model": b.o.Model, "generationConfig": gen}
	if b.o.LocalVAD != nil {
		setup["realtimeInputConfig"] = map[string]any{"automaticActivityDetection": map[string]any{"disabled": true}}
	}
	if instr != "" {
		setup["systemInstruction"] = map[string]any{"parts": []map[string]string{{"text": instr}}}
	}
	if !b.o.NoTranscription {
		setup["inputAudioTranscription"] = map[string]any{}
		setup["outputAudioTranscription"] = map[string]any{}
	}
	if len(b.o.Tools) > 0 {
		decls := make([]map[string]any, 0, len(b.o.Tools))
		for _, t := range b.o.Tools {
			decls = append(decls, map[string]any{"name": t.Name, "description": t.Description, "parameters": t.Parameters})
		}
		setup["tools"] = []map[string]any{{"functionDeclarations": decls}}
	}
	return setup
}

// Receive sends the user's audio up.
func (b *bridge) Receive(s *fastrtc.Session, f fastrtc.AudioFrame) error {
	err := b.link.Send(map[string]any{"realtimeInput": map[string]any{"audio": map[string]string{
		"data": realtime.EncodePCM(f.Samples), "mimeType": "audio/pcm;rate=16000",
	}}})
	if err != nil && s.Context().Err() == nil {
		s.Logger().Debug("gemini: audio not sent (the reader reopens or ends the session)", "err", err)
	}
	if b.turns != nil {
		return b.turns.Feed(f.Samples, func() {
			_ = s.Log(fastrtc.LogStartedTalking)
			b.interrupt()
			_ = b.link.Send(map[string]any{"realtimeInput": map[string]any{"activityStart": map[string]any{}}})
		}, func() {
			_ = s.Log(fastrtc.LogPauseDetected)
			b.player.Paused()
			_ = b.link.Send(map[string]any{"realtimeInput": map[string]any{"activityEnd": map[string]any{}}})
		})
	}
	return nil
}

// Emit returns the model's audio as it comes.
func (b *bridge) Emit(ctx context.Context, s *fastrtc.Session) (fastrtc.AudioFrame, error) {
	return b.player.Next(ctx)
}

// ReceiveText implements fastrtc.TextReceiver: typed text is a user turn.
func (b *bridge) ReceiveText(s *fastrtc.Session, text string) { b.sendText(text) }

// InputsPosted implements fastrtc.InputReceiver: the text input, when posted, is a user turn.
func (b *bridge) InputsPosted(s *fastrtc.Session, names []string) {
	for _, n := range names {
		if n == b.o.TextInput && n != "" {
			if t := s.Inputs().Text(n); t != "" {
				b.sendText(t)
			}
		}
	}
}

func (b *bridge) sendText(text string) {
	b.interrupt()
	_ = b.s.Transcript(fastrtc.RoleUser, text)
	b.player.Paused()
	_ = b.link.Send(map[string]any{"clientContent": map[string]any{
		"turns": []map[string]any{{"role": "user", "parts": []map[string]string{{"text": text}}}}, "turnComplete": true,
	}})
}

// interrupt drops the audio of the model's turn that was not sent yet.
func (b *bridge) interrupt() {
	item, played, generated := b.player.Interrupt()
	b.mu.Lock()
	b.turn++
	b.mu.Unlock()
	b.flushText()
	if item != "" && played < generated {
		b.s.Logger().Debug("gemini: reply interrupted", "turn", item, "played", played, "generated", generated)
	}
}

// flushText sends the transcripts gathered for this turn.
func (b *bridge) flushText() {
	b.mu.Lock()
	user, model := strings.TrimSpace(b.userText.String()), strings.TrimSpace(b.modelText.String())
	b.userText.Reset()
	b.modelText.Reset()
	b.mu.Unlock()
	if user != "" {
		_ = b.s.Transcript(fastrtc.RoleUser, user)
	}
	if model != "" {
		_ = b.s.Transcript(fastrtc.RoleAssistant, model)
	}
}

// message is the fields of the server messages the bridge reads.
type message struct {
	ServerContent *struct {
		ModelTurn *struct {
			Parts []struct {
				InlineData *struct {
					MimeType string `json:"mimeType"`
					Data     string `json:"data"`
				} `json:"inlineData"`
			} `json:"parts"`
		} `json:"modelTurn"`
		TurnComplete        bool                   `json:"turnComplete"`
		Interrupted         bool                   `json:"interrupted"`
		InputTranscription  *struct{ Text string } `json:"inputTranscription"`
		OutputTranscription *struct{ Text string } `json:"outputTranscription"`
	} `json:"serverContent"`
	ToolCall *struct {
		FunctionCalls []struct {
			ID   string          `json:"id"`
			Name string          `json:"name"`
			Args json.RawMessage `json:"args"`
		} `json:"functionCalls"`
	} `json:"toolCall"`
	GoAway *struct {
		TimeLeft string `json:"timeLeft"`
	} `json:"goAway"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

// handle handles one message of the model.
func (b *bridge) handle(data []byte) error {
	s := b.s
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		s.Logger().Warn("gemini: unreadable message", "err", err)
		return nil
	}
	if m.Error != nil {
		return fmt.Errorf("%w: %s (%s)", realtime.ErrModel, m.Error.Message, m.Error.Status)
	}
	if m.GoAway != nil {
		s.Logger().Info("gemini: the service will close the connection", "time_left", m.GoAway.TimeLeft)
	}
	if m.ToolCall != nil {
		for _, fc := range m.ToolCall.FunctionCalls {
			b.call(fc.ID, fc.Name, fc.Args)
		}
	}
	sc := m.ServerContent
	if sc == nil {
		return nil
	}
	if sc.Interrupted {
		_ = s.Log(fastrtc.LogStartedTalking)
		b.interrupt()
	}
	b.mu.Lock()
	if t := sc.InputTranscription; t != nil {
		b.userText.WriteString(t.Text)
	}
	if t := sc.OutputTranscription; t != nil {
		b.modelText.WriteString(t.Text)
	}
	item := "turn-" + strconv.Itoa(b.turn)
	b.mu.Unlock()
	if sc.ModelTurn != nil {
		for _, p := range sc.ModelTurn.Parts {
			if p.InlineData == nil || !strings.HasPrefix(p.InlineData.MimeType, "audio/pcm") {
				continue
			}
			if !strings.Contains(p.InlineData.MimeType, "rate=24000") && strings.Contains(p.InlineData.MimeType, "rate=") {
				s.Logger().Warn("gemini: audio at an unexpected rate", "mime", p.InlineData.MimeType)
				continue
			}
			pcm, err := realtime.DecodePCM(nil, p.InlineData.Data)
			if err != nil {
				s.Logger().Warn("gemini: bad audio", "err", err)
				continue
			}
			b.player.Push(item, pcm)
		}
	}
	if sc.TurnComplete {
		b.mu.Lock()
		b.turn++
		b.mu.Unlock()
		b.flushText()
	}
	return nil
}

// call runs a function call on a goroutine of the session and sends its result back.
func (b *bridge) call(id, name string, args json.RawMessage) {
	tool := b.tools[name]
	b.s.Go(func() {
		out := realtime.CallResult(b.s.Context(), b.s, tool, args)
		if b.s.Context().Err() != nil {
			return
		}
		var resp map[string]any // the response is an object: a result that is not one is {"result": it}
		if json.Unmarshal([]byte(out), &resp) != nil {
			resp = map[string]any{"result": json.RawMessage(out)}
		}
		_ = b.link.Send(map[string]any{"toolResponse": map[string]any{
			"functionResponses": []map[string]any{{"id": id, "name": name, "response": resp}},
		}})
	})
}
