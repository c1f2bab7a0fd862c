package fastrtc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Handler returns an http.Handler serving the stream's routes (as Mount adds them) and, at
// the prefix's root, the built-in page unless it was turned off.
func (s *Stream) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux)
	if !s.cfg.noUI {
		root := s.cfg.prefix + "/"
		if root == "//" {
			root = "/"
		}
		mux.Handle(root, s.UI())
	}
	return mux
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
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
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
	cerr := s.Shutdown(sctx)
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
