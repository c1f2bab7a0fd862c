// Package openai puts OpenAI's Realtime API behind a fastrtc stream: each session of the
// stream gets its own WebSocket to the model, the user's audio goes up as it comes, the
// model's audio comes back paced in real time, and the user can talk over it.
//
// It speaks the generally available Realtime protocol (not the beta), as OpenAI's API
// reference and the openai-python SDK 3.3.1 (its types/realtime, 2026-08-21) describe it,
// read on 2026-12-06 (no OpenAI-Beta header: the service refuses the beta shape):
// session.update with session.type "realtime" and the audio.input / audio.output schema (audio/pcm at 24 kHz, server VAD,
// input transcription), input_audio_buffer.append, response.output_audio.delta,
// response.output_audio_transcript.done,
// conversation.item.input_audio_transcription.completed, function calls
// (response.function_call_arguments.done answered with a function_call_output item and
// response.create), input_audio_buffer.speech_started, response.cancel and
// conversation.item.truncate, error. The default model is "gpt-realtime".
//
// Barge-in: when the model's server VAD (or Options.LocalVAD, this library's own turn
// detection) says the user started speaking over a reply, the session's queued audio is
// dropped at once, the response is cancelled, and the reply item is truncated to the audio
// the session actually sent (audio_end_ms: played, not generated), so the model remembers
// only what the user heard.
//
// OpenAI's service is not reachable from the machines this library is tested on: the tests
// run the bridge against a local server that speaks the protocol as the reference
// describes it (realtime/openai/server_test.go).
package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/voice"
)

// DefaultBaseURL is the Realtime API's WebSocket endpoint; DefaultModel the model.
const (
	DefaultBaseURL = "wss://api.openai.com/v1/realtime"
	DefaultModel   = "gpt-realtime"
	// Rate is the model's PCM rate, both ways (mono, 16-bit little-endian).
	Rate = 24000
)

// Options configure the bridge. APIKey is required; everything else has a default.
type Options struct {
	// APIKey is sent as "Authorization: Bearer" (never logged). For Azure OpenAI, set
	// Header's "api-key" instead and leave APIKey "-".
	APIKey string
	// BaseURL is the WebSocket endpoint (DefaultBaseURL): an Azure deployment, a proxy, a
	// test server. "?model=" is added unless it has a model parameter.
	BaseURL string
	// Model is the model (DefaultModel).
	Model string
	// Instructions are the system instructions; Voice the output voice ("" leaves the
	// service's default, e.g. "marin").
	Instructions, Voice string
	// InstructionsInput and VoiceInput name text inputs of the stream (WithInputs) that,
	// when set by the client, override Instructions and Voice for that session; a change of
	// the instructions input updates the live session.
	InstructionsInput, VoiceInput string
	// TranscriptionModel transcribes the user's speech for Session.Transcript (default
	// "gpt-4o-mini-transcribe"; "none" turns it off).
	TranscriptionModel string
	// TurnDetection replaces the session's audio.input.turn_detection object (default
	// {"type": "server_vad"}, which also cancels a response when the user speaks).
	TurnDetection json.RawMessage
	// LocalVAD, if set, detects the user's turns in this process instead of the model's
	// server VAD (turn_detection is sent as null): each session gets its own VAD (the Silero
	// VAD: model.NewVAD(voice.SileroOptions{}); or voice.NewWebRTCVAD), speech over a
	// reply is barge-in as above, and the end of a turn commits the audio and asks for a
	// response.
	LocalVAD func() (voice.VAD, error)
	// Tools are Go functions the model may call (realtime.Func makes one with typed
	// arguments).
	Tools []realtime.Tool
	// Header is added to the WebSocket handshake; Dialer dials it (default
	// websocket.DefaultDialer with a 10 s handshake timeout).
	Header http.Header
	Dialer *websocket.Dialer
	// TextInput names a text input of the stream whose posted text is sent to the model
	// as a user message (the built-in page shows a text box for it); typed text on the
	// data channel is sent too.
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
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("openai: base URL %q: want ws:// or wss://", o.BaseURL)
	}
	if u.Query().Get("model") == "" {
		q := u.Query()
		q.Set("model", o.Model)
		u.RawQuery = q.Encode()
	}
	endpoint := u.String()
	if o.TranscriptionModel == "" {
		o.TranscriptionModel = "gpt-4o-mini-transcribe"
	}
	tools := map[string]*realtime.Tool{}
	for i := range o.Tools {
		tools[o.Tools[i].Name] = &o.Tools[i]
	}
	return &fastrtc.AudioAgent{
		NewHandler: func() fastrtc.AudioHandler { return &bridge{o: &o, endpoint: endpoint, tools: tools} },
		TextInput:  o.TextInput,
		TurnTaking: true,
	}, nil
}

// bridge is one session's connection to the model. Receive runs on the session's audio
// input goroutine, Emit on its output goroutine, the reader on a goroutine of the session
// (Session.Go); writes to the model are serialized by wmu.
type bridge struct {
	o        *Options
	endpoint string
	tools    map[string]*realtime.Tool
	s        *fastrtc.Session
	player   *realtime.Player
	link     realtime.Link

	turns *realtime.Turns // Options.LocalVAD's detector (nil: the server's VAD)

	mu       sync.Mutex
	response string // the response in progress ("" when none)
}

// AudioLayout implements fastrtc.AudioLayouter: the core converts to and from the model's
// rate.
func (b *bridge) AudioLayout() fastrtc.AudioLayout {
	return fastrtc.AudioLayout{InputRate: Rate, OutputRate: Rate}
}

// Start connects to the model and configures the session.
func (b *bridge) Start(s *fastrtc.Session) error {
	b.s = s
	b.player = realtime.NewPlayer(s, Rate)
	turns, err := realtime.StartTurns(s, b.o.LocalVAD, Rate)
	if err != nil {
		return err
	}
	b.turns = turns
	b.link = realtime.Link{Session: s, Open: b.dial, Handle: b.handle, Reopened: func() {
		b.player.Interrupt()
		b.mu.Lock()
		b.response = ""
		b.mu.Unlock()
	}}
	if err := b.link.Start(); err != nil {
		return err
	}
	if b.o.InstructionsInput != "" {
		s.Go(b.watchInputs)
	}
	return nil
}

// dial opens a connection and sends the session's configuration.
func (b *bridge) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	for k, v := range b.o.Header {
		h[k] = v
	}
	if b.o.APIKey != "-" {
		h.Set("Authorization", "Bearer "+b.o.APIKey)
	}
	conn, err := realtime.Dial(ctx, b.o.Dialer, b.endpoint, h)
	if err != nil {
		return nil, err
	}
	if err := realtime.WriteJSON(conn, map[string]any{"type": "session.update", "session": b.sessionConfig()}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: session.update: %w", realtime.ErrConnection, err)
	}
	return conn, nil
}

// sessionConfig is session.update's session object (GA schema).
func (b *bridge) sessionConfig() map[string]any {
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
	turn := any(map[string]any{"type": "server_vad"})
	switch {
	case b.o.LocalVAD != nil:
		turn = nil // turns are detected here: commit and response.create at their ends
	case len(b.o.TurnDetection) > 0:
		turn = b.o.TurnDetection
	}
	input := map[string]any{
		"format":         map[string]any{"type": "audio/pcm", "rate": Rate},
		"turn_detection": turn,
	}
	if b.o.TranscriptionModel != "none" {
		input["transcription"] = map[string]any{"model": b.o.TranscriptionModel}
	}
	output := map[string]any{"format": map[string]any{"type": "audio/pcm", "rate": Rate}}
	if voice != "" {
		output["voice"] = voice
	}
	sess := map[string]any{
		"type":              "realtime",
		"model":             b.o.Model,
		"output_modalities": []string{"audio"},
		"audio":             map[string]any{"input": input, "output": output},
	}
	if instr != "" {
		sess["instructions"] = instr
	}
	if len(b.o.Tools) > 0 {
		tools := make([]map[string]any, 0, len(b.o.Tools))
		for _, t := range b.o.Tools {
			tools = append(tools, map[string]any{"type": "function", "name": t.Name, "description": t.Description, "parameters": t.Parameters})
		}
		sess["tools"] = tools
		sess["tool_choice"] = "auto"
	}
	return sess
}

// send writes one client event to the model.
func (b *bridge) send(v any) error { return b.link.Send(v) }

// Receive sends the user's audio up (24 kHz mono PCM, base64), and runs the local turn
// detection if there is one.
func (b *bridge) Receive(s *fastrtc.Session, f fastrtc.AudioFrame) error {
	if err := b.send(map[string]string{"type": "input_audio_buffer.append", "audio": realtime.EncodePCM(f.Samples)}); err != nil {
		if s.Context().Err() == nil {
			s.Logger().Debug("openai: append failed (the reader reconnects or ends the session)", "err", err)
		}
	}
	if b.turns != nil {
		err := b.turns.Feed(f.Samples, func() {
			_ = s.Log(fastrtc.LogStartedTalking)
			b.interrupt()
		}, func() {
			_ = s.Log(fastrtc.LogPauseDetected)
			b.player.Paused()
			_ = b.send(map[string]string{"type": "input_audio_buffer.commit"})
			_ = b.send(map[string]string{"type": "response.create"})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Emit returns the model's audio as it comes.
func (b *bridge) Emit(ctx context.Context, s *fastrtc.Session) (fastrtc.AudioFrame, error) {
	return b.player.Next(ctx)
}

// ReceiveText implements fastrtc.TextReceiver: typed text is a user message.
func (b *bridge) ReceiveText(s *fastrtc.Session, text string) { b.sendText(text) }

// InputsPosted implements fastrtc.InputReceiver: the text input, when posted, is a user
// message.
func (b *bridge) InputsPosted(s *fastrtc.Session, names []string) {
	if b.o.TextInput == "" {
		return
	}
	for _, n := range names {
		if n == b.o.TextInput {
			if t := s.Inputs().Text(n); t != "" {
				b.sendText(t)
			}
		}
	}
}

func (b *bridge) sendText(text string) {
	b.interrupt()
	_ = b.s.Transcript(fastrtc.RoleUser, text)
	_ = b.send(map[string]any{"type": "conversation.item.create", "item": map[string]any{
		"type": "message", "role": "user", "content": []map[string]string{{"type": "input_text", "text": text}},
	}})
	b.player.Paused()
	_ = b.send(map[string]string{"type": "response.create"})
}

// watchInputs sends the new instructions when the client changes them.
func (b *bridge) watchInputs() {
	s := b.s
	last := s.Inputs().Text(b.o.InstructionsInput)
	changed := s.InputsChanged()
	for {
		select {
		case <-changed:
		case <-s.Context().Done():
			return
		}
		changed = s.InputsChanged()
		if v := s.Inputs().Text(b.o.InstructionsInput); v != last {
			last = v
			_ = b.send(map[string]any{"type": "session.update", "session": map[string]any{"type": "realtime", "instructions": v}})
		}
	}
}

// TriggerReply implements fastrtc.ReplyTrigger: the model answers now.
func (b *bridge) TriggerReply(s *fastrtc.Session) error {
	b.interrupt()
	if err := b.send(map[string]string{"type": "input_audio_buffer.commit"}); err != nil {
		return err
	}
	return b.send(map[string]string{"type": "response.create"})
}

// interrupt is barge-in: the audio not yet sent is dropped, the response in progress is
// cancelled, and the item that was playing is truncated to what the user heard.
func (b *bridge) interrupt() {
	item, played, generated := b.player.Interrupt()
	b.mu.Lock()
	resp := b.response
	b.response = ""
	b.mu.Unlock()
	if resp != "" {
		_ = b.send(map[string]string{"type": "response.cancel"})
	}
	if item != "" && played < generated {
		_ = b.send(map[string]any{"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": played.Milliseconds()})
		b.s.Logger().Debug("openai: reply truncated", "item", item, "played", played, "generated", generated)
	}
}

// event is the fields of the server events the bridge reads.
type event struct {
	Type       string          `json:"type"`
	ResponseID string          `json:"response_id"`
	ItemID     string          `json:"item_id"`
	Delta      string          `json:"delta"`
	Transcript string          `json:"transcript"`
	CallID     string          `json:"call_id"`
	Name       string          `json:"name"`
	Arguments  json.RawMessage `json:"arguments"`
	Response   struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"response"`
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// benign are error codes that a race between the client and the server explains (the
// response ended before the cancel arrived): logged, not fatal.
var benign = map[string]bool{"response_cancel_not_active": true}

// handle handles one event of the model.
func (b *bridge) handle(data []byte) error {
	s := b.s
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		s.Logger().Warn("openai: unreadable event", "err", err)
		return nil
	}
	switch ev.Type {
	case "input_audio_buffer.speech_started":
		_ = s.Log(fastrtc.LogStartedTalking)
		b.interrupt()
	case "input_audio_buffer.speech_stopped":
		_ = s.Log(fastrtc.LogPauseDetected)
		b.player.Paused()
	case "response.created":
		b.mu.Lock()
		b.response = ev.Response.ID
		b.mu.Unlock()
	case "response.done":
		b.mu.Lock()
		if b.response == ev.Response.ID {
			b.response = ""
		}
		b.mu.Unlock()
	case "response.output_audio.delta":
		pcm, err := realtime.DecodePCM(nil, ev.Delta)
		if err != nil {
			s.Logger().Warn("openai: bad audio delta", "err", err)
			return nil
		}
		b.player.Push(ev.ItemID, pcm)
	case "response.output_audio_transcript.done":
		if t := strings.TrimSpace(ev.Transcript); t != "" {
			_ = s.Transcript(fastrtc.RoleAssistant, t)
		}
	case "conversation.item.input_audio_transcription.completed":
		if t := strings.TrimSpace(ev.Transcript); t != "" {
			_ = s.Transcript(fastrtc.RoleUser, t)
		}
	case "response.function_call_arguments.done":
		b.call(ev)
	case "error":
		if benign[ev.Error.Code] {
			s.Logger().Debug("openai: benign error", "code", ev.Error.Code, "message", ev.Error.Message)
			return nil
		}
		return fmt.Errorf("%w: %s (%s)", realtime.ErrModel, ev.Error.Message, ev.Error.Code)
	}
	return nil
}

// call runs a function call on a goroutine of the session and sends its result back.
func (b *bridge) call(ev event) {
	tool := b.tools[ev.Name]
	args := ev.Arguments
	// arguments is a JSON string holding the object.
	var str string
	if json.Unmarshal(args, &str) == nil {
		args = json.RawMessage(str)
	}
	b.s.Go(func() {
		out := realtime.CallResult(b.s.Context(), b.s, tool, args)
		if b.s.Context().Err() != nil {
			return
		}
		_ = b.send(map[string]any{"type": "conversation.item.create", "item": map[string]any{
			"type": "function_call_output", "call_id": ev.CallID, "output": out,
		}})
		_ = b.send(map[string]string{"type": "response.create"})
	})
}
