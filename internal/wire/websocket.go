package wire

import "encoding/json"

// The events of the WebSocket route (FastRTC's dialect) and of Twilio Media Streams:
// {"event": E, ...}.
const (
	EventStart     = "start"     // client: starts a session (Start; Twilio: with TwilioStart)
	EventMedia     = "media"     // both ways: base64 audio in Media
	EventPing      = "ping"      // client: answered with EventPong (FastRTC's dialect)
	EventPong      = "pong"      // server: the answer to EventPing
	EventStop      = "stop"      // client: ends the session
	EventConnected = "connected" // Twilio: the stream is connected (before start)
	EventMark      = "mark"      // Twilio: a mark the server set was played
	EventDTMF      = "dtmf"      // Twilio: a key was pressed
	EventClear     = "clear"     // server to Twilio: drop the buffered audio
)

// TrackInbound is the Twilio media track of the caller's audio (the only one taken).
const TrackInbound = "inbound"

// The audio encodings a Format may declare.
const (
	// EncodingMulaw is 8-bit G.711 mu-law, FastRTC's only WebSocket encoding.
	EncodingMulaw = "mulaw"
	// EncodingPCM16 is 16-bit signed little-endian linear PCM (interleaved for stereo).
	EncodingPCM16 = "pcm_s16le"
)

// Format is the audio format a start message may declare (an extension of FastRTC's
// protocol; fastrtc.WebSocketFormat documents it).
type Format struct {
	Encoding   string `json:"encoding,omitempty"`
	SampleRate int    `json:"sample_rate,omitempty"`
	Channels   int    `json:"channels,omitempty"`
}

// Start is the client's start message of FastRTC's dialect:
// {"event":"start","websocket_id":ID} with an optional format.
type Start struct {
	Event       string  `json:"event"` // EventStart
	WebSocketID string  `json:"websocket_id"`
	Format      *Format `json:"format,omitempty"`
}

// EventMessage is a message that is only its event: {"event":"ping"}, "pong", "stop".
type EventMessage struct {
	Event string `json:"event"`
}

// Media is the media object of a media message: base64 audio (mu-law, or PCM in a declared
// format), and Twilio's track.
type Media struct {
	Payload string `json:"payload"`
	Track   string `json:"track,omitempty"`
}

// MediaMessage is a media message: {"event":"media","media":{"payload":B64}}, and to
// Twilio {"event":"media","streamSid":SID,"media":{"payload":B64}}.
type MediaMessage struct {
	Event     string `json:"event"` // EventMedia
	StreamSID string `json:"streamSid,omitempty"`
	Media     Media  `json:"media"`
}

// Clear tells Twilio to drop the audio it buffered: {"event":"clear","streamSid":SID}.
type Clear struct {
	Event     string `json:"event"` // EventClear
	StreamSID string `json:"streamSid"`
}

// TwilioStart is the "start" object of Twilio's start message.
type TwilioStart struct {
	AccountSID       string         `json:"accountSid"`
	StreamSID        string         `json:"streamSid"`
	CallSID          string         `json:"callSid"`
	Tracks           []string       `json:"tracks"`
	CustomParameters map[string]any `json:"customParameters"`
}

// DTMF is the "dtmf" object of Twilio's dtmf message.
type DTMF struct {
	Digit string `json:"digit"`
}

// Mark is the "mark" object of Twilio's mark message.
type Mark struct {
	Name string `json:"name"`
}

// Inbound is any message a client of the WebSocket or the telephone route sends: the
// fields of every event of both dialects.
type Inbound struct {
	Event       string       `json:"event"`
	WebSocketID string       `json:"websocket_id"`
	StreamSID   string       `json:"streamSid"`
	Format      *Format      `json:"format"`
	Media       *Media       `json:"media"`
	Start       *TwilioStart `json:"start"`
	DTMF        *DTMF        `json:"dtmf"`
	Mark        *Mark        `json:"mark"`
}

// AppendMediaPrefix appends to dst a media message up to its base64 payload:
// {"event":"media","media":{"payload":" or, with a streamSid (Twilio),
// {"event":"media","streamSid":SID,"media":{"payload":". MediaSuffix ends it. Senders
// build media messages this way to encode the payload in place.
func AppendMediaPrefix(dst []byte, streamSID string) []byte {
	dst = append(dst, `{"event":"`+EventMedia+`",`...)
	if streamSID != "" {
		sid, _ := json.Marshal(streamSID) // a string: never fails
		dst = append(dst, `"streamSid":`...)
		dst = append(dst, sid...)
		dst = append(dst, ',')
	}
	return append(dst, `"media":{"payload":"`...)
}

// MediaSuffix ends a media message begun with AppendMediaPrefix and its payload.
const MediaSuffix = `"}}`

// EncodeClear returns the JSON of a Clear for streamSID.
func EncodeClear(streamSID string) []byte {
	b, _ := json.Marshal(Clear{Event: EventClear, StreamSID: streamSID}) // strings: never fails
	return b
}
