package resiliencehttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/timeout"
)

// newTestServer starts a real server of h for the test.
func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type serverResponse struct {
	status int
	header http.Header
	body   string
}

// serverGet sends a GET to srv with the given header lines ("Name: value").
func serverGet(t *testing.T, srv *httptest.Server, header ...string) serverResponse {
	t.Helper()
	resp, err := serverFetch(srv, header...)
	require.NoError(t, err)
	return resp
}

// serverFetch is serverGet for goroutines other than the test's.
func serverFetch(srv *httptest.Server, header ...string) (serverResponse, error) {
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		return serverResponse{}, err
	}
	for _, line := range header {
		k, v, _ := strings.Cut(line, ": ")
		req.Header.Add(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return serverResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return serverResponse{status: resp.StatusCode, header: resp.Header, body: string(body)}, err
}

// parseSFItem parses a structured field item of a string and integer
// parameters, such as `"default";r=0;t=1`.
func parseSFItem(t *testing.T, field string) (name string, params map[string]int64) {
	t.Helper()
	parts := strings.Split(field, ";")
	name, err := strconv.Unquote(parts[0])
	require.NoError(t, err, "item %q", field)
	params = make(map[string]int64)
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		require.True(t, ok, "parameter %q of %q", p, field)
		params[k], err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "parameter %q of %q", p, field)
	}
	return name, params
}

func TestHandlerRateLimitAnswers429(t *testing.T) {
	var served atomic.Int32
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	// Two at once, then one each 1000s: a refusal waits 1000s, less the
	// time the test took.
	srv := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRateLimit(0.001, 2)))

	assert.Equal(t, http.StatusOK, serverGet(t, srv).status)
	assert.Equal(t, http.StatusOK, serverGet(t, srv).status)
	resp := serverGet(t, srv)
	require.Equal(t, http.StatusTooManyRequests, resp.status)
	assert.Equal(t, int32(2), served.Load(), "the refused request did not reach next")
	assert.Equal(t, "Too Many Requests\n", resp.body)
	assert.Equal(t, "text/plain; charset=utf-8", resp.header.Get("Content-Type"))

	retryAfter, err := strconv.Atoi(resp.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", resp.header.Get("Retry-After"))
	assert.Equal(t, 1000, retryAfter)

	name, policy := parseSFItem(t, resp.header.Get("RateLimit-Policy"))
	assert.Equal(t, "default", name)
	assert.Equal(t, map[string]int64{"q": 2, "w": 2000}, policy, "a burst of 2 fills in 2000s")

	name, limit := parseSFItem(t, resp.header.Get("RateLimit"))
	assert.Equal(t, "default", name)
	assert.Equal(t, map[string]int64{"r": 0, "t": int64(retryAfter)}, limit)
}

func TestHandlerRateLimitHeadersRoundUp(t *testing.T) {
	tests := []struct {
		perSecond  float64
		burst      int
		retryAfter string
		policy     string
	}{
		{perSecond: 2, burst: 1, retryAfter: "1", policy: `"default";q=1;w=1`},
		{perSecond: 1.0 / 30, burst: 10, retryAfter: "30", policy: `"default";q=10;w=300`},
		{perSecond: 0.4, burst: 1, retryAfter: "3", policy: `"default";q=1;w=3`},
		{perSecond: 1.0 / 120, burst: 5, retryAfter: "120", policy: `"default";q=5;w=600`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.perSecond, tt.burst), func(t *testing.T) {
			srv := newTestServer(t, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(tt.perSecond, tt.burst)))
			var resp serverResponse
			for range tt.burst + 1 {
				resp = serverGet(t, srv)
			}
			require.Equal(t, http.StatusTooManyRequests, resp.status)
			assert.Equal(t, tt.retryAfter, resp.header.Get("Retry-After"))
			assert.Equal(t, `"default";r=0;t=`+tt.retryAfter, resp.header.Get("RateLimit"))
			assert.Equal(t, tt.policy, resp.header.Get("RateLimit-Policy"))
		})
	}
}

func TestHandlerRateLimitIgnoresXForwardedForByDefault(t *testing.T) {
	srv := newTestServer(t, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(0.001, 1)))
	assert.Equal(t, http.StatusOK, serverGet(t, srv, "X-Forwarded-For: 203.0.113.1").status)
	assert.Equal(t, http.StatusTooManyRequests, serverGet(t, srv, "X-Forwarded-For: 203.0.113.2").status,
		"one client, 127.0.0.1, whatever it says it forwards")
}

func TestHandlerRateLimitBelievesTrustedProxies(t *testing.T) {
	// The test's client, 127.0.0.1, is a proxy, as is 10.0.0.0/8 behind it.
	srv := newTestServer(t, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(0.001, 1),
		resiliencehttp.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"))))
	tests := []struct {
		xff  []string
		want int
	}{
		{xff: []string{"203.0.113.1"}, want: http.StatusOK},
		{xff: []string{"203.0.113.2"}, want: http.StatusOK},
		{xff: []string{"203.0.113.1"}, want: http.StatusTooManyRequests},
		// The rightmost untrusted address is the client; what it claims
		// to its left is not believed.
		{xff: []string{"198.51.100.7, 203.0.113.9, 10.0.0.1"}, want: http.StatusOK},
		{xff: []string{"198.51.100.8, 203.0.113.9"}, want: http.StatusTooManyRequests},
		{xff: []string{"198.51.100.8", "203.0.113.9:4711, 10.1.2.3"}, want: http.StatusTooManyRequests},
		// No header: the proxy itself is the client.
		{want: http.StatusOK},
		{xff: []string{"10.9.9.9"}, want: http.StatusOK},
		{xff: []string{"garbage, 10.9.9.9"}, want: http.StatusTooManyRequests},
	}
	for i, tt := range tests {
		var header []string
		for _, v := range tt.xff {
			header = append(header, "X-Forwarded-For: "+v)
		}
		assert.Equal(t, tt.want, serverGet(t, srv, header...).status, "request %d, X-Forwarded-For %q", i, tt.xff)
	}
}

func TestHandlerRateLimitWithKey(t *testing.T) {
	tenant := func(r *http.Request) string { return r.Header.Get("Tenant") }
	srv := newTestServer(t, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(0.001, 1), resiliencehttp.WithKey(tenant)))
	assert.Equal(t, http.StatusOK, serverGet(t, srv, "Tenant: acme").status)
	assert.Equal(t, http.StatusOK, serverGet(t, srv, "Tenant: globex").status)
	assert.Equal(t, http.StatusTooManyRequests, serverGet(t, srv, "Tenant: acme").status)
}

// blockingNext is a next that counts the requests inside it and holds
// them until release is closed.
type blockingNext struct {
	entered chan struct{}
	release chan struct{}
}

func newBlockingNext() *blockingNext {
	return &blockingNext{entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (h *blockingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered <- struct{}{}
	<-h.release
	_, _ = io.WriteString(w, "served")
}

func TestHandlerLoadSheddingUnderConcurrentLoad(t *testing.T) {
	const slots, extra = 3, 10
	bh := bulkhead.New(slots)
	next := newBlockingNext()
	srv := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(bh)))

	var admitted sync.WaitGroup
	for range slots {
		admitted.Go(func() {
			resp, err := serverFetch(srv)
			assert.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.status)
			assert.Equal(t, "served", resp.body)
		})
	}
	for range slots {
		<-next.entered
	}

	var refused sync.WaitGroup
	for range extra {
		refused.Go(func() {
			resp, err := serverFetch(srv)
			assert.NoError(t, err)
			assert.Equal(t, http.StatusServiceUnavailable, resp.status)
			assert.Equal(t, "1", resp.header.Get("Retry-After"), "a bulkhead gives no hint")
			assert.Equal(t, "Service Unavailable\n", resp.body)
		})
	}
	refused.Wait()
	assert.Equal(t, bulkhead.Metrics{InFlight: slots, Rejected: extra}, bh.Metrics())

	close(next.release)
	admitted.Wait()
	assert.Equal(t, http.StatusOK, serverGet(t, srv).status)
	assert.Equal(t, bulkhead.Metrics{Rejected: extra}, bh.Metrics())
}

// hintedRejection is a rejection with a retry-after hint, as a circuit
// breaker's.
type hintedRejection struct{ after time.Duration }

func (e hintedRejection) Error() string             { return "hinted rejection" }
func (e hintedRejection) Is(target error) bool      { return target == resilience.ErrRejected }
func (e hintedRejection) RetryAfter() time.Duration { return e.after }

func TestHandlerLoadSheddingRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "hint rounded up", err: hintedRejection{2500 * time.Millisecond}, want: "3"},
		{name: "zero hint", err: hintedRejection{0}, want: "1"},
		{name: "no hint", err: bulkhead.ErrFull, want: "1"},
		{name: "not run, no error", err: nil, want: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refuse := resilience.PolicyFunc(func(context.Context, resilience.Op) error { return tt.err })
			srv := newTestServer(t, resiliencehttp.Handler(okNext, resiliencehttp.WithLoadShedding(refuse)))
			resp := serverGet(t, srv)
			assert.Equal(t, http.StatusServiceUnavailable, resp.status)
			assert.Equal(t, tt.want, resp.header.Get("Retry-After"))
		})
	}
}

func TestHandlerLoadSheddingPolicySeesTimeouts(t *testing.T) {
	recorded := make(chan [2]error, 2)
	record := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		err := op(ctx)
		recorded <- [2]error{err, op(ctx)} // a second call serves nothing
		return err
	})
	var served atomic.Int32
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 2 {
			<-r.Context().Done()
		}
	})
	srv := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(record),
		resiliencehttp.WithRequestTimeout(10*time.Millisecond)))
	assert.Equal(t, http.StatusOK, serverGet(t, srv).status)
	assert.Equal(t, http.StatusServiceUnavailable, serverGet(t, srv).status)

	// The second answer came at the deadline, before next returned: wait
	// for the policy.
	assert.Equal(t, [2]error{}, <-recorded)
	errs := <-recorded
	assert.ErrorIs(t, errs[0], timeout.ErrExceeded)
	assert.ErrorIs(t, errs[0], context.DeadlineExceeded)
	assert.Equal(t, errs[0], errs[1])
	assert.Equal(t, int32(2), served.Load())
}

func TestHandlerRequestTimeoutAnswers(t *testing.T) {
	tests := []struct {
		name   string
		opts   []resiliencehttp.HandlerOption
		status int
		body   string
	}{
		{name: "503", status: http.StatusServiceUnavailable, body: "Service Unavailable\n"},
		{name: "504 for a gateway", opts: []resiliencehttp.HandlerOption{resiliencehttp.WithGateway()},
			status: http.StatusGatewayTimeout, body: "Gateway Timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			late := make(chan error, 1)
			var cause error
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Next", "set before the deadline")
				<-r.Context().Done()
				cause = context.Cause(r.Context())
				http.Error(w, "next's own answer", http.StatusInternalServerError)
				_, err := io.WriteString(w, "late")
				late <- err
			})
			opts := append([]resiliencehttp.HandlerOption{resiliencehttp.WithRequestTimeout(10 * time.Millisecond)}, tt.opts...)
			srv := newTestServer(t, resiliencehttp.Handler(next, opts...))

			resp := serverGet(t, srv)
			assert.Equal(t, tt.status, resp.status)
			assert.Equal(t, tt.body, resp.body, "one answer, nothing of next's")
			assert.Empty(t, resp.header.Get("X-Next"), "next's header stays next's")
			assert.Empty(t, resp.header.Get("Retry-After"))
			assert.ErrorIs(t, <-late, http.ErrHandlerTimeout)
			assert.ErrorIs(t, cause, timeout.ErrExceeded)
			assert.ErrorIs(t, cause, context.DeadlineExceeded)
		})
	}
}

func TestHandlerRequestTimeoutAnswersWhileNextRuns(t *testing.T) {
	for _, http2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP/2 %v", http2), func(t *testing.T) {
			release, late := make(chan struct{}), make(chan error, 1)
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Next", "never sent")
				<-release // ignores its ctx
				_, err := io.WriteString(w, "late")
				late <- err
			})
			srv := httptest.NewUnstartedServer(resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(10*time.Millisecond)))
			if http2 {
				srv.EnableHTTP2 = true
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()

			// The answer arrives whole while next is still held.
			resp, err := srv.Client().Get(srv.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http2, resp.ProtoMajor == 2, "protocol %s", resp.Proto)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Empty(t, resp.Header.Get("X-Next"))
			require.Equal(t, int64(20), resp.ContentLength)
			body := make([]byte, resp.ContentLength)
			_, err = io.ReadFull(resp.Body, body)
			require.NoError(t, err)
			assert.Equal(t, "Service Unavailable\n", string(body))
			if !http2 {
				n, err := resp.Body.Read(make([]byte, 1))
				assert.Equal(t, 0, n)
				assert.Equal(t, io.EOF, err, "HTTP/1.1 ends the response at its length")
			}

			// HTTP/2 ends the stream when next returns.
			close(release)
			assert.ErrorIs(t, <-late, http.ErrHandlerTimeout)
			rest, err := io.ReadAll(resp.Body)
			assert.NoError(t, err)
			assert.Empty(t, rest)
		})
	}
}

func TestHandlerRequestTimeoutLeavesABegunResponse(t *testing.T) {
	late := make(chan error, 1)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "begun")
		require.NoError(t, http.NewResponseController(w).Flush())
		<-r.Context().Done()
		_, err := io.WriteString(w, ", ended")
		late <- err
	})
	srv := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(10*time.Millisecond)))

	resp := serverGet(t, srv)
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Equal(t, "begun, ended", resp.body)
	assert.NoError(t, <-late)
}

func TestHandlerRequestTimeoutKeepsTheWriter(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		assert.NoError(t, rc.SetWriteDeadline(time.Now().Add(time.Minute)), "through Unwrap")
		assert.NoError(t, rc.EnableFullDuplex(), "through Unwrap")
		_, isFlusher := w.(http.Flusher)
		assert.True(t, isFlusher)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Next", "yes")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "body")
		assert.NoError(t, rc.Flush())
		w.Header().Set("X-Sum", "42") // a trailer, set after the body
	})
	srv := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Minute)))

	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "body", string(body))
	assert.Equal(t, "yes", resp.Header.Get("X-Next"))
	assert.Equal(t, "42", resp.Trailer.Get("X-Sum"))
}

func TestHandlerRequestTimeoutHeaderWithoutWrite(t *testing.T) {
	outer := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Outer", "kept")
			w.Header().Set("X-Removed", "by next")
			h.ServeHTTP(w, r)
		})
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "kept", w.Header().Get("X-Outer"), "next sees the header set before it")
		w.Header().Del("X-Removed")
		w.Header().Set("X-Next", "yes") // and returns without writing
	})
	srv := newTestServer(t, outer(resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Minute))))
	resp := serverGet(t, srv)
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Equal(t, "kept", resp.header.Get("X-Outer"))
	assert.Equal(t, "yes", resp.header.Get("X-Next"))
	assert.NotContains(t, resp.header, "X-Removed")
}

func TestHandlerFallback(t *testing.T) {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := resiliencehttp.Refusal(r)
		var kind string
		switch {
		case errors.Is(err, ratelimit.ErrLimited):
			kind = "limited"
		case errors.Is(err, bulkhead.ErrFull):
			kind = "shed"
		case errors.Is(err, timeout.ErrExceeded):
			kind = "timed out"
			assert.NoError(t, r.Context().Err(), "the fallback's ctx is the request's")
		}
		_, _ = io.WriteString(w, "fallback: "+kind)
	})
	var slow atomic.Bool
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, resiliencehttp.Refusal(r))
		if slow.Load() {
			<-r.Context().Done()
		}
		_, _ = io.WriteString(w, "next")
	})
	limited := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRateLimit(0.001, 1),
		resiliencehttp.WithFallback(fallback)))
	assert.Equal(t, serverResponse{status: http.StatusOK, body: "next"}, withoutHeader(serverGet(t, limited)))
	assert.Equal(t, serverResponse{status: http.StatusOK, body: "fallback: limited"}, withoutHeader(serverGet(t, limited)))

	shed := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(
		resilience.PolicyFunc(func(context.Context, resilience.Op) error { return bulkhead.ErrFull })),
		resiliencehttp.WithFallback(fallback)))
	assert.Equal(t, serverResponse{status: http.StatusOK, body: "fallback: shed"}, withoutHeader(serverGet(t, shed)))

	timedOut := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(10*time.Millisecond),
		resiliencehttp.WithFallback(fallback)))
	slow.Store(true)
	assert.Equal(t, serverResponse{status: http.StatusOK, body: "fallback: timed out"}, withoutHeader(serverGet(t, timedOut)))
}

// withoutHeader returns r without its header.
func withoutHeader(r serverResponse) serverResponse {
	r.header = nil
	return r
}

func TestRefusalOfOtherRequests(t *testing.T) {
	assert.NoError(t, resiliencehttp.Refusal(httptest.NewRequest(http.MethodGet, "/", nil)))
}

func TestHandlerClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	var served atomic.Int32
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) })

	limited := resiliencehttp.Handler(next, resiliencehttp.WithRateLimit(1e-6, 1))
	limited.ServeHTTP(newDiscardResponseWriter(), newServerRequest()) // the only token
	w := newDiscardResponseWriter()
	limited.ServeHTTP(w, gone)
	assert.Zero(t, w.status, "a refusal is not answered to a client that went away")

	shed := resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(bulkhead.New(1)))
	w = newDiscardResponseWriter()
	shed.ServeHTTP(w, gone)
	assert.Zero(t, w.status, "a refusal is not answered to a client that went away")
	assert.Equal(t, int32(1), served.Load())
}

func TestHandlerRefusalsAllocateNothing(t *testing.T) {
	tests := []struct {
		name   string
		h      http.Handler
		status int
	}{
		{name: "admitted by the rate limit", status: http.StatusOK,
			h: resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst))},
		{name: "admitted by the rate limit and the load shedder", status: http.StatusOK,
			h: resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst),
				resiliencehttp.WithLoadShedding(bulkhead.New(1)))},
		{name: "refused by the rate limit", status: http.StatusTooManyRequests,
			h: resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(1.0/60, 1))},
		{name: "refused by the load shedder", status: http.StatusServiceUnavailable,
			h: resiliencehttp.Handler(okNext, resiliencehttp.WithLoadShedding(
				resilience.PolicyFunc(func(context.Context, resilience.Op) error { return bulkhead.ErrFull })))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, r := newDiscardResponseWriter(), newServerRequest()
			tt.h.ServeHTTP(w, r)
			allocs := testing.AllocsPerRun(100, func() {
				w.reset()
				tt.h.ServeHTTP(w, r)
			})
			assert.Equal(t, tt.status, w.status)
			assert.Zero(t, allocs)
		})
	}
}

func TestHandlerOptionsPanic(t *testing.T) {
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"nil next", func() { resiliencehttp.Handler(nil) }, "resiliencehttp: Handler: nil next"},
		{"nil option", func() { resiliencehttp.Handler(okNext, nil) }, "resiliencehttp: Handler: nil HandlerOption"},
		{"zero rate", func() { resiliencehttp.WithRateLimit(0, 1) },
			"resiliencehttp: WithRateLimit(0, 1): want finite perSecond >= 1e-6"},
		{"NaN rate", func() { resiliencehttp.WithRateLimit(notANumber(), 1) },
			"resiliencehttp: WithRateLimit(NaN, 1): want finite perSecond >= 1e-6"},
		{"zero burst", func() { resiliencehttp.WithRateLimit(1, 0) }, "resiliencehttp: WithRateLimit(1, 0): want burst >= 1"},
		{"nil key", func() { resiliencehttp.WithKey(nil) }, "resiliencehttp: WithKey: nil keyOf"},
		{"invalid prefix", func() { resiliencehttp.WithTrustedProxies(netip.Prefix{}) },
			"resiliencehttp: WithTrustedProxies: invalid prefix invalid Prefix at index 0"},
		{"nil policy", func() { resiliencehttp.WithLoadShedding(nil) }, "resiliencehttp: WithLoadShedding: nil Policy"},
		{"nil pointer policy", func() { resiliencehttp.WithLoadShedding((*bulkhead.Bulkhead)(nil)) },
			"resiliencehttp: WithLoadShedding: nil Policy"},
		{"zero timeout", func() { resiliencehttp.WithRequestTimeout(0) },
			"resiliencehttp: WithRequestTimeout(0s): want d > 0"},
		{"nil fallback", func() { resiliencehttp.WithFallback(nil) }, "resiliencehttp: WithFallback: nil Handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.PanicsWithValue(t, tt.want, tt.f)
		})
	}
}

func notANumber() float64 {
	zero := 0.0
	return zero / zero
}

// A fallback that replaces a refusal finds the refusal's headers set, and
// keeps them unless it changes them.
func TestHandlerFallbackFindsTheRefusalsHeaders(t *testing.T) {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "cached")
	})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "next") })
	limited := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithRateLimit(0.5, 1),
		resiliencehttp.WithFallback(fallback)))
	serverGet(t, limited)
	got := serverGet(t, limited)
	assert.Equal(t, "cached", got.body)
	assert.Equal(t, "2", got.header.Get("Retry-After"))
	assert.Equal(t, `"default";q=1;w=2`, got.header.Get("RateLimit-Policy"))
	assert.NotEmpty(t, got.header.Get("RateLimit"))

	shed := newTestServer(t, resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(
		resilience.PolicyFunc(func(context.Context, resilience.Op) error { return bulkhead.ErrFull })),
		resiliencehttp.WithFallback(fallback)))
	got = serverGet(t, shed)
	assert.Equal(t, "cached", got.body)
	assert.Equal(t, "1", got.header.Get("Retry-After"))
}

// A fallback's answer to a timeout reaches the client whole, even when next
// is a ReverseProxy whose late write fails and which then aborts the
// connection with http.ErrAbortHandler.
func TestHandlerFallbackAnswerSurvivesAnAbortedProxy(t *testing.T) {
	backend := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "from the backend")
	}))
	target, err := url.Parse(backend.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	proxy.ModifyResponse = func(resp *http.Response) error {
		<-resp.Request.Context().Done() // the request timeout has passed
		return nil
	}
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "from the cache\n") // no Content-Length of its own
		http.NewResponseController(w).Flush()
	})
	srv := httptest.NewUnstartedServer(resiliencehttp.Handler(proxy,
		resiliencehttp.WithRequestTimeout(20*time.Millisecond), resiliencehttp.WithFallback(fallback)))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	for range 5 {
		got := serverGet(t, srv) // fails on a body cut short
		assert.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, "from the cache\n", got.body)
		assert.Equal(t, "15", got.header.Get("Content-Length"))
	}
}
