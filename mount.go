package fastrtc

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/fastrtc-go/fastrtc/internal/wire"
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
//	GET  /webrtc/config      the RTCConfiguration clients should use (ICE servers)
//	GET  /stats              a connection's figures, JSON {"id", "node", "stats": SessionStats}
//	GET  /websocket/offer    audio over a WebSocket (audio streams)
//	POST /telephone/incoming Twilio voice webhook (audio streams; see TelephoneOptions)
//	GET  /telephone/handler  Twilio Media Streams (audio streams; see TelephoneOptions)
//
// Patterns carry no method, so that they work with any router; each handler checks the
// method itself. The built-in page is not mounted; see UI.
func (s *Stream) Mount(r Router) {
	for _, rt := range s.routes() {
		h := rt.h
		if len(s.cfg.corsOrigins) > 0 {
			h = s.cors(h)
		}
		r.Handle(s.cfg.prefix+rt.path, noSniff(h))
	}
}

// noSniff marks every answer X-Content-Type-Options: nosniff, so that a browser never
// reads a JSON or event-stream answer as something else.
func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// cors answers CORS preflights and marks responses to the allowed origins (WithCORS).
func (s *Stream) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.originAllowed(origin)
		if origin != "" {
			w.Header().Add("Vary", "Origin")
		}
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			if s.cfg.auth != nil && origin != "*" {
				w.Header().Set("Access-Control-Allow-Credentials", "true")
			}
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeError(w, http.StatusForbidden, fmt.Sprintf("origin %q is not allowed (WithCORS)", origin))
				return
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			if s.cfg.auth != nil { // credentials (a bearer header or a cookie) must come along
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
				w.Header().Set("Access-Control-Allow-Credentials", "true")
			} else {
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
			}
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Stream) originAllowed(origin string) bool {
	for _, o := range s.cfg.corsOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
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
		{"/webrtc/config", http.HandlerFunc(s.serveRTCConfig)},
		{"/stats", http.HandlerFunc(s.serveStats)},
	}
	return append(rs, s.audioRoutes()...)
}

// getSessionID checks that r is a GET naming a session (?webrtc_id=ID) and returns the id,
// or writes the error response and returns false.
func getSessionID(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return "", false
	}
	id := r.URL.Query().Get(wire.FieldWebRTCID)
	if id == "" {
		writeError(w, http.StatusUnprocessableEntity, "missing query parameter webrtc_id")
		return "", false
	}
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "webrtc_id: "+err.Error())
		return "", false
	}
	return id, true
}

// decodeBody decodes a JSON request body of limited size into v, writing the error response
// and returning false when it cannot.
func (s *Stream) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	// Only JSON: a text/plain or untyped body is what a cross-site "simple request" (no
	// CORS preflight) can send, so accepting one would let any web page post offers and
	// inputs. Frontends on another origin are allowed with WithCORS.
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		msg := fmt.Sprintf("content type %q: want application/json", ct)
		if ct == "" {
			msg = "missing Content-Type: want application/json"
		}
		writeError(w, http.StatusUnsupportedMediaType, msg)
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
	writeJSON(w, status, wire.ErrorBody{Error: msg})
}

// writeFailed writes the protocol's failure JSON (HTTP 200), which FastRTC clients switch on.
func writeFailed(w http.ResponseWriter, meta wire.FailureMeta) {
	writeJSON(w, http.StatusOK, wire.Failed(meta))
}
