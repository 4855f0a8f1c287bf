package resiliencehttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// noLeaks fails t if, once t's other cleanups have run (servers closed,
// idle connections closed), goroutines remain that were not there before
// t began. Register it first, so that its cleanup runs last.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // waits for the net/http goroutines to notice closed connections
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines before the test, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

// server is an httptest server that counts its requests and connections.
type server struct {
	*httptest.Server
	hits   atomic.Int64 // requests served
	conns  atomic.Int64 // connections accepted
	active atomic.Int64 // connections open
}

// newServer starts a server for h that counts requests and connections,
// closed at t's end; with tls, it speaks HTTP/2 over TLS.
func newServer(t *testing.T, tls bool, h func(w http.ResponseWriter, r *http.Request, hit int64)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r, s.hits.Add(1))
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			s.conns.Add(1)
			s.active.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.active.Add(-1)
		}
	}
	if tls {
		s.EnableHTTP2 = true
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// statuses answers the nth request with codes[n-1], or the last code, with
// a body that says which request it was.
func statuses(codes ...int) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, hit int64) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(codes[min(int(hit), len(codes))-1])
		fmt.Fprintf(w, "hit %d", hit)
	}
}

// base returns the next RoundTripper for a test against s: s's own
// client's transport, which trusts its certificate, wrapped to count round
// trips and response bodies. Its idle connections are closed at t's end.
func base(t *testing.T, s *server) *counting {
	t.Helper()
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	c := &counting{next: tr}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// counting is a next RoundTripper that counts round trips, and the
// response bodies it hands out and that are closed.
type counting struct {
	next                  http.RoundTripper
	trips, opened, closed atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.trips.Add(1)
	resp, err := c.next.RoundTrip(r)
	if resp != nil {
		c.opened.Add(1)
		resp.Body = &countedBody{ReadCloser: resp.Body, closed: &c.closed}
	}
	return resp, err
}

func (c *counting) CloseIdleConnections() { c.next.(*http.Transport).CloseIdleConnections() }

type countedBody struct {
	io.ReadCloser
	once   sync.Once
	closed *atomic.Int64
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.closed.Add(1) })
	return b.ReadCloser.Close()
}

// retries is a retry without waits, of n attempts.
func retries(n int) *retry.Retrier {
	return retry.New(retry.WithMaxAttempts(n), retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil))
}

// get sends a GET to url through rt and returns the status and body.
func get(t *testing.T, rt http.RoundTripper, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestRetriesAFailingStatus(t *testing.T) {
	noLeaks(t)
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP/%d", map[bool]int{false: 1, true: 2}[tls]), func(t *testing.T) {
			s := newServer(t, tls, statuses(503, 502, 200))
			next := base(t, s)
			tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain(retries(3), timeout.New(time.Minute))))
			req, err := http.NewRequest(http.MethodGet, s.URL, nil)
			require.NoError(t, err)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, map[bool]int{false: 1, true: 2}[tls], resp.ProtoMajor)
			assert.Equal(t, int64(2), next.closed.Load(), "the two failures were closed before the call returned")
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "hit 3", string(body))
			assert.Equal(t, int64(3), next.trips.Load())
			assert.Equal(t, next.opened.Load(), next.closed.Load(), "every body closed")
		})
	}
}

// When the policy gives up on a failing status, the last response comes
// back with a nil error and its body unread.
func TestGivesUpWithTheLastResponse(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, statuses(503))
	next := base(t, s)
	client := &http.Client{Transport: resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(retries(3)))}
	resp, err := client.Get(s.URL)
	require.NoError(t, err, "a status is not an error at the RoundTripper boundary")
	assert.Equal(t, int64(2), next.closed.Load(), "the responses given up on were closed")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "hit 3", string(body), "the last attempt's body, intact")
	assert.Equal(t, int64(3), next.opened.Load())
	assert.Equal(t, int64(3), next.closed.Load())
}

func TestStatusClassification(t *testing.T) {
	noLeaks(t)
	codes := []int{200, 201, 204, 301, 400, 401, 404, 408, 409, 418, 429, 500, 501, 502, 503, 504, 505}
	failures := map[int]bool{408: true, 429: true, 502: true, 503: true, 504: true}
	tests := []struct {
		name    string
		opts    []resiliencehttp.Option
		failure func(code int) bool
	}{
		{"default", nil, func(code int) bool { return failures[code] }},
		{"WithFailOn500", []resiliencehttp.Option{resiliencehttp.WithFailOn500()},
			func(code int) bool { return failures[code] || code == 500 }},
		{"WithClassifier", []resiliencehttp.Option{resiliencehttp.WithFailOn500(),
			resiliencehttp.WithClassifier(func(r *http.Response) bool { return r.StatusCode == 418 })},
			func(code int) bool { return code == 418 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, code := range codes {
				s := newServer(t, false, statuses(code, 200))
				next := base(t, s)
				tr := resiliencehttp.NewTransport(next, append(tt.opts, resiliencehttp.WithPolicy(retries(2)))...)
				status, _ := get(t, tr, s.URL)
				want, wantStatus := int64(1), code
				if tt.failure(code) {
					want, wantStatus = 2, 200
				}
				assert.Equal(t, want, next.trips.Load(), "status %d", code)
				assert.Equal(t, wantStatus, status, "status %d", code)
			}
		})
	}
}

// stubborn is a policy that calls op three times, whatever op returns.
var stubborn = resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
	var err error
	for range 3 {
		err = op(ctx)
	}
	return err
})

// A POST without an Idempotency-Key reaches the server once, whatever the
// policy says.
func TestPostIsSentOnce(t *testing.T) {
	noLeaks(t)
	for _, p := range []struct {
		name   string
		policy resilience.Policy
	}{{"retry", retries(5)}, {"a policy that calls its op three times", stubborn}} {
		t.Run(p.name, func(t *testing.T) {
			s := newServer(t, false, statuses(503, 200))
			next := base(t, s)
			client := &http.Client{Transport: resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(p.policy))}
			resp, err := client.Post(s.URL, "text/plain", strings.NewReader("order 1"))
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the one attempt's answer")
			assert.Equal(t, "hit 1", string(body))
			assert.Equal(t, int64(1), s.hits.Load())
			assert.Equal(t, int64(1), next.trips.Load())
			assert.Equal(t, int64(1), next.closed.Load())
		})
	}

	// A transport error, too: one round trip, the error as it is.
	var trips atomic.Int64
	dialErr := errors.New("dial: connection refused")
	failing := roundTripper(func(*http.Request) (*http.Response, error) { trips.Add(1); return nil, dialErr })
	tr := resiliencehttp.NewTransport(failing, resiliencehttp.WithPolicy(stubborn))
	req, err := http.NewRequest(http.MethodPost, "http://example.test/orders", strings.NewReader("order 2"))
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, dialErr)
	assert.Equal(t, int64(1), trips.Load())
}

// roundTripper adapts a function to http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestIdempotentRequestsAreRetried(t *testing.T) {
	noLeaks(t)
	tests := []struct {
		method string
		header http.Header
		want   int64
	}{
		{http.MethodGet, nil, 2},
		{http.MethodHead, nil, 2},
		{http.MethodOptions, nil, 2},
		{http.MethodTrace, nil, 2},
		{http.MethodPut, nil, 2},
		{http.MethodDelete, nil, 2},
		{http.MethodPost, nil, 1},
		{http.MethodPatch, nil, 1},
		{http.MethodPost, http.Header{"Idempotency-Key": {"8e03978e"}}, 2},
		{http.MethodPatch, http.Header{"X-Idempotency-Key": {"8e03978e"}}, 2},
		{http.MethodPost, http.Header{"Idempotency-Key": nil}, 2}, // marked, not sent: net/http's convention
	}
	for _, tt := range tests {
		var bodies []string
		var mu sync.Mutex
		s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
			statuses(503, 200)(w, r, hit)
		})
		tr := resiliencehttp.NewTransport(base(t, s), resiliencehttp.WithPolicy(retries(3)))
		var body io.Reader
		if tt.method != http.MethodGet && tt.method != http.MethodHead && tt.method != http.MethodTrace {
			body = strings.NewReader("payload") // http.NewRequest sets GetBody
		}
		req, err := http.NewRequest(tt.method, s.URL, body)
		require.NoError(t, err)
		for k, v := range tt.header {
			req.Header[k] = v
		}
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tt.want, s.hits.Load(), "%s %v", tt.method, tt.header)
		if body != nil {
			for _, b := range bodies {
				assert.Equal(t, "payload", b, "%s %v: every attempt sends the whole body", tt.method, tt.header)
			}
		}
	}
}

// opaque hides the type of a reader, so that http.NewRequest sets no
// GetBody, and counts Close.
type opaque struct {
	r      io.Reader
	closed atomic.Int32
}

func (o *opaque) Read(p []byte) (int, error) { return o.r.Read(p) }
func (o *opaque) Close() error               { o.closed.Add(1); return nil }

func TestBodyThatCannotBeReplayed(t *testing.T) {
	noLeaks(t)
	small, large := strings.Repeat("a", 1024), strings.Repeat("b", 1025)
	tests := []struct {
		name string
		opts []resiliencehttp.Option
		body string
		want int64
	}{
		{"no GetBody", nil, small, 1},
		{"buffered", []resiliencehttp.Option{resiliencehttp.WithBufferBody(1024)}, small, 2},
		{"longer than the buffer", []resiliencehttp.Option{resiliencehttp.WithBufferBody(1024)}, large, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
				b, _ := io.ReadAll(r.Body)
				got = append(got, string(b))
				statuses(503, 200)(w, r, hit)
			})
			tr := resiliencehttp.NewTransport(base(t, s), append(tt.opts, resiliencehttp.WithPolicy(retries(3)))...)
			body := &opaque{r: strings.NewReader(tt.body)}
			req, err := http.NewRequest(http.MethodPut, s.URL, body)
			require.NoError(t, err)
			require.Nil(t, req.GetBody)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.want, s.hits.Load())
			for _, b := range got {
				assert.Equal(t, tt.body, b, "the body, whole, in every attempt")
			}
			assert.Eventually(t, func() bool { return body.closed.Load() >= 1 }, 5*time.Second, time.Millisecond,
				"the request body is closed")
		})
	}
}

// RoundTrip closes the request body even when no attempt is made.
func TestRequestBodyClosedWhenRefused(t *testing.T) {
	b := circuitbreaker.New()
	b.ForceOpen()
	var trips atomic.Int64
	next := roundTripper(func(*http.Request) (*http.Response, error) { trips.Add(1); return nil, errors.New("unreachable") })
	for _, opts := range [][]resiliencehttp.Option{nil, {resiliencehttp.WithBufferBody(10)}, {resiliencehttp.WithBufferBody(1)}} {
		tr := resiliencehttp.NewTransport(next, append(opts, resiliencehttp.WithPolicy(b))...)
		body := &opaque{r: strings.NewReader("payload")}
		req, err := http.NewRequest(http.MethodPut, "http://example.test/", body)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		assert.Nil(t, resp)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		assert.ErrorIs(t, err, circuitbreaker.ErrForcedOpen)
		assert.Equal(t, int32(1), body.closed.Load(), "options %d", len(opts))
	}
	assert.Zero(t, trips.Load())
}

// A hint past the ctx deadline ends the call at once, with that response,
// instead of a wait into the deadline.
func TestRetryAfterPastTheDeadline(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
		w.Header().Set("Retry-After", "3600")
		statuses(503, 200)(w, r, hit)
	})
	next := base(t, s)
	var delays []time.Duration
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(retry.New(
		retry.WithOnRetry(func(e retry.Event) { delays = append(delays, e.Delay) }))))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "3600", resp.Header.Get("Retry-After"))
	assert.NoError(t, ctx.Err(), "returned without waiting for the deadline")
	assert.Empty(t, delays, "no retry was begun")
	assert.Equal(t, int64(1), s.hits.Load())
	body, err := io.ReadAll(resp.Body)
	assert.NoError(t, err)
	assert.Equal(t, "hit 1", string(body))
}

// The hint reaches the retry as its wait: here one that ends the call when
// it is announced, so that the test need not wait it out.
func TestRetryAfterIsTheRetrysWait(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
		w.Header().Set("Date", "Sun, 01 Mar 2026 12:00:00 GMT")
		w.Header().Set("Retry-After", "Sun, 01 Mar 2026 12:00:42 GMT") // our clock is not the server's
		statuses(429)(w, r, hit)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var delay time.Duration
	tr := resiliencehttp.NewTransport(base(t, s), resiliencehttp.WithPolicy(retry.New(
		retry.WithOnRetry(func(e retry.Event) { delay = e.Delay; cancel() }))))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp, "the caller cancelled")
	assert.ErrorIs(t, err, context.Canceled)
	assert.InDelta(t, 42*time.Second, delay, float64(time.Second), "the wait the server asked for, from its own Date")
}

// A refusal after a failing status returns the refusal, with the status
// inside; through an http.Client, in one *url.Error.
func TestRefusalAfterAFailingStatus(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, statuses(503))
	next := base(t, s)
	policy := resilience.Chain(retries(3), resiliencehttp.PerHost(func(string) resilience.Policy {
		return circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1))
	}))
	client := &http.Client{Transport: resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(policy))}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // shorter than the break: not waited for
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.Error(t, err)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, resilience.ErrRejected)
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen)
	var se *resiliencehttp.StatusError
	require.ErrorAs(t, err, &se, "the status that came before the refusal")
	assert.Equal(t, http.StatusServiceUnavailable, se.StatusCode)
	_, readErr := se.Response.Body.Read(make([]byte, 1))
	assert.Error(t, readErr, "its body is closed")
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	assert.False(t, errors.As(ue.Err, new(*url.Error)), "one *url.Error, the client's: %v", err)
	assert.Equal(t, fmt.Sprintf(`Get %q: circuitbreaker: open (after resiliencehttp: 503 Service Unavailable)`, s.URL), err.Error())
	assert.Equal(t, int64(1), s.hits.Load())
	assert.Equal(t, int64(1), next.closed.Load())
}

// A timeout's error reaches the caller of an http.Client matching
// context.DeadlineExceeded, in one *url.Error.
func TestDeadlineThroughTheClient(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, _ int64) {
		<-r.Context().Done() // never answers in time
	})
	next := base(t, s)
	client := &http.Client{Transport: resiliencehttp.NewTransport(next,
		resiliencehttp.WithPolicy(resilience.Chain(retries(2), timeout.New(20*time.Millisecond))))}
	resp, err := client.Get(s.URL)
	require.Error(t, err)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, timeout.ErrExceeded)
	var ex *retry.ExhaustedError
	assert.ErrorAs(t, err, &ex)
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	assert.False(t, errors.As(ue.Err, new(*url.Error)), "one *url.Error, the client's: %v", err)
	assert.Equal(t, int64(2), next.trips.Load())
}

// The Transport serves as the Transport of an httputil.ReverseProxy, and as
// a client's of one: the proxy retries what it may; a POST without a key
// goes through both once.
func TestReverseProxy(t *testing.T) {
	noLeaks(t)
	backend := newServer(t, false, statuses(503, 200, 503, 503, 200))
	target, err := url.Parse(backend.URL)
	require.NoError(t, err)
	proxy := newServer(t, false, func(w http.ResponseWriter, r *http.Request, _ int64) {
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: resiliencehttp.NewTransport(base(t, backend), resiliencehttp.WithPolicy(retries(3))),
		}
		rp.ServeHTTP(w, r)
	})
	client := resiliencehttp.NewTransport(base(t, proxy), resiliencehttp.WithPolicy(retries(3)))

	status, body := get(t, client, proxy.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "hit 2", body, "the proxy retried the backend's 503")
	assert.Equal(t, int64(1), proxy.hits.Load())

	req, err := http.NewRequest(http.MethodPost, proxy.URL, strings.NewReader("order"))
	require.NoError(t, err)
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "sent once by the client and once by the proxy")
	assert.Equal(t, int64(3), backend.hits.Load())

	// With a key, the client retries (GetBody); the proxy, whose request
	// body is the incoming stream, sends each of its requests once.
	req, err = http.NewRequest(http.MethodPost, proxy.URL, strings.NewReader("order"))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "k1")
	resp, err = client.RoundTrip(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hit 5", string(b))
	assert.Equal(t, int64(4), proxy.hits.Load())
	assert.Equal(t, int64(5), backend.hits.Load())
}
