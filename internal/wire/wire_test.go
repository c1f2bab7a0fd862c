package wire

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// TestRoundTrip checks every message type against the literal JSON FastRTC's frontends,
// WebSocket clients and Twilio send or read: encoding the Go value gives exactly these
// bytes, and decoding these bytes gives the Go value back. A renamed field or constant
// fails here.
func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		json string
		v    any // a pointer to the value
	}{
		{"send_input", `{"type":"send_input","data":[]}`, &Message{Type: TypeSendInput, Data: []any{}}},
		{"fetch_output", `{"type":"fetch_output","data":[]}`, &Message{Type: TypeFetchOutput, Data: []any{}}},
		{"log started_talking", `{"type":"log","data":"started_talking"}`, &Message{Type: TypeLog, Data: LogStartedTalking}},
		{"log pause_detected", `{"type":"log","data":"pause_detected"}`, &Message{Type: TypeLog, Data: LogPauseDetected}},
		{"log response_starting", `{"type":"log","data":"response_starting"}`, &Message{Type: TypeLog, Data: LogResponseStarting}},
		{"log received", `{"type":"log","data":"Server received: hi"}`, &Message{Type: TypeLog, Data: LogReceivedPrefix + "hi"}},
		{"stopword", `{"type":"stopword","data":""}`, &Message{Type: TypeStopword, Data: ""}},
		{"end_stream", `{"type":"end_stream","data":"Stream closed"}`, &Message{Type: TypeEndStream, Data: DefaultEndStream}},
		{"update_connection closed", `{"type":"update_connection","data":"closed"}`, &Message{Type: TypeUpdateConnection, Data: ConnectionClosed}},
		{"update_connection open", `{"type":"update_connection","data":"open"}`, &Message{Type: TypeUpdateConnection, Data: ConnectionOpen}},
		{"error", `{"type":"error","message":"boom"}`, &Notice{Type: TypeError, Message: "boom"}},
		{"warning", `{"type":"warning","message":"careful"}`, &Notice{Type: TypeWarning, Message: "careful"}},
		{"text", `{"type":"text","data":"hello"}`, &TextMessage{Type: TypeText, Data: "hello"}},

		{"failed concurrency", `{"meta":{"error":"concurrency_limit_reached","limit":2,"reason":"node"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConcurrencyLimit, Limit: 2, Reason: ReasonNode}, Status: StatusFailed}},
		{"failed draining", `{"meta":{"error":"concurrency_limit_reached","reason":"draining"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConcurrencyLimit, Reason: ReasonDraining}, Status: StatusFailed}},
		{"failed cluster", `{"meta":{"error":"concurrency_limit_reached","limit":9,"reason":"cluster"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConcurrencyLimit, Limit: 9, Reason: ReasonCluster}, Status: StatusFailed}},
		{"failed pending", `{"meta":{"error":"concurrency_limit_reached","limit":3,"reason":"pending_source"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConcurrencyLimit, Limit: 3, Reason: ReasonPendingSource}, Status: StatusFailed}},
		{"failed exists", `{"meta":{"error":"connection_already_exists"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConnectionExists}, Status: StatusFailed}},
		{"failed unknown", `{"meta":{"error":"unknown_connection"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeUnknownConnection}, Status: StatusFailed}},
		{"failed closed", `{"meta":{"error":"connection_closed"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeConnectionClosed}, Status: StatusFailed}},
		{"failed candidate", `{"meta":{"detail":"bad","error":"invalid_candidate_format"},"status":"failed"}`,
			&Failure{Meta: FailureMeta{Error: CodeInvalidCandidate, Detail: "bad"}, Status: StatusFailed}},
		{"success", `{"status":"success"}`, ptr(Succeeded())},
		{"error body", `{"error":"unknown connection \"x\""}`, &ErrorBody{Error: `unknown connection "x"`}},
		{"input error body", `{"error":"fastrtc: invalid input \"n\": too big","field":"n"}`, &ErrorBody{Error: `fastrtc: invalid input "n": too big`, Field: "n"}},

		{"offer", `{"sdp":"v=0\r\n","type":"offer","webrtc_id":"abc123"}`, &OfferRequest{SDP: "v=0\r\n", Type: TypeOffer, WebRTCID: "abc123"}},
		{"ice-candidate", `{"type":"ice-candidate","webrtc_id":"abc123","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
			&OfferRequest{Type: TypeICECandidate, WebRTCID: "abc123", Candidate: json.RawMessage(`{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}`)}},
		{"candidate init", `{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}`,
			&ICECandidate{Candidate: ptr("candidate:1 1 udp 1 10.0.0.1 5000 typ host"), SDPMid: ptr("0"), SDPMLineIndex: ptr(uint16(0)), UsernameFragment: ptr("u")}},
		{"answer", `{"sdp":"v=0\r\n","type":"answer"}`, &Answer{SDP: "v=0\r\n", Type: TypeAnswer}},

		{"ws start", `{"event":"start","websocket_id":"x1"}`, &Start{Event: EventStart, WebSocketID: "x1"}},
		{"ws start format", `{"event":"start","websocket_id":"x1","format":{"encoding":"pcm_s16le","sample_rate":16000,"channels":1}}`,
			&Start{Event: EventStart, WebSocketID: "x1", Format: &Format{Encoding: EncodingPCM16, SampleRate: 16000, Channels: 1}}},
		{"ws mulaw format", `{"encoding":"mulaw"}`, &Format{Encoding: EncodingMulaw}},
		{"ws media", `{"event":"media","media":{"payload":"AAE="}}`, &MediaMessage{Event: EventMedia, Media: Media{Payload: "AAE="}}},
		{"ping", `{"event":"ping"}`, &EventMessage{Event: EventPing}},
		{"pong", `{"event":"pong"}`, &EventMessage{Event: EventPong}},
		{"stop", `{"event":"stop"}`, &EventMessage{Event: EventStop}},

		{"twilio media out", `{"event":"media","streamSid":"MZ1","media":{"payload":"AAE="}}`, &MediaMessage{Event: EventMedia, StreamSID: "MZ1", Media: Media{Payload: "AAE="}}},
		{"twilio clear", `{"event":"clear","streamSid":"MZ1"}`, &Clear{Event: EventClear, StreamSID: "MZ1"}},
		{"twilio start", `{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{"user":"u1"}}`,
			&TwilioStart{AccountSID: "AC1", StreamSID: "MZ1", CallSID: "CA1", Tracks: []string{TrackInbound}, CustomParameters: map[string]any{"user": "u1"}}},
		{"twilio dtmf", `{"digit":"5"}`, &DTMF{Digit: "5"}},
		{"twilio mark", `{"name":"m1"}`, &Mark{Name: "m1"}},

		{"forward reply stats", `{"status":200,"info":{"id":"x"}}`, &ForwardReply{Status: http.StatusOK, Info: json.RawMessage(`{"id":"x"}`)}},
		{"forward reply input", `{"status":400,"kind":"invalid_input","error":"e","field":"n","reason":"r"}`,
			&ForwardReply{Status: http.StatusBadRequest, Kind: KindInvalidInput, Error: "e", Field: "n", Reason: "r"}},
		{"forward reply output", `{"status":200,"output":[1,2]}`, &ForwardReply{Status: http.StatusOK, Output: json.RawMessage(`[1,2]`)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.json {
				t.Errorf("encoded\n %s\nwant\n %s", b, c.json)
			}
			got := reflect.New(reflect.TypeOf(c.v).Elem())
			if err := json.Unmarshal([]byte(c.json), got.Interface()); err != nil {
				t.Fatal(err)
			}
			want := c.v
			if m, ok := c.v.(*Message); ok { // Data decodes as JSON's own types
				var d any
				db, _ := json.Marshal(m.Data)
				_ = json.Unmarshal(db, &d)
				want = &Message{Type: m.Type, Data: d}
			}
			if !reflect.DeepEqual(got.Interface(), want) {
				t.Errorf("decoded %+v, want %+v", got.Interface(), want)
			}
		})
	}
}

// TestInbound decodes what clients of the WebSocket and telephone routes send into Inbound.
func TestInbound(t *testing.T) {
	cases := map[string]Inbound{
		`{"event":"start","websocket_id":"x1","format":{"encoding":"mulaw","sample_rate":8000}}`: {Event: EventStart, WebSocketID: "x1", Format: &Format{Encoding: EncodingMulaw, SampleRate: 8000}},
		`{"event":"media","media":{"payload":"AAE="}}`:                                           {Event: EventMedia, Media: &Media{Payload: "AAE="}},
		`{"event":"connected","protocol":"Call","version":"1.0.0"}`:                              {Event: EventConnected},
		`{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{}},"streamSid":"MZ1"}`: {
			Event: EventStart, StreamSID: "MZ1", Start: &TwilioStart{AccountSID: "AC1", StreamSID: "MZ1", CallSID: "CA1", Tracks: []string{"inbound"}, CustomParameters: map[string]any{}}},
		`{"event":"media","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"AAE="}}`: {Event: EventMedia, StreamSID: "MZ1", Media: &Media{Payload: "AAE=", Track: TrackInbound}},
		`{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"1"}}`:                              {Event: EventDTMF, StreamSID: "MZ1", DTMF: &DTMF{Digit: "1"}},
		`{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}`:                                                      {Event: EventMark, StreamSID: "MZ1", Mark: &Mark{Name: "m1"}},
		`{"event":"stop","streamSid":"MZ1"}`:                                                                           {Event: EventStop, StreamSID: "MZ1"},
	}
	for in, want := range cases {
		var got Inbound
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", in, got, want)
		}
	}
}

// TestHelpers checks the encode/decode helpers against the literal bytes.
func TestHelpers(t *testing.T) {
	b, err := EncodeMessage(TypeSendInput, []any{})
	if err != nil || string(b) != `{"type":"send_input","data":[]}` {
		t.Errorf("EncodeMessage = %s, %v", b, err)
	}
	if b := EncodeNotice(TypeWarning, "w"); string(b) != `{"type":"warning","message":"w"}` {
		t.Errorf("EncodeNotice = %s", b)
	}
	if text, ok := DecodeText([]byte(`{"type":"text","data":"hi"}`)); !ok || text != "hi" {
		t.Errorf("DecodeText = %q, %v", text, ok)
	}
	if _, ok := DecodeText([]byte(`{"type":"log","data":"hi"}`)); ok {
		t.Error("DecodeText took a log message")
	}
	code, meta, ok := DecodeFailure([]byte(`{"status":"failed","meta":{"error":"concurrency_limit_reached","limit":1}}`))
	if !ok || code != CodeConcurrencyLimit || meta["limit"] != 1.0 {
		t.Errorf("DecodeFailure = %q, %v, %v", code, meta, ok)
	}
	if _, _, ok := DecodeFailure([]byte(`{"status":"success"}`)); ok {
		t.Error("DecodeFailure took a success")
	}
	if m := string(AppendMediaPrefix(nil, "")) + "AAE=" + MediaSuffix; m != `{"event":"media","media":{"payload":"AAE="}}` {
		t.Errorf("media = %s", m)
	}
	if m := string(AppendMediaPrefix(nil, "MZ1")) + "AAE=" + MediaSuffix; m != `{"event":"media","streamSid":"MZ1","media":{"payload":"AAE="}}` {
		t.Errorf("twilio media = %s", m)
	}
	if c := EncodeClear("MZ1"); string(c) != `{"event":"clear","streamSid":"MZ1"}` {
		t.Errorf("clear = %s", c)
	}
	r := ForwardReply{Status: http.StatusOK, Output: json.RawMessage(`{"a": 1}`)}
	line, err := EncodeReply(r)
	if err != nil || string(line) != "{\"status\":200,\"output\":{\"a\":1}}\n" {
		t.Errorf("EncodeReply = %q, %v", line, err)
	}
	back, err := DecodeReply(line)
	if err != nil || !back.OK() || string(back.Output) != `{"a":1}` {
		t.Errorf("DecodeReply = %+v, %v", back, err)
	}
	if _, err := DecodeReply([]byte(`{}`)); err == nil {
		t.Error("DecodeReply took a reply without a status")
	}
}
