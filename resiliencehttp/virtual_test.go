package resiliencehttp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// These tests use a next RoundTripper in memory, so that they run in a
// synctest bubble, on virtual time: waits are exact and instant.

// script is a next RoundTripper that answers the nth round trip with
// answers[n-1], or the last one, and records each request's ctx.
type script struct {
	answers []func(*http.Request) *http.Response
	ctxs    []context.Context
}

func (s *script) RoundTrip(r *http.Request) (*http.Response, error) {
	s.ctxs = append(s.ctxs, r.Context())
	return s.answers[min(len(s.ctxs), len(s.answers))-1](r), nil
}

// answer returns a response of code, with header h and body.
func answer(code int, h http.Header, body string) func(*http.Request) *http.Response {
	return func(r *http.Request) *http.Response {
		if h == nil {
			h = http.Header{}
		}
		return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: h,
			Body: io.NopCloser(strings.NewReader(body)), Request: r, ProtoMajor: 1, ProtoMinor: 1}
	}
}

func roundTrip(t *testing.T, tr http.RoundTripper) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://api.test/items", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	return resp
}

func TestRetryAfterIsWaited(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"delta-seconds", http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{"an HTTP-date, from the server's Date", http.Header{
			"Date": {"Sun, 01 Mar 2026 12:00:00 GMT"}, "Retry-After": {"Sunday, 01-Mar-26 12:00:03 GMT"}}, 3 * time.Second},
		{"none: the backoff's wait", nil, 100 * time.Millisecond},
		{"zero: the backoff's wait", http.Header{"Retry-After": {"0"}}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			next := &script{answers: []func(*http.Request) *http.Response{answer(503, tt.header, "busy"), answer(200, nil, "ok")}}
			tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(retry.New(retry.WithBackoff(retry.Constant(100*time.Millisecond)))))
			start := time.Now()
			resp := roundTrip(t, tr)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, tt.name)
			assert.Equal(t, tt.want, time.Since(start), tt.name)
		})
	}
}

// A 500 without Retry-After, a failure with WithFailOn500, waits the
// backoff's wait: a hint of zero is no hint.
func Test500WithoutRetryAfterWaitsTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &script{answers: []func(*http.Request) *http.Response{answer(500, nil, "bug"), answer(200, nil, "ok")}}
		tr := resiliencehttp.NewTransport(next, resiliencehttp.WithFailOn500(),
			resiliencehttp.WithPolicy(retry.New(retry.WithBackoff(retry.Constant(time.Second)))))
		start := time.Now()
		roundTrip(t, tr).Body.Close()
		assert.Equal(t, time.Second, time.Since(start))
		assert.Len(t, next.ctxs, 2)
	})
}

// blocking is a body that yields a byte every 3 seconds until its ctx
// ends.
type blocking struct{ ctx context.Context }

func (b blocking) Read(p []byte) (int, error) {
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case <-b.ctx.Done():
		return 0, context.Cause(b.ctx)
	case <-t.C:
		p[0] = 'x'
		return 1, nil
	}
}

func (blocking) Close() error { return nil }

// The attempt's ctx is kept while the body is read, ends at the attempt's
// deadline with its cause, and no goroutine outlives the call.
func TestKeptAttemptOnVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &script{answers: []func(*http.Request) *http.Response{func(r *http.Request) *http.Response {
			resp := answer(200, nil, "")(r)
			resp.Body = blocking{r.Context()}
			return resp
		}}}
		tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain(
			timeout.New(time.Minute), retry.New(), timeout.New(10*time.Second))))
		start := time.Now()
		resp := roundTrip(t, tr)
		n, err := io.Copy(io.Discard, resp.Body)
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.Equal(t, int64(3), n, "a byte every 3s for the 10s of the attempt, the 4th cut short")
		assert.Equal(t, 10*time.Second, time.Since(start))
		require.NoError(t, resp.Body.Close())
		require.Len(t, next.ctxs, 1)
		assert.ErrorIs(t, context.Cause(next.ctxs[0]), timeout.ErrExceeded)
	})
}

// A body read to its end releases the attempt's ctx, before Close.
func TestEOFReleasesTheAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &script{answers: []func(*http.Request) *http.Response{answer(200, nil, "ok")}}
		tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(timeout.New(time.Minute)))
		resp := roundTrip(t, tr)
		require.NoError(t, next.ctxs[0].Err(), "kept while the body is unread")
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(body))
		assert.ErrorIs(t, next.ctxs[0].Err(), context.Canceled, "released at EOF")
		assert.NoError(t, resp.Body.Close())
	})
}

// A response without a body holds nothing: its attempt's ctx ends with the
// call.
func TestNoBodyKeepsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &script{answers: []func(*http.Request) *http.Response{func(r *http.Request) *http.Response {
			resp := answer(204, nil, "")(r)
			resp.Body = http.NoBody
			return resp
		}}}
		tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(timeout.New(time.Minute)))
		resp := roundTrip(t, tr)
		assert.Equal(t, http.NoBody, resp.Body)
		assert.ErrorIs(t, next.ctxs[0].Err(), context.Canceled)
	})
}

// Without a policy that makes a ctx of its own, the first attempt is the
// caller's request itself, and nothing is kept.
func TestFirstAttemptIsTheCallersRequest(t *testing.T) {
	var (
		got  *http.Request
		body io.ReadCloser
	)
	next := roundTripper(func(r *http.Request) (*http.Response, error) {
		got = r
		resp := answer(200, nil, "ok")(r)
		body = resp.Body
		return resp, nil
	})
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(retries(3)))
	req, err := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	assert.Same(t, req, got)
	assert.True(t, body == resp.Body, "the body as next returned it")
}

// The cost of a Transport with retry, breaker per host and timeout, on the
// success path, beyond the round trip itself: at most 5 allocations (the
// first attempt's timeout keeps its ctx in the call's spare Keeper, and the
// first attempt's request is a copy inside the call).
func TestSuccessAllocations(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}}
	type body struct{ io.Reader }
	next := roundTripper(func(r *http.Request) (*http.Response, error) {
		resp.Body = io.NopCloser(body{})
		return resp, nil
	})
	req, err := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	require.NoError(t, err)
	bare := testing.AllocsPerRun(1000, func() { _, _ = next.RoundTrip(req) })
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(benchPolicy()))
	ours := testing.AllocsPerRun(1000, func() {
		resp, _ := tr.RoundTrip(req)
		resp.Body.Close()
	})
	t.Logf("allocations per round trip: %v bare, %v through the Transport", bare, ours)
	assert.LessOrEqual(t, ours-bare, 5.0, "8 with what net/http adds for a ctx that can end: its Done channel and a map for net/http's child ctx")
}

// The ctx of a discarded attempt ends before the next attempt; the ctx of
// the response given up on lives until its body is closed.
func TestGivenUpResponseKeepsItsAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &script{answers: []func(*http.Request) *http.Response{answer(503, nil, "busy")}}
		tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain(
			retry.New(retry.WithMaxAttempts(2)), timeout.New(time.Minute))))
		resp := roundTrip(t, tr)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Len(t, next.ctxs, 2)
		assert.ErrorIs(t, next.ctxs[0].Err(), context.Canceled, "the first response was discarded: its ctx ended")
		assert.NoError(t, next.ctxs[1].Err(), "the response returned keeps its ctx")
		require.NoError(t, resp.Body.Close())
		assert.ErrorIs(t, next.ctxs[1].Err(), context.Canceled)
	})
}
