package resiliencehttp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/timeout"
)

// slowBody sends its headers at once, then 10 MB in 20 pieces over 200ms.
func slowBody(w http.ResponseWriter, r *http.Request, _ int64) {
	const pieces, size = 20, 10 << 20
	w.Header().Set("Content-Length", fmt.Sprint(size))
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	piece := strings.Repeat("x", size/pieces)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for range pieces {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := io.WriteString(w, piece); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// The attempt's ctx lives until the caller is done with the body: within
// an attempt timeout of 1s the whole body is read after RoundTrip
// returned; with 100ms the read fails with the timeout's error.
func TestBodyOutlivesTheAttempt(t *testing.T) {
	noLeaks(t)
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP/%d", map[bool]int{false: 1, true: 2}[tls]), func(t *testing.T) {
			s := newServer(t, tls, slowBody)
			for _, tt := range []struct {
				attempt time.Duration
				whole   bool
			}{{time.Second, true}, {100 * time.Millisecond, false}} {
				next := base(t, s)
				tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain(
					retries(3), timeout.New(time.Minute), timeout.New(tt.attempt))))
				req, err := http.NewRequest(http.MethodGet, s.URL, nil)
				require.NoError(t, err)
				resp, err := tr.RoundTrip(req)
				require.NoError(t, err, "attempt timeout %v", tt.attempt)
				n, err := io.Copy(io.Discard, resp.Body)
				require.NoError(t, resp.Body.Close())
				if tt.whole {
					assert.NoError(t, err, "attempt timeout %v", tt.attempt)
					assert.Equal(t, int64(10<<20), n, "attempt timeout %v", tt.attempt)
				} else {
					assert.ErrorIs(t, err, timeout.ErrExceeded, "attempt timeout %v: read %d bytes", tt.attempt, n)
					assert.Less(t, n, int64(10<<20))
				}
				assert.Equal(t, int64(1), next.trips.Load(), "the body's failure is not retried: RoundTrip had returned")
				assert.Equal(t, next.opened.Load(), next.closed.Load())
			}
		})
	}
}

// The ctx of an attempt whose body is closed early is cancelled then, not
// held until its deadline.
func TestClosingTheBodyReleasesTheAttempt(t *testing.T) {
	noLeaks(t)
	var (
		mu       sync.Mutex
		attempts []context.Context
	)
	s := newServer(t, false, slowBody)
	next := base(t, s)
	spy := roundTripper(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		attempts = append(attempts, r.Context())
		mu.Unlock()
		return next.RoundTrip(r)
	})
	tr := resiliencehttp.NewTransport(spy, resiliencehttp.WithPolicy(timeout.New(time.Hour)))
	req, err := http.NewRequest(http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	assert.NoError(t, attempts[0].Err(), "alive after RoundTrip returned")
	_, err = io.ReadFull(resp.Body, make([]byte, 1000))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.ErrorIs(t, attempts[0].Err(), context.Canceled, "released by Close")
	assert.NotErrorIs(t, context.Cause(attempts[0]), timeout.ErrExceeded)
}

// Discarded responses are drained and closed: over 10,000 requests that
// each fail once, no body stays open, and the connections are reused.
func TestNoLeakOverRetriedRequests(t *testing.T) {
	noLeaks(t)
	const requests, workers = 10_000, 4
	var (
		mu    sync.Mutex
		tries = map[string]int{}
	)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, _ int64) {
		mu.Lock()
		tries[r.URL.Path]++
		n := tries[r.URL.Path]
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, strings.Repeat("busy ", 20))
			return
		}
		io.WriteString(w, "ok")
	})
	next := base(t, s)
	client := &http.Client{Transport: resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(retries(3)))}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < requests; i += workers {
				resp, err := client.Get(fmt.Sprintf("%s/%d", s.URL, i))
				if !assert.NoError(t, err) {
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !assert.NoError(t, err) || !assert.Equal(t, "ok", string(body)) {
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(2*requests), next.trips.Load())
	assert.Equal(t, int64(2*requests), next.opened.Load())
	assert.Equal(t, int64(2*requests), next.closed.Load(), "every body closed")
	// A connection is reused when its response's body was read to its end,
	// and net/http's Transport saw the request written within 50ms: on a
	// loaded machine a few more than the workers' are made. Without the
	// drain, each failure would cost one.
	assert.Less(t, s.conns.Load(), int64(requests/100), "drained bodies leave their connections reusable")
	t.Logf("%d round trips over %d connections", next.trips.Load(), s.conns.Load())
	client.CloseIdleConnections()
	assert.Eventually(t, func() bool { return s.active.Load() == 0 }, 10*time.Second, time.Millisecond,
		"no connection left open: %d", s.active.Load())
}

// A discarded body longer than the drain limit is closed without reading
// it all, which costs its connection; a larger limit keeps it.
func TestDrainLimit(t *testing.T) {
	noLeaks(t)
	for _, tt := range []struct {
		opts  []resiliencehttp.Option
		reuse bool
	}{
		{nil, false},
		{[]resiliencehttp.Option{resiliencehttp.WithDrainLimit(1 << 20)}, true},
	} {
		var (
			mu    sync.Mutex
			tries = map[string]int{}
		)
		s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, _ int64) {
			mu.Lock()
			tries[r.URL.Path]++
			first := tries[r.URL.Path] == 1
			mu.Unlock()
			if first {
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, strings.Repeat("x", 64<<10))
				return
			}
			io.WriteString(w, "ok")
		})
		next := base(t, s)
		tr := resiliencehttp.NewTransport(next, append(tt.opts, resiliencehttp.WithPolicy(retries(2)))...)
		for i := range 10 {
			status, _ := get(t, tr, fmt.Sprintf("%s/%d", s.URL, i))
			require.Equal(t, http.StatusOK, status)
		}
		// Each failure not drained costs its connection: 1 + 10 at least.
		// Drained, the connections are reused, unless net/http's Transport
		// did not see a request written within 50ms, which a loaded machine
		// can make happen now and then.
		if tt.reuse {
			assert.Less(t, s.conns.Load(), int64(1+10), "drained: reused")
		} else {
			assert.GreaterOrEqual(t, s.conns.Load(), int64(1+10), "not drained: closed")
		}
		assert.Equal(t, next.opened.Load(), next.closed.Load())
	}
}
