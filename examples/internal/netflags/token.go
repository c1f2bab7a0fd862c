package netflags

import (
	"crypto/subtle"
	"flag"
	"net/http"
	"strings"

	"github.com/fastrtc-go/fastrtc"
)

// Token is the examples' bearer-token authorization (fastrtc.WithAuth): with -token set,
// every route wants "Authorization: Bearer <token>", or the cookie the page gets when it is
// opened as /?token=<token> (a browser's fetch and EventSource send no custom header).
type Token struct {
	token *string
}

// RegisterToken adds -token to fs.
func RegisterToken(fs *flag.FlagSet) *Token {
	return &Token{token: fs.String("token", "", "require this bearer token on every route (open the page as /?token=...); empty: no authorization")}
}

const tokenCookie = "fastrtc_token"

// Option returns the stream option (none without -token).
func (t *Token) Option() fastrtc.Option {
	if *t.token == "" {
		return fastrtc.WithOptions()
	}
	want := []byte(*t.token)
	return fastrtc.WithAuth(func(r *http.Request, route, id string) (string, error) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			c, err := r.Cookie(tokenCookie)
			if err != nil {
				return "", fastrtc.ErrUnauthorized
			}
			got = c.Value
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return "", fastrtc.ErrForbidden
		}
		return "token", nil
	})
}

// Page wraps the page's handler: opened with ?token=<the token>, it sets the cookie the
// routes accept (HttpOnly, SameSite=Strict) and serves the page.
func (t *Token) Page(h http.Handler) http.Handler {
	if *t.token == "" {
		return h
	}
	want := []byte(*t.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query().Get("token"); q != "" && subtle.ConstantTimeCompare([]byte(q), want) == 1 {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: q, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		}
		h.ServeHTTP(w, r)
	})
}
