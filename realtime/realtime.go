// Package realtime holds what the speech-to-speech model bridges (packages
// realtime/openai and realtime/gemini) share: tools, the Go functions a model may call with
// typed arguments, and the conversion of PCM to and from the models' base64 wire form.
//
// A bridge is a fastrtc handler: each session of the stream gets its own connection to the
// model, audio converted at the edges (the session's rate to the model's and back, mono),
// barge-in handled in the bridge (queued audio cleared, the response cancelled, the model's
// memory of its reply cut to what the user heard), and transcripts of both sides sent to
// Session.Transcript.
package realtime

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/fastrtc-go/fastrtc"
)

// Errors of the bridges, for errors.Is. A session that ends because of them carries them
// in Session.Err, and its client was told the message.
var (
	// ErrModel is an error event of the model's service (its message follows).
	ErrModel = errors.New("realtime: the model reported an error")
	// ErrConnection is a lost or refused connection to the model's service (after the
	// one reconnection the bridge tries).
	ErrConnection = errors.New("realtime: connection to the model lost")
	// ErrNoKey is returned by a bridge's constructor without an API key.
	ErrNoKey = errors.New("realtime: no API key")
)

// Tool is a Go function the model may call. Its arguments arrive as the JSON object the
// model wrote; its result is sent back to the model as JSON (an error as {"error": msg}:
// the model is told, the session goes on). Call runs on a goroutine of the session (its
// context ends with the session); a slow tool does not hold the audio.
type Tool struct {
	// Name and Description are what the model sees.
	Name, Description string
	// Parameters is the JSON Schema of the arguments object.
	Parameters json.RawMessage
	// Call runs the tool.
	Call func(ctx context.Context, s *fastrtc.Session, args json.RawMessage) (any, error)
}

// Func makes a Tool of a function with typed arguments: T is a struct whose exported
// fields (named by their json tags, described by their `desc` tags) make the Parameters
// schema (string, bool, integer and float fields, and slices of them; fields without
// omitempty are required). The model's arguments are decoded into a T; arguments that do
// not decode are answered with an error the model sees, without calling fn.
func Func[T any](name, description string, fn func(ctx context.Context, s *fastrtc.Session, args T) (any, error)) Tool {
	var zero T
	return Tool{
		Name: name, Description: description, Parameters: Schema(reflect.TypeOf(zero)),
		Call: func(ctx context.Context, s *fastrtc.Session, raw json.RawMessage) (any, error) {
			var args T
			if len(raw) > 0 {
				if err := json.Unmarshal(raw, &args); err != nil {
					return nil, fmt.Errorf("arguments of %s: %w", name, err)
				}
			}
			return fn(ctx, s, args)
		},
	}
}

// Schema returns the JSON Schema of a struct type's exported fields, as Func uses it: an
// object with no properties for anything else.
func Schema(t reflect.Type) json.RawMessage {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	props := map[string]any{}
	required := []string{}
	if t != nil && t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			p := typeSchema(f.Type)
			if d := f.Tag.Get("desc"); d != "" {
				p["description"] = d
			}
			props[name] = p
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
	}
	b, _ := json.Marshal(map[string]any{"type": "object", "properties": props, "required": required})
	return b
}

func typeSchema(t reflect.Type) map[string]any {
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Pointer:
		return typeSchema(t.Elem())
	case reflect.Struct:
		var m map[string]any
		_ = json.Unmarshal(Schema(t), &m)
		return m
	}
	return map[string]any{}
}

// CallResult runs tool with args and returns the JSON its result is sent back as.
func CallResult(ctx context.Context, s *fastrtc.Session, tool *Tool, args json.RawMessage) string {
	var out any
	var err error
	if tool == nil {
		err = errors.New("no such tool")
	} else {
		out, err = tool.Call(ctx, s, args)
	}
	if err != nil {
		out = map[string]string{"error": err.Error()}
	}
	b, mErr := json.Marshal(out)
	if mErr != nil {
		b, _ = json.Marshal(map[string]string{"error": mErr.Error()})
	}
	return string(b)
}

// EncodePCM returns mono 16-bit samples as base64 of little-endian bytes: the models'
// audio encoding.
func EncodePCM(samples []int16) string {
	b := make([]byte, 2*len(samples))
	for i, v := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodePCM decodes base64 little-endian 16-bit PCM, appending to dst.
func DecodePCM(dst []int16, b64 string) ([]int16, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return dst, fmt.Errorf("realtime: audio: %w", err)
	}
	if len(b)%2 != 0 {
		return dst, fmt.Errorf("realtime: audio: odd byte count %d", len(b))
	}
	for i := 0; i+1 < len(b); i += 2 {
		dst = append(dst, int16(binary.LittleEndian.Uint16(b[i:])))
	}
	return dst, nil
}
