package fastrtc

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// InputKind is the widget kind of an additional input. It tells a UI what to render and the
// input hook how to validate a value.
type InputKind string

// The input kinds.
const (
	KindSlider   InputKind = "slider"   // a float64 in [Min, Max] with a Step
	KindNumber   InputKind = "number"   // a float64, optionally bounded by Min and Max
	KindText     InputKind = "text"     // a string
	KindCheckbox InputKind = "checkbox" // a bool
	KindDropdown InputKind = "dropdown" // a string, one of Choices
	KindJSON     InputKind = "json"     // any JSON value (lists, objects), at most MaxBytes encoded
)

// DefaultJSONInputBytes bounds a JSON input's encoded size unless WithMaxBytes says otherwise.
const DefaultJSONInputBytes = 64 << 10

// Input declares one additional input: a per-connection parameter that a client sets over
// POST /input_hook (or the server with Stream.SetInput) and the handler reads with
// Session.Inputs. Build Inputs with Slider, Number, Text, Checkbox and Dropdown.
type Input struct {
	Name    string    `json:"name"`
	Label   string    `json:"label,omitempty"`
	Kind    InputKind `json:"kind"`
	Min     *float64  `json:"min,omitempty"`
	Max     *float64  `json:"max,omitempty"`
	Step    float64   `json:"step,omitempty"`
	Default any       `json:"default"`
	Choices []string  `json:"choices,omitempty"`
	// MaxBytes bounds a JSON input's encoded size (0: DefaultJSONInputBytes) and a text
	// input's length in bytes (0: DefaultTextInputBytes).
	MaxBytes int `json:"max_bytes,omitempty"`
}

// JSON declares an input that carries any JSON value (a chat history, a list of messages, an
// object of settings), starting at def (which must encode as JSON): FastRTC's pages post such
// values (chatbot, state) to /input_hook. A posted value larger than MaxBytes encoded is
// refused. Read it with Inputs.JSON.
func JSON(name string, def any) Input { return Input{Name: name, Kind: KindJSON, Default: def} }

// DefaultTextInputBytes bounds a text input (and a text message on the data channel) unless
// Input.MaxBytes says otherwise: a 96 KB text once took a voice agent from 321 to 985 MB
// while espeak-ng synthesized it as one sentence.
const DefaultTextInputBytes = 4096

// WithMaxBytes returns a copy of in bounded to n bytes of encoded JSON (JSON inputs) or of
// text (text inputs).
func (in Input) WithMaxBytes(n int) Input { in.MaxBytes = n; return in }

// Slider declares a float input in [min, max] moving by step, starting at def.
func Slider(name string, min, max, step, def float64) Input {
	return Input{Name: name, Kind: KindSlider, Min: &min, Max: &max, Step: step, Default: def}
}

// Number declares an unbounded float input starting at def. Use WithRange to bound it.
func Number(name string, def float64) Input {
	return Input{Name: name, Kind: KindNumber, Default: def}
}

// Text declares a string input starting at def.
func Text(name, def string) Input { return Input{Name: name, Kind: KindText, Default: def} }

// Checkbox declares a bool input starting at def.
func Checkbox(name string, def bool) Input {
	return Input{Name: name, Kind: KindCheckbox, Default: def}
}

// Dropdown declares a string input that must be one of choices, starting at def.
func Dropdown(name string, choices []string, def string) Input {
	return Input{Name: name, Kind: KindDropdown, Choices: slices.Clone(choices), Default: def}
}

// WithLabel returns a copy of in with a human-readable label for UIs.
func (in Input) WithLabel(label string) Input { in.Label = label; return in }

// WithRange returns a copy of in bounded to [min, max] (for Number inputs).
func (in Input) WithRange(min, max float64) Input { in.Min, in.Max = &min, &max; return in }

func (in Input) check() error {
	if in.Name == "" || in.Name == wire.FieldWebRTCID {
		return fmt.Errorf("%w: input name %q is empty or reserved", ErrInvalidConfig, in.Name)
	}
	if in.Kind == KindDropdown && len(in.Choices) == 0 {
		return fmt.Errorf("%w: dropdown %q has no choices", ErrInvalidConfig, in.Name)
	}
	if _, err := in.convert(in.Default); err != nil {
		return fmt.Errorf("%w: default of %q: %w", ErrInvalidConfig, in.Name, err)
	}
	return nil
}

// convert checks v against the declaration and returns its canonical Go value
// (float64, string or bool).
func (in Input) convert(v any) (any, error) {
	switch in.Kind {
	case KindSlider, KindNumber:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		case int:
			f = float64(x)
		case int64:
			f = float64(x)
		case json.Number:
			var err error
			if f, err = x.Float64(); err != nil {
				return nil, fmt.Errorf("want a number, got %q", x.String())
			}
		default:
			return nil, fmt.Errorf("want a number, got %s", jsonKind(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("want a finite number")
		}
		if in.Min != nil && f < *in.Min || in.Max != nil && f > *in.Max {
			return nil, fmt.Errorf("%v is outside [%v, %v]", f, deref(in.Min, math.Inf(-1)), deref(in.Max, math.Inf(1)))
		}
		return f, nil
	case KindText:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
		}
		s = strings.ToValidUTF8(s, "\uFFFD")
		if limit := cmp.Or(in.MaxBytes, DefaultTextInputBytes); len(s) > limit {
			return nil, fmt.Errorf("text of %d bytes is longer than %d (Input.MaxBytes)", len(s), limit)
		}
		return s, nil
	case KindCheckbox:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("want a boolean, got %s", jsonKind(v))
		}
		return b, nil
	case KindDropdown:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
		}
		if !slices.Contains(in.Choices, s) {
			return nil, fmt.Errorf("%q is not one of %q", s, in.Choices)
		}
		return s, nil
	case KindJSON:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("want a JSON value: %w", err)
		}
		limit := in.MaxBytes
		if limit <= 0 {
			limit = DefaultJSONInputBytes
		}
		if len(b) > limit {
			return nil, fmt.Errorf("%d bytes of JSON, more than %d", len(b), limit)
		}
		return json.RawMessage(b), nil
	}
	return nil, fmt.Errorf("unknown input kind %q", in.Kind)
}

func deref(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// InputError says which input a rejected value was for and why. It wraps ErrInvalidInput.
type InputError struct {
	Field  string // the input's name
	Reason string // what was wrong
}

// Error says which input was rejected and why.
func (e *InputError) Error() string {
	return fmt.Sprintf("fastrtc: invalid input %q: %s", e.Field, e.Reason)
}

// Unwrap returns ErrInvalidInput.
func (e *InputError) Unwrap() error { return ErrInvalidInput }

// Inputs is an immutable snapshot of one session's additional inputs. The zero value has no
// inputs. It is safe for concurrent use.
type Inputs struct {
	vals map[string]any
}

// Get returns the value of the named input (float64, string or bool) and whether it exists.
func (in Inputs) Get(name string) (any, bool) {
	v, ok := in.vals[name]
	return v, ok
}

// Float returns the named slider or number input, or 0.
func (in Inputs) Float(name string) float64 { f, _ := in.vals[name].(float64); return f }

// Text returns the named text or dropdown input, or "".
func (in Inputs) Text(name string) string { s, _ := in.vals[name].(string); return s }

// String returns the inputs as a JSON object, for logs (Inputs is a fmt.Stringer).
func (in Inputs) String() string {
	b, err := json.Marshal(in.vals)
	if err != nil {
		return fmt.Sprintf("%v", in.vals)
	}
	return string(b)
}

// JSON decodes the named JSON input into dst (as encoding/json.Unmarshal does). It returns an
// error if there is no such input.
func (in Inputs) JSON(name string, dst any) error {
	raw, ok := in.vals[name].(json.RawMessage)
	if !ok {
		return fmt.Errorf("fastrtc: no JSON input %q", name)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("fastrtc: JSON input %q: %w", name, err)
	}
	return nil
}

// Bool returns the named checkbox input, or false.
func (in Inputs) Bool(name string) bool { b, _ := in.vals[name].(bool); return b }

// Names returns the names of the inputs in sorted order.
func (in Inputs) Names() []string {
	names := make([]string, 0, len(in.vals))
	for k := range in.vals {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// MarshalJSON encodes the inputs as a JSON object.
func (in Inputs) MarshalJSON() ([]byte, error) { return json.Marshal(in.vals) }

// inputSet is a Stream's declared inputs.
type inputSet []Input

func (set inputSet) defaults() Inputs {
	vals := make(map[string]any, len(set))
	for _, in := range set {
		v, _ := in.convert(in.Default)
		vals[in.Name] = v
	}
	return Inputs{vals: vals}
}

// apply validates values against the declarations and returns base updated with them.
// Values for undeclared names are rejected.
func (set inputSet) apply(base Inputs, values map[string]any) (Inputs, error) {
	vals := make(map[string]any, len(set))
	for k, v := range base.vals {
		vals[k] = v
	}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic error for several bad fields
	for _, name := range names {
		i := slices.IndexFunc(set, func(in Input) bool { return in.Name == name })
		if i < 0 {
			return base, &InputError{Field: name, Reason: fmt.Sprintf("no such input (declared: %s)", set.names())}
		}
		v, err := set[i].convert(values[name])
		if err != nil {
			return base, &InputError{Field: name, Reason: err.Error()}
		}
		vals[name] = v
	}
	return Inputs{vals: vals}, nil
}

func (set inputSet) names() string {
	if len(set) == 0 {
		return "none"
	}
	s := ""
	for i, in := range set {
		if i > 0 {
			s += ", "
		}
		s += in.Name
	}
	return s
}

// serveInputHook is POST /input_hook: {"webrtc_id": ID, <input>: <value>, ...}.
func (s *Stream) serveInputHook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	var body map[string]any
	if !s.decodeBody(w, r, &body) {
		return
	}
	id, _ := body[wire.FieldWebRTCID].(string)
	if id == "" {
		writeError(w, http.StatusUnprocessableEntity, "missing field: webrtc_id (a string)")
		return
	}
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "webrtc_id: "+err.Error())
		return
	}
	if r = s.authorize(w, r, RouteInputHook, id); r == nil {
		return
	}
	delete(body, wire.FieldWebRTCID)
	writeInputResult(w, false, inputReply(id, s.setInput(r.Context(), id, body)))
}

// inputReply is the answer of /input_hook to the outcome of setting the inputs.
func inputReply(id string, err error) wire.ForwardReply {
	var ie *InputError
	switch {
	case err == nil:
		return wire.ForwardReply{Status: http.StatusOK}
	case errors.Is(err, ErrUnknownConnection):
		return unknownReply(id)
	case errors.Is(err, ErrForwarding):
		return wire.ForwardReply{Status: http.StatusBadGateway, Kind: wire.KindForwarding, Error: err.Error()}
	case errors.As(err, &ie):
		return wire.ForwardReply{Status: http.StatusBadRequest, Kind: wire.KindInvalidInput, Error: ie.Error(), Field: ie.Field, Reason: ie.Reason}
	}
	return wire.ForwardReply{Status: http.StatusBadRequest, Kind: wire.KindFailed, Error: err.Error()}
}

// writeInputResult answers /input_hook with rep (typed: as itself, for another node's Go
// call).
func writeInputResult(w http.ResponseWriter, typed bool, rep wire.ForwardReply) {
	switch {
	case typed:
		writeJSON(w, http.StatusOK, rep)
	case rep.OK():
		writeJSON(w, http.StatusOK, wire.Succeeded())
	default:
		writeJSON(w, rep.Status, rep.Body())
	}
}
