package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
)

// A request that does not carry the token of the dashboard's own page,
// whatever its method, path, headers, cookie and body, acts on nothing:
// a POST is answered 403, and the breaker and the events stay as they were.
func FuzzForgedAction(f *testing.F) {
	f.Add("POST", "/action", "do=breaker-open&name=payments", "", "", "")
	f.Add("POST", "/x/action", "do=breaker-open&name=payments", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA", "same-origin")
	f.Add("POST", "/action", "do=breaker-reset&name=payments", "", "resilience_dashboard=", "cross-site")
	f.Add("PUT", "/action", "do=breaker-open&name=payments", "x", "y", "none")
	f.Fuzz(func(t *testing.T, method, path, body, token, cookie, site string) {
		r, err := http.NewRequest(method, "http://dashboard.test/", strings.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		r.URL.Path = "/" + strings.TrimPrefix(path, "/")
		r.RequestURI = r.URL.RequestURI()
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Resilience-Token", token)
		r.Header.Set("Cookie", cookie)
		r.Header.Set("Sec-Fetch-Site", site)
		if method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/events") {
			return // a stream, which acts on nothing and never ends
		}

		payments := circuitbreaker.New(circuitbreaker.WithName("payments"))
		d := dashboard.New(dashboard.WithBreaker(payments), dashboard.WithActions(func(*http.Request) bool { return true }))
		w := httptest.NewRecorder()
		d.ServeHTTP(w, r)
		if method == http.MethodPost {
			assert.Equal(t, http.StatusForbidden, w.Code, w.Body.String())
		}
		assert.Equal(t, circuitbreaker.Closed, payments.State())
		s := d.Snapshot(t.Context())
		require.Len(t, s.Breakers, 1)
		assert.Empty(t, s.Events)
	})
}
