package fastrtc

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

//go:embed ui/index.html
var uiFiles embed.FS

// WithTitle sets the built-in page's title and subtitle (FastRTC's ui_args).
func WithTitle(title, subtitle string) Option {
	return func(c *config) { c.title, c.subtitle = title, subtitle }
}

// WithoutUI turns the built-in page off: Handler and ListenAndServe then serve only the
// routes, and UI answers 404.
func WithoutUI() Option { return func(c *config) { c.noUI = true } }

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
		Pause: s.pauseDetection(),
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
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

// ListenAndServe is the one-call launcher (FastRTC's ui.launch): it serves the stream's
// routes and, at the prefix's root, the built-in page (see Handler) on addr, and logs the
// page's URL with the stream's logger (at Info level; see WithLogger). When ctx is done it
// stops accepting connections, ends every session (Stream.Close) and returns nil. It returns
// an error if it cannot listen on addr or the server fails.
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//	defer stop()
//	err := stream.ListenAndServe(ctx, "127.0.0.1:8000")
//
// Browsers give a page the camera and microphone only in a secure context: open the page on
// localhost or 127.0.0.1, or serve it over HTTPS (e.g. behind a reverse proxy).
func (s *Stream) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.serve(ctx, ln)
}

// serve is ListenAndServe on a listener.
func (s *Stream) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.log.Info("fastrtc: serving", "url", pageURL(ln.Addr(), s.cfg.prefix), "modality", string(s.modality), "mode", string(s.mode))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stop accepting (Shutdown closes the listener at once, then waits for the open requests),
	// end the sessions, which ends their /outputs streams, and wait briefly for the rest.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(sctx) }()
	cerr := s.CloseContext(sctx)
	if err := <-shut; err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return cerr
	}
	return nil
}

// pageURL is the URL to open for a listener's address: an unspecified host (":8000",
// "0.0.0.0:8000") becomes 127.0.0.1, a secure context for getUserMedia.
func pageURL(a net.Addr, prefix string) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + prefix + "/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + prefix + "/"
}
