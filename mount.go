package fastrtc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Router is anything routes can be added to: *http.ServeMux, chi.Router and most other
// routers satisfy it.
type Router interface {
	Handle(pattern string, h http.Handler)
}

var _ Router = (*http.ServeMux)(nil)

// Mount adds the stream's routes to r, under the prefix set with WithPathPrefix:
//
//	POST /webrtc/offer       SDP offer -> answer; trickled ICE candidates
//	POST /input_hook         set a connection's additional inputs
//	GET  /outputs            a connection's additional outputs (Server-Sent Events)
//	GET  /websocket/offer    audio over a WebSocket (audio streams)
//	POST /telephone/incoming Twilio voice webhook (audio streams)
//	GET  /telephone/handler  Twilio Media Streams (audio streams)
//
// Patterns carry no method, so that they work with any router; each handler checks the
// method itself. The built-in page is not mounted; see UI.
func (s *Stream) Mount(r Router) {
	for _, rt := range s.routes() {
		r.Handle(s.cfg.prefix+rt.path, rt.h)
	}
}

type route struct {
	path string
	h    http.Handler
}

func (s *Stream) routes() []route {
	rs := []route{
		{"/webrtc/offer", http.HandlerFunc(s.serveOffer)},
		{"/input_hook", http.HandlerFunc(s.serveInputHook)},
		{"/outputs", http.HandlerFunc(s.serveOutputs)},
	}
	return append(rs, s.audioRoutes()...)
}

// decodeBody decodes a JSON request body of limited size into v, writing the error response
// and returning false when it cannot.
func (s *Stream) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") && !strings.HasPrefix(ct, "text/plain") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: want application/json", ct))
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.maxBody))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
		case errors.As(err, &se):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err))
		case errors.As(err, &te):
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("field %q: want %s, got JSON %s", te.Field, te.Type, te.Value))
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON: %v", err))
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "malformed JSON: trailing data after the object")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes {"error": msg} with an HTTP error status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeFailed writes the protocol's failure JSON (HTTP 200), which FastRTC clients switch on.
func writeFailed(w http.ResponseWriter, code string, extra map[string]any) {
	meta := map[string]any{"error": code}
	for k, v := range extra {
		meta[k] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "failed", "meta": meta})
}
