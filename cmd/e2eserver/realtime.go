package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/realtime"
	"github.com/fastrtc-go/fastrtc/realtime/openai"
)

// fakeModel stands in for OpenAI's Realtime endpoint for the realtime kind: it speaks the
// GA protocol and plays a model with server VAD. Speech in the appended audio (20 ms frames
// louder than -36 dBFS) starts a turn (input_audio_buffer.speech_started; over a reply that
// is barge-in), 600 ms of quiet ends it (speech_stopped, a transcript), and every turn gets a
// 6 s reply of 600 Hz sent at once (faster than real time, as the service does). What the
// bridge sent (the appended audio's rate, response.cancel, conversation.item.truncate) is
// served as JSON at /debug/realtime for e2e/suite.mjs.
type fakeModel struct {
	url string

	mu        sync.Mutex
	conns     int
	samples   int       // appended samples (24 kHz expected)
	firstAt   time.Time // first append
	lastAt    time.Time
	replies   []fakeEvent // a reply's first delta sent
	bargeIns  []fakeEvent // speech_started sent over a reply
	cancels   []fakeEvent
	truncates []fakeEvent
}

// fakeEvent is one event with its wall-clock time (Unix ms: the browser's clock too).
type fakeEvent struct {
	At         int64  `json:"at"`
	Item       string `json:"item,omitempty"`
	AudioEndMs int64  `json:"audio_end_ms,omitempty"`
}

// realtimeModel is the realtime kind's fake model (one per process; a test tool's global).
var realtimeModel *fakeModel

func newFakeModel() (*fakeModel, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &fakeModel{url: "ws://" + ln.Addr().String() + "/v1/realtime"}
	srv := &http.Server{Handler: http.HandlerFunc(m.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return m, nil
}

func (m *fakeModel) serveDebug(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rate := 0.0
	if d := m.lastAt.Sub(m.firstAt).Seconds(); d > 1 {
		rate = float64(m.samples) / d
	}
	nonNil := func(e []fakeEvent) []fakeEvent {
		if e == nil {
			return []fakeEvent{}
		}
		return e
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"connections": m.conns, "samples": m.samples, "append_rate_hz": math.Round(rate),
		"replies": nonNil(m.replies), "barge_ins": nonNil(m.bargeIns), "cancels": nonNil(m.cancels), "truncates": nonNil(m.truncates),
	})
}

func (m *fakeModel) serve(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	m.mu.Lock()
	m.conns++
	m.mu.Unlock()
	var wmu sync.Mutex
	send := func(v any) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = ws.WriteJSON(v)
	}
	send(map[string]any{"type": "session.created", "session": map[string]any{"type": "realtime"}})
	var (
		speaking      bool
		loud, quiet   int
		pending       []int16
		turn          int
		replyEnds     time.Time // when the current reply would end, played in real time
		replyItem     string
		speechStarted time.Time
	)
	for {
		var ev map[string]any
		if err := ws.ReadJSON(&ev); err != nil {
			return
		}
		now := time.Now()
		switch ev["type"] {
		case "response.cancel":
			m.mu.Lock()
			m.cancels = append(m.cancels, fakeEvent{At: now.UnixMilli()})
			m.mu.Unlock()
			replyEnds = time.Time{}
		case "conversation.item.truncate":
			end, _ := ev["audio_end_ms"].(float64)
			item, _ := ev["item_id"].(string)
			m.mu.Lock()
			m.truncates = append(m.truncates, fakeEvent{At: now.UnixMilli(), Item: item, AudioEndMs: int64(end)})
			m.mu.Unlock()
		case "input_audio_buffer.append":
			b64, _ := ev["audio"].(string)
			pcm, err := realtime.DecodePCM(nil, b64)
			if err != nil {
				return
			}
			m.mu.Lock()
			if m.firstAt.IsZero() {
				m.firstAt = now
			}
			m.samples += len(pcm)
			m.lastAt = now
			m.mu.Unlock()
			pending = append(pending, pcm...)
			for len(pending) >= 480 { // 20 ms at 24 kHz
				var e float64
				for _, v := range pending[:480] {
					e += float64(v) * float64(v)
				}
				pending = pending[480:]
				if math.Sqrt(e/480) > 500 { // about -36 dBFS
					loud, quiet = loud+1, 0
				} else {
					quiet++
					if quiet >= 3 {
						loud = 0
					}
				}
				switch {
				case !speaking && loud >= 3:
					speaking, speechStarted = true, now
					send(map[string]any{"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": fmt.Sprintf("user_%d", turn)})
					if now.Before(replyEnds) {
						m.mu.Lock()
						m.bargeIns = append(m.bargeIns, fakeEvent{At: now.UnixMilli(), Item: replyItem})
						m.mu.Unlock()
					}
				case speaking && quiet >= 30:
					speaking = false
					send(map[string]any{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0, "item_id": fmt.Sprintf("user_%d", turn)})
					send(map[string]any{"type": "conversation.item.input_audio_transcription.completed", "item_id": fmt.Sprintf("user_%d", turn),
						"content_index": 0, "transcript": fmt.Sprintf("(%.1f s of speech)", now.Sub(speechStarted).Seconds()-0.6)})
					turn++
					resp, item := fmt.Sprintf("resp_%d", turn), fmt.Sprintf("item_%d", turn)
					send(map[string]any{"type": "response.created", "response": map[string]any{"id": resp, "status": "in_progress"}})
					send(map[string]any{"type": "response.output_item.added", "response_id": resp, "item": map[string]any{"id": item, "type": "message", "role": "assistant"}})
					m.mu.Lock()
					m.replies = append(m.replies, fakeEvent{At: time.Now().UnixMilli(), Item: item})
					m.mu.Unlock()
					for i := 0; i < 60; i++ { // 6 s in 100 ms deltas, at once
						tone := make([]int16, 2400)
						for j := range tone {
							tone[j] = int16(8000 * math.Sin(2*math.Pi*600*float64(i*2400+j)/24000))
						}
						send(map[string]any{"type": "response.output_audio.delta", "response_id": resp, "item_id": item,
							"output_index": 0, "content_index": 0, "delta": realtime.EncodePCM(tone)})
					}
					send(map[string]any{"type": "response.output_audio_transcript.done", "response_id": resp, "item_id": item, "transcript": "It is sunny today."})
					replyEnds, replyItem = time.Now().Add(6*time.Second), item
				}
			}
		}
	}
}

// realtimeStream is the realtime kind: the OpenAI bridge to the fake model.
func realtimeStream(opts []fastrtc.Option) (*fastrtc.Stream, error) {
	m, err := newFakeModel()
	if err != nil {
		return nil, err
	}
	realtimeModel = m
	agent, err := openai.New(openai.Options{APIKey: "sk-e2e", BaseURL: m.url})
	if err != nil {
		return nil, err
	}
	return fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive, append(opts, fastrtc.WithChatOutputs(),
		fastrtc.WithTitle("Realtime", "OpenAI's Realtime protocol, against a local fake model: speak, and talk over its reply."),
		// The fake microphone plays espeak-ng's voice, unprocessed (as for talk).
		fastrtc.WithTrackConstraints(fastrtc.TrackConstraints{
			Audio: map[string]any{"echoCancellation": false, "noiseSuppression": false, "autoGainControl": false}}))...)
}
