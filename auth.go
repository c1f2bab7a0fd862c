package fastrtc

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/fastrtc-go/fastrtc/internal/wire"
)

// Errors an AuthFunc returns to refuse a request.
var (
	// ErrUnauthorized refuses a request that carries no valid credentials: HTTP 401.
	ErrUnauthorized = errors.New("fastrtc: unauthorized")
	// ErrForbidden refuses a request whose caller may not do this: HTTP 403. Any other
	// error from an AuthFunc is answered the same way (its text is logged, not sent).
	ErrForbidden = errors.New("fastrtc: forbidden")
)

// Routes an AuthFunc sees, besides RouteOffer, RouteCandidate, RouteInputHook, RouteOutputs
// and RouteStats.
const (
	RouteConfig    = wire.RouteConfig    // GET /webrtc/config
	RouteWebSocket = wire.RouteWebSocket // GET /websocket/offer (the handshake; the id comes later)
	RouteTelephone = wire.RouteTelephone // POST /telephone/incoming and GET /telephone/handler
)

// AuthFunc decides who may use a stream's routes (WithAuth). It sees every request, with the
// route and the session id it names ("" for RouteConfig, RouteWebSocket and RouteTelephone),
// before anything else is done, and returns the caller's identity (a user id, a token's
// subject) or an error: ErrUnauthorized is answered 401, any other 403, in the protocol's
// failure shape ({"status": "failed", "meta": {"error": "unauthorized" | "forbidden"}}). It
// is called concurrently.
type AuthFunc func(r *http.Request, route, id string) (identity string, err error)

// WithAuth sets the stream's authorization hook (FastRTC users ask for one: its routes take
// any client who knows or guesses an id). A session belongs to the identity that opened it:
// later requests that name it (trickled candidates, /input_hook, /outputs, /stats) from
// another identity are answered as for an unknown id (404, unknown_connection). The handler reads it with Session.Identity. Go calls
// (Stream.SetInput, Outputs, Session) are not checked: they are the server's own.
func WithAuth(fn AuthFunc) Option { return func(c *config) { c.auth = fn } }

// identityKey carries a request's identity in its context (set only when WithAuth is on).
type identityKey struct{}

// withIdentity returns ctx carrying identity.
func withIdentity(ctx context.Context, identity string) context.Context {
	return context.WithValue(ctx, identityKey{}, identity)
}

// identityOf returns the identity ctx carries, and whether it carries one.
func identityOf(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(identityKey{}).(string)
	return id, ok
}

// authorize runs the AuthFunc for r. It returns r with the identity in its context, or
// writes the refusal and returns nil. Without WithAuth, and for requests another node
// forwarded (authorized there), r is returned as it is.
func (s *Stream) authorize(w http.ResponseWriter, r *http.Request, route, id string) *http.Request {
	if s.cfg.auth == nil || r.Context().Value(forwardedKey{}) != nil {
		return r
	}
	var identity string
	err := safely(func() (err error) { identity, err = s.cfg.auth(r, route, id); return err })
	if err == nil {
		return r.WithContext(withIdentity(r.Context(), identity))
	}
	s.metrics.refusals[refusalIndex(wire.CodeUnauthorized)].Add(1)
	if errors.Is(err, ErrUnauthorized) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, wire.Failed(wire.FailureMeta{Error: wire.CodeUnauthorized}))
		return nil
	}
	if !errors.Is(err, ErrForbidden) {
		s.log.Info("authorization refused", "route", route, "session", id, "err", err)
	}
	writeJSON(w, http.StatusForbidden, wire.Failed(wire.FailureMeta{Error: wire.CodeForbidden}))
	return nil
}

// owns reports whether the request context's identity may use sess: always without WithAuth
// or for Go calls (no identity in ctx); else only the identity that opened it. Another
// identity's session is answered as an unknown one, so that ids cannot be probed.
func owns(ctx context.Context, sess *Session) error {
	if id, ok := identityOf(ctx); ok && id != sess.identity {
		return fmt.Errorf("%w: %q", ErrUnknownConnection, sess.id)
	}
	return nil
}
