package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// maxReply bounds the size of a JSON reply the client reads from the server.
const maxReply = 4 << 20

// routes talks to a server's HTTP routes for one connection id. Safe for concurrent use.
type routes struct {
	base string // without a trailing slash
	id   string
	hc   *http.Client
	hdr  http.Header // sent with every request (credentials for the server's WithAuth)
}

// header adds the connection's headers to req.
func (r *routes) header(req *http.Request) {
	for k, v := range r.hdr {
		req.Header[k] = v
	}
}

// postJSON posts v to route and returns the status and body.
func (r *routes) postJSON(ctx context.Context, route string, v any) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, fmt.Errorf("client: %s: %w", route, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+route, bytes.NewReader(b))
	if err != nil {
		return 0, nil, fmt.Errorf("client: %s: %w", route, err)
	}
	r.header(req)
	req.Header.Set("Content-Type", "application/json")
	res, err := r.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("client: %s: %w", route, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxReply))
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("client: %s: read reply: %w", route, err)
	}
	return res.StatusCode, body, nil
}

// failure parses the protocol's failure JSON, returning nil if body is not one.
func failure(body []byte) *RefusedError {
	// A body that does not parse is not a failure reply either: its parse error is not
	// this function's to report (nil means "not a refusal").
	code, meta, isFailure := wire.DecodeFailure(body)
	if !isFailure {
		return nil
	}
	return &RefusedError{Code: code, Meta: meta}
}

// setInput posts the inputs to /input_hook.
func (r *routes) setInput(ctx context.Context, inputs map[string]any) error {
	body := make(map[string]any, len(inputs)+1)
	for k, v := range inputs {
		body[k] = v
	}
	body[wire.FieldWebRTCID] = r.id
	status, b, err := r.postJSON(ctx, "/input_hook", body)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return &HTTPError{Route: "/input_hook", StatusCode: status, Message: errorMessage(b)}
	}
	if f := failure(b); f != nil {
		return fmt.Errorf("client: /input_hook: %w", f)
	}
	return nil
}

// outputs reads GET /outputs as Server-Sent Events.
func (r *routes) outputs(ctx context.Context) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		u := r.base + "/outputs?" + wire.FieldWebRTCID + "=" + url.QueryEscape(r.id)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			yield(nil, fmt.Errorf("client: /outputs: %w", err))
			return
		}
		r.header(req)
		req.Header.Set("Accept", "text/event-stream")
		res, err := r.hc.Do(req)
		if err != nil {
			yield(nil, fmt.Errorf("client: /outputs: %w", err))
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(res.Body, maxReply))
			yield(nil, &HTTPError{Route: "/outputs", StatusCode: res.StatusCode, Message: errorMessage(b)})
			return
		}
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 0, 64<<10), maxReply)
		var data []byte
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				// End of an event: deliver its data (events named other than "output",
				// other than the default "message", are skipped).
				if len(data) > 0 && (event == "" || event == wire.OutputEvent || event == "message") {
					v := json.RawMessage(bytes.TrimSuffix(data, []byte("\n")))
					if !yield(v, nil) {
						return
					}
				}
				data, event = nil, ""
			case strings.HasPrefix(line, ":"): // comment / keepalive
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "event":
					event = value
				case "data":
					data = append(append(data, value...), '\n')
				}
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			yield(nil, fmt.Errorf("client: /outputs: %w", err))
			return
		}
		if ctx.Err() != nil {
			yield(nil, fmt.Errorf("client: /outputs: %w", ctx.Err()))
		}
	}
}
