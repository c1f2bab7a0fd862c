package fastrtc

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/mulaw"
	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// The encodings a WebSocketFormat may declare.
const (
	// EncodingMulaw is 8-bit G.711 mu-law, FastRTC's only WebSocket encoding.
	EncodingMulaw = wire.EncodingMulaw
	// EncodingPCM16 is 16-bit signed little-endian linear PCM (interleaved for stereo).
	EncodingPCM16 = wire.EncodingPCM16
)

// WebSocketFormat is the audio format a client of GET /websocket/offer may declare in its
// start message. It is an extension of FastRTC's protocol; clients that do not send it get
// FastRTC's behaviour.
//
// # The WebSocket audio protocol
//
// Every message is a JSON text frame. The client opens GET /websocket/offer and sends
//
//	{"event":"start","websocket_id":"<id>"}
//
// which starts a session with that id (the id that POST /input_hook and GET /outputs take as
// webrtc_id). The concurrency limit is checked here, shared with the other transports: over
// it the server sends {"status":"failed","meta":{"error":"concurrency_limit_reached",
// "limit":N}} and closes the connection normally; a live session with the same id gets
// {"status":"failed","meta":{"error":"connection_already_exists"}}.
//
// Then both sides send {"event":"media","media":{"payload":"<base64>"}}. Without a declared
// format the client sends mono mu-law at the handler's input rate (AudioLayout.InputRate,
// 48000 Hz unless the handler says otherwise) and the server sends mono mu-law at the
// output rate (AudioLayout.OutputRate, else WithAudioOutputRate, default 24000 Hz), one
// message per 20 ms, paced in real time. {"event":"ping"} is answered with
// {"event":"pong"}; {"event":"stop"} ends the session. Control messages reach the client in the data-channel shapes
// ({"type":"log","data":...}, {"type":"send_input","data":[]}, {"type":"error",
// "message":...}, ...). A session that ends is closed with a close frame: 1000 for a normal
// end, 1009 after an oversized message, 1011 (with the error in the reason) after a failure.
//
// A bad message (not JSON, an unknown event, media before start, bad base64, a binary frame)
// is answered with {"type":"error","message":"..."} and otherwise ignored: the session goes
// on. A message larger than the limit (WebSocketOptions.MaxMessageBytes) is answered the same way,
// then the connection is closed with code 1009.
//
// The server pings the connection (WebSocketOptions.PingInterval) and ends the session of a
// client that stops answering. A connection that has not sent start within the connect
// timeout (WithConnectTimeout) is closed.
//
// # The format extension
//
// A start message may carry a format, which then applies to both directions:
//
//	{"event":"start","websocket_id":"x","format":{"encoding":"pcm_s16le","sample_rate":16000,"channels":1}}
//
// Any field may be left out: encoding defaults to "mulaw", sample_rate to the rates above
// (a declared rate is used both ways), channels to 1. The server resamples between the
// declared format and the handler's own. An invalid format is answered with an error
// message and no session starts.
type WebSocketFormat struct {
	// Encoding is EncodingMulaw (also accepted: "audio/x-mulaw", "ulaw") or EncodingPCM16
	// (also accepted: "pcm", "s16le").
	Encoding string `json:"encoding,omitempty"`
	// SampleRate in Hz: a multiple of 50 in 8000..48000.
	SampleRate int `json:"sample_rate,omitempty"`
	// Channels is 1 or 2.
	Channels int `json:"channels,omitempty"`
}

// wsFormat is a resolved transport format.
type wsFormat struct {
	pcm       bool // 16-bit PCM, else mu-law
	inRate    int  // rate of the client's audio
	outRate   int  // rate of the server's audio
	channels  int
	rateFixed bool // the rates are set (declared, or the telephone's)
}

// resolve validates a declared format and fills in what it can.
func (f *WebSocketFormat) resolve() (wsFormat, error) {
	out := wsFormat{channels: 1}
	switch strings.ToLower(f.Encoding) {
	case "", EncodingMulaw, "audio/x-mulaw", "ulaw", "mu-law", "pcmu":
	case EncodingPCM16, "pcm", "s16le", "pcm16":
		out.pcm = true
	default:
		return out, fmt.Errorf("unknown encoding %q (want %q or %q)", f.Encoding, EncodingMulaw, EncodingPCM16)
	}
	if f.SampleRate != 0 {
		if f.SampleRate < 8000 || f.SampleRate > 48000 || f.SampleRate%50 != 0 {
			return out, fmt.Errorf("sample_rate %d must be a multiple of 50 in 8000..48000", f.SampleRate)
		}
		out.inRate, out.outRate, out.rateFixed = f.SampleRate, f.SampleRate, true
	}
	switch f.Channels {
	case 0, 1:
	case 2:
		out.channels = 2
	default:
		return out, fmt.Errorf("channels %d must be 1 or 2", f.Channels)
	}
	return out, nil
}

// fastrtcDialect is FastRTC's WebSocket audio dialect (GET /websocket/offer).
func fastrtcDialect() *wsDialect {
	return &wsDialect{
		name:        "websocket",
		controls:    true,
		start:       fastrtcStart,
		unknownHint: " (want start, media, ping or stop)",
		mediaPrefix: func(*wsConn) []byte { return wire.AppendMediaPrefix(nil, "") },
	}
}

// fastrtcStart reads a FastRTC start message: the websocket_id and an optional format.
func fastrtcStart(t *wsConn, m *wsMessage) (id string, meta map[string]string, f wsFormat, ok bool) {
	if m.WebSocketID == "" {
		t.notice(`invalid start: missing field "websocket_id"`)
		return "", nil, f, false
	}
	if err := checkID(m.WebSocketID); err != nil {
		t.notice("invalid start: websocket_id: " + err.Error())
		return "", nil, f, false
	}
	f = wsFormat{channels: 1}
	if m.Format != nil {
		var err error
		if f, err = (*WebSocketFormat)(m.Format).resolve(); err != nil {
			t.notice("invalid start: format: " + err.Error())
			return "", nil, f, false
		}
	}
	return m.WebSocketID, nil, f, true
}

// audioRoutes are the audio-only transports' routes: the WebSocket audio route and the
// telephone routes (unless TelephoneOptions.Disabled). Only Audio streams have them.
func (s *Stream) audioRoutes() []route {
	if s.modality != Audio {
		return nil
	}
	rs := []route{{"/websocket/offer", http.HandlerFunc(s.serveWebSocket)}}
	if s.cfg.tel.Disabled {
		return rs
	}
	return append(rs,
		route{"/telephone/incoming", http.HandlerFunc(s.serveTelephoneIncoming)},
		route{"/telephone/handler", http.HandlerFunc(s.serveTelephoneHandler)})
}

// serveWebSocket is GET /websocket/offer: FastRTC's WebSocket audio protocol.
func (s *Stream) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if r = s.authorize(w, r, RouteWebSocket, ""); r == nil {
		return
	}
	up := s.upgrader(s.cfg.ws.CheckOrigin)
	if !up.CheckOrigin(r) { // refused before it takes a pending slot
		writeError(w, http.StatusForbidden, "origin not allowed (WebSocketOptions.CheckOrigin, WithCORS)")
		return
	}
	release, ok := s.pendingHandshake(w, r)
	if !ok {
		return
	}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		release()
		s.log.Debug("websocket upgrade", "err", err) // the upgrader wrote the HTTP error
		return
	}
	s.serveWS(r.Context(), conn, fastrtcDialect(), release)
}

// wsStartTimeout bounds the time from a WebSocket handshake to its start message.
const wsStartTimeout = 10 * time.Second

// pendingHandshake takes a slot of WithPendingLimit for a WebSocket connection until it
// starts a session (connections that never start were unbounded: 200 of them held 520 MB).
// When none is free it answers 503 and returns false.
func (s *Stream) pendingHandshake(w http.ResponseWriter, r *http.Request) (func(), bool) {
	release, err := s.takePending(s.clientAddr(r))
	if err != nil {
		s.metrics.refusals[refusalReason(err)].Add(1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "too many connections waiting to start: "+err.Error())
		return nil, false
	}
	return release, true
}

// receive decodes a media payload and gives it to the handler in 20 ms pieces.
func (t *wsConn) receive(payload string) {
	sess := t.sess
	var err error
	t.dec, err = base64.StdEncoding.AppendDecode(t.dec[:0], []byte(payload))
	if err != nil {
		t.notice(fmt.Sprintf("invalid media payload: not base64: %v", err))
		return
	}
	if t.in == nil || len(t.dec) == 0 {
		return // the stream takes no audio from clients
	}
	f := t.format
	if f.pcm {
		if len(t.dec)%(2*f.channels) != 0 {
			t.notice(fmt.Sprintf("invalid media payload: %d bytes is not a whole number of %d-channel 16-bit samples", len(t.dec), f.channels))
			return
		}
		t.pcm = t.pcm[:0]
		for i := 0; i+1 < len(t.dec); i += 2 {
			t.pcm = append(t.pcm, int16(binary.LittleEndian.Uint16(t.dec[i:])))
		}
	} else {
		if len(t.dec)%f.channels != 0 {
			t.notice(fmt.Sprintf("invalid media payload: %d bytes is not a whole number of %d-channel samples", len(t.dec), f.channels))
			return
		}
		t.pcm = mulaw.Decode(t.pcm[:0], t.dec)
	}
	step := f.inRate / 50 * f.channels
	for i := 0; i < len(t.pcm); i += step {
		end := min(i+step, len(t.pcm))
		if err := t.in.receive(t.pcm[i:end], f.inRate, f.channels); err != nil {
			sess.fail(err)
			return
		}
	}
}

// audioSink returns the sink of the session's paced output: each 20 ms frame becomes one
// media message.
func (t *wsConn) audioSink() func([]int16, bool) error {
	prefix := t.d.mediaPrefix(t)
	var raw, msg []byte
	return func(frame []int16, _ bool) error {
		raw = raw[:0]
		if t.format.pcm {
			for _, v := range frame {
				raw = binary.LittleEndian.AppendUint16(raw, uint16(v))
			}
		} else {
			raw = mulaw.Encode(raw, frame)
		}
		msg = append(msg[:0], prefix...)
		msg = base64.StdEncoding.AppendEncode(msg, raw)
		msg = append(msg, wire.MediaSuffix...)
		if err := t.write(msg); err != nil {
			// The client is gone (or the connection is closing): end normally.
			if t.sess.ctx.Err() == nil {
				t.log.Debug("websocket audio write", "err", err)
				t.sess.end(nil, "")
			}
		}
		return nil
	}
}
