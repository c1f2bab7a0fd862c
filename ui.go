package fastrtc

import (
	"bytes"
	"embed"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
)

//go:embed ui/index.html
var uiFiles embed.FS

// uiConfig is what the built-in page needs to know about the stream; it is embedded in the
// page as window.FASTRTC_CONFIG.
type uiConfig struct {
	Title      string             `json:"title"`
	Subtitle   string             `json:"subtitle,omitempty"`
	Modality   Modality           `json:"modality"`
	Mode       Mode               `json:"mode"`
	Prefix     string             `json:"prefix"`
	Inputs     []Input            `json:"inputs"`
	Outputs    []Output           `json:"outputs"`
	ICEServers []webrtc.ICEServer `json:"ice_servers"`
	Pause      bool               `json:"pause_detection"`
	Audio      map[string]any     `json:"audio_constraints"`
	Video      map[string]any     `json:"video_constraints,omitempty"`
	TextInput  string             `json:"text_input,omitempty"` // AudioAgent.TextInput (voice.WithTextInput): the page's text box
}

// UI returns the built-in page for trying the stream in a browser: camera and/or microphone,
// remote media, controls for the declared inputs, live outputs, messages and statistics. The
// page is embedded in the binary and loads nothing from the network. It expects the stream's
// routes under the prefix (see Mount). It serves the page for every GET it receives.
func (s *Stream) UI() http.Handler {
	page, _ := uiFiles.ReadFile("ui/index.html")
	cfg := uiConfig{
		Title: s.cfg.title, Subtitle: s.cfg.subtitle, Modality: s.modality, Mode: s.mode,
		Prefix: s.cfg.prefix, Inputs: s.cfg.inputs, Outputs: s.cfg.outputs, ICEServers: s.cfg.iceServers,
		Pause: s.pauseDetection(), TextInput: s.textInput(),
	}
	voice := cfg.Pause
	cfg.Audio = map[string]any{"echoCancellation": voice, "noiseSuppression": voice, "autoGainControl": voice, "channelCount": 1}
	if tc := s.cfg.constraints; tc != nil {
		if tc.Audio != nil {
			cfg.Audio = tc.Audio
		}
		cfg.Video = tc.Video
	}
	if s.cfg.auth != nil {
		// The page fetches GET /webrtc/config, which WithAuth guards; it must not carry
		// the ICE servers' credentials to whoever loads it.
		cfg.ICEServers = nil
	}
	if cfg.Inputs == nil {
		cfg.Inputs = []Input{}
	}
	if cfg.Outputs == nil {
		cfg.Outputs = []Output{}
	}
	js, _ := json.Marshal(cfg)
	// Make the JSON safe inside a <script> element.
	safe := strings.NewReplacer("<", `\u003c`, ">", `\u003e`, "&", `\u0026`).Replace(string(js))
	body := bytes.Replace(page, []byte("/*FASTRTC_CONFIG*/null"), []byte(safe), 1)
	noUI := s.cfg.noUI
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if noUI {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "use GET")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		// The page holds the camera and microphone: no other site may frame it (a
		// clickjacking page could get the user to start it), and nothing is sniffed.
		h.Set("Content-Security-Policy", "frame-ancestors 'self'; base-uri 'none'; object-src 'none'")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(body)
	})
}
