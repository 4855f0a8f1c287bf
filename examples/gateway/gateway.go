package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// The protected gateway's settings.
const (
	perClientRate  = 40                     // requests a second per client...
	perClientBurst = 20                     // ...in bursts of up to 20
	maxInFlight    = 6                      // requests served at once; more are shed
	requestTimeout = 250 * time.Millisecond // for a whole request, retries included
	attemptTimeout = 100 * time.Millisecond // for each attempt to reach a backend
	maxAttempts    = 3                      // for an idempotent request
	breakFor       = 500 * time.Millisecond // a breaker's first break, doubled up to maxBreak
	maxBreak       = time.Second
	maxCached      = 1000     // paths whose last good body is kept
	maxCachedBody  = 64 << 10 // bytes; a longer body is passed on, not kept
)

// routes sends /users/... to the users backend and /orders/... to the
// orders backend, each through the proxy that proxy makes for it.
func routes(users, orders *url.URL, proxy func(target *url.URL) http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/users/", proxy(users))
	mux.Handle("/orders/", proxy(orders))
	return mux
}

// rewriteTo returns a ReverseProxy.Rewrite that sends requests to target,
// with the X-Forwarded headers set.
func rewriteTo(target *url.URL) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}
}

// newBare returns the bare gateway: a ReverseProxy per backend through
// transport, as most gateways start. A backend's 5xx goes to the client as
// it is, a backend it cannot reach is a 502, and it waits as long as the
// backend takes.
func newBare(users, orders *url.URL, transport http.RoundTripper) http.Handler {
	quiet := log.New(io.Discard, "", 0) // its 502s are counted, not logged
	return routes(users, orders, func(target *url.URL) http.Handler {
		return &httputil.ReverseProxy{Rewrite: rewriteTo(target), Transport: transport, ErrorLog: quiet}
	})
}

// protected is the protected gateway: the routes of the bare one, with a
// resiliencehttp.Transport under its proxies and a resiliencehttp.Handler
// in front of them.
type protected struct {
	http.Handler

	// What it is made of, for a dashboard to show.
	breakers []*circuitbreaker.Breaker // one per backend, named after it
	shedder  *bulkhead.Bulkhead
	events   *dashboard.Events // of the breakers, the retrier and the shedder

	cache cache

	mu     sync.Mutex
	opened map[string]int // times each breaker opened
}

// newProtected returns the protected gateway, whose requests to the
// backends go through base, and whose proxies log to errLog:
//
//   - its Transport makes up to 3 attempts of an idempotent request (a GET),
//     each bounded by the attempt timeout, through a circuit breaker per
//     backend, which opens when half of at least 10 attempts in the last 2
//     seconds failed (a 5xx or a timeout);
//   - its Handler limits each client (see clientKey) to 40 requests a second
//     in bursts of 20, sheds what comes beyond 6 requests at once (the
//     gateway's, whatever their backend: when one backend slows down, a
//     request to the other may be shed), and gives a request 250ms, retries
//     included;
//   - what the backend could not answer, a GET gets from the fallback: the
//     last good body of its path, or a default JSON document.
func newProtected(users, orders *url.URL, base http.RoundTripper, errLog *log.Logger) *protected {
	g := &protected{cache: cache{m: make(map[string]cachedBody)}, opened: make(map[string]int),
		events: new(dashboard.Events)}
	byHost := make(map[string]*circuitbreaker.Breaker)
	for _, backend := range []struct {
		name string
		url  *url.URL
	}{{"users", users}, {"orders", orders}} {
		b := circuitbreaker.New(circuitbreaker.WithName(backend.name),
			circuitbreaker.WithTimeWindow(2*time.Second, 10),
			circuitbreaker.WithFailureRate(0.5, 10),
			circuitbreaker.WithBreakDuration(breakFor, maxBreak),
			circuitbreaker.WithOnStateChange(g.count),
			circuitbreaker.WithObserver(g.events))
		byHost[backend.url.Host] = b
		g.breakers = append(g.breakers, b)
	}
	transport := resiliencehttp.NewTransport(base,
		resiliencehttp.WithFailOn500(),
		resiliencehttp.WithPolicy(resilience.Chain(
			retry.New(retry.WithName("backends"), retry.WithObserver(g.events),
				retry.WithMaxAttempts(maxAttempts),
				retry.WithBackoff(retry.FullJitter(10*time.Millisecond, 50*time.Millisecond)),
				// An open breaker's refusal tells how long its break has
				// left, which the retrier would wait, within the request
				// timeout, holding a slot of the load shedder: the fallback
				// answers at once instead.
				retry.WithRetryIf(func(err error) bool { return !errors.Is(err, resilience.ErrRejected) })),
			resiliencehttp.PerHost(func(host string) resilience.Policy {
				if b, ok := byHost[host]; ok {
					return b
				}
				return circuitbreaker.New(circuitbreaker.WithName(host)) // no route leads there
			}),
			timeout.New(attemptTimeout),
		)))
	mux := routes(users, orders, func(target *url.URL) http.Handler {
		return &httputil.ReverseProxy{
			Rewrite:        rewriteTo(target),
			Transport:      transport,
			ModifyResponse: g.keep,
			ErrorHandler:   g.proxyError,
			ErrorLog:       errLog,
		}
	})
	g.shedder = bulkhead.New(maxInFlight, bulkhead.WithName("gateway"), bulkhead.WithObserver(g.events))
	g.Handler = resiliencehttp.Handler(mux,
		resiliencehttp.WithKey(clientKey),
		resiliencehttp.WithRateLimit(perClientRate, perClientBurst),
		resiliencehttp.WithLoadShedding(g.shedder),
		resiliencehttp.WithRequestTimeout(requestTimeout),
		// A 504 rather than a 503 for a request that timed out. With the
		// fallback below, which answers every timeout, the Handler's own
		// answer is never written: refused answers 504 for what it cannot
		// serve from the cache.
		resiliencehttp.WithGateway(),
		resiliencehttp.WithFallback(http.HandlerFunc(g.refused)),
	)
	return g
}

// count counts the times a breaker opens.
func (g *protected) count(t circuitbreaker.Transition) {
	if t.To == circuitbreaker.Open {
		g.mu.Lock()
		g.opened[t.Name]++
		g.mu.Unlock()
	}
}

// timesOpened returns how many times the breaker of backend name opened.
func (g *protected) timesOpened(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.opened[name]
}

// clientKey names the client of r, for the rate limit and the tables: its
// X-Api-Key header, which a real gateway would check before believing it,
// or else its address.
func clientKey(r *http.Request) string {
	if key := r.Header.Get("X-Api-Key"); key != "" {
		return key
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// refused answers what the Handler refused or timed out: a rate-limited
// client gets a 429 and an overloaded gateway a 503, both with Retry-After
// and a JSON body; a request that timed out gets the fallback.
func (g *protected) refused(w http.ResponseWriter, r *http.Request) {
	err := resiliencehttp.Refusal(r)
	switch {
	case errors.Is(err, ratelimit.ErrLimited):
		d, _ := resilience.RetryAfter(err)
		w.Header().Set("Retry-After", retryAfter(d))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate limit exceeded"})
	case errors.Is(err, bulkhead.ErrFull):
		w.Header().Set("Retry-After", "1")
		w.Header().Set("X-Gateway-Overloaded", "true")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "gateway overloaded"})
	default: // the request timeout
		g.fallback(w, r, "request timeout", http.StatusGatewayTimeout)
	}
}

// upstreamError is a 5xx from a backend, which the gateway does not pass on
// to a GET.
type upstreamError struct{ status int }

func (e *upstreamError) Error() string { return fmt.Sprintf("upstream %d", e.status) }

// keep is the proxies' ModifyResponse. It keeps the body of a good answer to
// a GET, for the fallback, and turns a 5xx to a GET into an error, which
// sends the request to proxyError.
func (g *protected) keep(resp *http.Response) error {
	if resp.Request.Method != http.MethodGet {
		return nil
	}
	if resp.StatusCode >= 500 {
		return &upstreamError{status: resp.StatusCode}
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCachedBody+1))
	if err != nil {
		return err
	}
	if len(body) > maxCachedBody { // pass it on whole, without keeping it
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	g.cache.put(resp.Request.URL.Path, cachedBody{body: body, contentType: resp.Header.Get("Content-Type"), at: time.Now()})
	return nil
}

// proxyError is the proxies' ErrorHandler: the Transport refused the
// request (its backend's breaker is open), its attempts failed, or keep
// turned away a 5xx. Instead of a 502, a GET gets the fallback; another
// method gets a 502, or a 503 with Retry-After for a refusal.
func (g *protected) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	cause, status := "", http.StatusBadGateway
	var ue *upstreamError
	switch {
	case errors.Is(err, resilience.ErrRejected):
		cause, status = "circuit open", http.StatusServiceUnavailable
		d, _ := resilience.RetryAfter(err)
		w.Header().Set("Retry-After", retryAfter(d))
	case errors.As(err, &ue):
		cause = ue.Error()
	case errors.Is(err, timeout.ErrExceeded):
		cause = "attempt timeout"
	default:
		cause = "upstream unreachable"
	}
	g.fallback(w, r, cause, status)
}

// fallback answers r for a backend that did not. A GET gets the last good
// body of its path, marked X-Gateway-Fallback: cached, with its Age, or a
// default JSON document marked X-Gateway-Fallback: default; either way
// X-Gateway-Fallback-Cause says why. Other methods get status, as they
// cannot be answered from what was seen before.
func (g *protected) fallback(w http.ResponseWriter, r *http.Request, cause string, status int) {
	h := w.Header()
	h.Set("X-Gateway-Fallback-Cause", cause)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
		return
	}
	if c, ok := g.cache.get(r.URL.Path); ok {
		h.Set("X-Gateway-Fallback", "cached")
		h.Set("Age", strconv.Itoa(int(time.Since(c.at)/time.Second)))
		h.Set("Content-Type", c.contentType)
		// A length, so that the client has the whole answer even if the
		// connection is then aborted (see writeJSON).
		h.Set("Content-Length", strconv.Itoa(len(c.body)))
		w.WriteHeader(http.StatusOK)
		w.Write(c.body) //nolint:errcheck // the client may have gone
		return
	}
	h.Set("X-Gateway-Fallback", "default")
	writeJSON(w, http.StatusOK, struct {
		Path      string `json:"path"`
		Available bool   `json:"available"`
	}{r.URL.Path, false})
}

// retryAfter returns d as a Retry-After header's value: whole seconds,
// rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}

// writeJSON answers with status and v in JSON, with a Content-Length: an
// answer given at the request timeout, while the proxy still runs, must be
// whole by itself, as the proxy may then abort the connection.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // the values above always marshal
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client may have gone
}

// cache keeps the last good body of each path, for up to maxCached paths:
// past that, new paths are not kept.
type cache struct {
	mu sync.Mutex
	m  map[string]cachedBody
}

type cachedBody struct {
	body        []byte
	contentType string
	at          time.Time
}

func (c *cache) put(path string, b cachedBody) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[path]; ok || len(c.m) < maxCached {
		c.m[path] = b
	}
}

func (c *cache) get(path string) (cachedBody, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[path]
	return b, ok
}
