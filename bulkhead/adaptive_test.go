package bulkhead_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/timeout"
)

func TestAdaptiveContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy { return bulkhead.Adaptive() })
	t.Run("small", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return bulkhead.Adaptive(bulkhead.WithLimits(1, 2, 4), bulkhead.WithAdaptiveMinSamples(1),
				bulkhead.WithWindow(time.Millisecond))
		})
	})
}

func TestAdaptiveObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyAdaptiveLimiter, func(name string, o resilience.Observer) resilience.Policy {
		opts := []bulkhead.AdaptiveOption{bulkhead.WithName(name)}
		if o != nil {
			opts = append(opts, bulkhead.WithObserver(o))
		}
		return bulkhead.Adaptive(opts...)
	})
}

// hold starts n calls through a that stay in flight until release is
// closed, and returns where their results arrive.
func hold(t *testing.T, a *bulkhead.AdaptiveBulkhead, n int, release <-chan struct{}) <-chan error {
	t.Helper()
	results := make(chan error, n)
	for range n {
		go func() {
			results <- a.Do(context.Background(), func(context.Context) error { <-release; return nil })
		}()
	}
	synctest.Wait()
	return results
}

// A call beyond the limit is refused at once with a FullError that
// matches ErrFull and ErrRejected, and, once a window has ended, carries
// its p90 latency as a retry-after hint; the observer sees the refusal
// with the hint.
func TestAdaptiveRefusesBeyondTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 3, 10), bulkhead.WithObserver(&rec), bulkhead.WithName("api"))
		release := make(chan struct{})
		results := hold(t, a, 3, release)
		assert.Equal(t, bulkhead.AdaptiveMetrics{Limit: 3, InFlight: 3}, a.Metrics())

		err := a.Do(context.Background(), func(context.Context) error { t.Error("op ran beyond the limit"); return nil })
		var full *bulkhead.FullError
		require.ErrorAs(t, err, &full)
		assert.ErrorIs(t, err, bulkhead.ErrFull)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		_, hinted := resilience.RetryAfter(err)
		assert.False(t, hinted, "no hint before a window has ended")
		assert.Equal(t, int64(1), a.Metrics().Rejected)
		close(release)
		for range 3 {
			require.NoError(t, <-results)
		}

		// A window of 50 calls of 400ms sets the hint.
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				_ = a.Do(context.Background(), func(ctx context.Context) error {
					wait.Sleep(ctx, 400*time.Millisecond)
					return nil
				})
			})
			wg.Wait()
		}
		m := a.Metrics()
		assert.GreaterOrEqual(t, m.Latency, 400*time.Millisecond, "p90 of the window")
		assert.LessOrEqual(t, m.Latency, 430*time.Millisecond, "p90 of the window, within a bucket")
		assert.Equal(t, m.Latency, m.Baseline, "the first window's p90 is the baseline")

		rec.Reset()
		release = make(chan struct{})
		results = hold(t, a, int(a.Metrics().Limit), release)
		err = a.Do(context.Background(), func(context.Context) error { return nil })
		d, hinted := resilience.RetryAfter(err)
		assert.True(t, hinted)
		assert.Equal(t, m.Latency, d, "the hint is the last window's p90")
		events := rec.Events()
		if assert.Len(t, events, 1) {
			assert.Equal(t, resilience.Event{Time: time.Now(), Policy: resilience.PolicyAdaptiveLimiter, Name: "api",
				Kind: resilience.Rejected, Delay: d, Err: err}, events[0])
		}
		close(release)
		for range cap(results) {
			require.NoError(t, <-results)
		}
	})
}

// Timeouts further in are drops: each window with one lowers the limit
// by a tenth. Other failures and the caller's own cancellation neither
// lower it nor count as latencies.
func TestAdaptiveDropsLowerTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 100, 200), bulkhead.WithWindow(time.Second))
		release := make(chan struct{})
		held := hold(t, a, 20, release) // so that 5× the calls in flight is 100
		to := timeout.New(100 * time.Millisecond)
		slow := func(ctx context.Context) error {
			return to.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return context.Cause(ctx) })
		}
		require.ErrorIs(t, a.Do(context.Background(), slow), timeout.ErrExceeded)
		assert.Equal(t, int64(100), a.Metrics().Limit, "the window has not ended")
		time.Sleep(time.Second)
		require.ErrorIs(t, a.Do(context.Background(), slow), timeout.ErrExceeded)
		assert.Equal(t, int64(90), a.Metrics().Limit, "a window with drops: × 0.9")

		time.Sleep(time.Second)
		require.Error(t, a.Do(context.Background(), func(context.Context) error { return errors.New("bad request") }))
		ctx, cancel := context.WithCancel(context.Background())
		require.ErrorIs(t, a.Do(ctx, func(ctx context.Context) error { cancel(); return ctx.Err() }), context.Canceled)
		require.ErrorIs(t, a.Do(context.Background(), func(context.Context) error { return bulkhead.ErrFull }), bulkhead.ErrFull)
		assert.Equal(t, int64(81), a.Metrics().Limit, "a refusal further in is a drop; the others are not")
		assert.Zero(t, a.Metrics().Latency, "no latency learnt from failures")
		close(release)
		for range 20 {
			require.NoError(t, <-held)
		}
	})
}

// An op that panics frees its permit.
func TestAdaptivePanicFreesThePermit(t *testing.T) {
	a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1))
	assert.PanicsWithValue(t, "boom", func() {
		_ = a.Do(context.Background(), func(context.Context) error { panic("boom") })
	})
	assert.Zero(t, a.Metrics().InFlight)
	assert.NoError(t, a.Do(context.Background(), nop))
}

// Behind resiliencehttp.Handler's load shedding, a request the adaptive
// bulkhead refuses is answered 503 with its hint in Retry-After.
func TestAdaptiveBehindResiliencehttpHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 2, 10), bulkhead.WithAdaptiveMinSamples(1), bulkhead.WithWindow(time.Second))
		release := make(chan struct{})
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				wait.Sleep(r.Context(), 1500*time.Millisecond)
			} else {
				<-release
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		h := resiliencehttp.Handler(next, resiliencehttp.WithLoadShedding(a))
		serve := func(path string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			return rec
		}
		require.Equal(t, http.StatusOK, serve("/slow").Code)
		m := a.Metrics()
		require.GreaterOrEqual(t, m.Latency, 1500*time.Millisecond, "the first window ended with p90 1.5s")

		var wg sync.WaitGroup
		for range m.Limit {
			wg.Go(func() { assert.Equal(t, http.StatusOK, serve("/held").Code) })
		}
		synctest.Wait()
		rec := serve("/held")
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "beyond the limit of %d", m.Limit)
		assert.Equal(t, "2", rec.Header().Get("Retry-After"), "the p90 of 1.5s, in whole seconds rounded up")
		close(release)
		wg.Wait()
	})
}

func TestAdaptiveAllocations(t *testing.T) {
	ctx := context.Background()
	a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1), bulkhead.WithAdaptiveMinSamples(1), bulkhead.WithWindow(time.Nanosecond))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = a.Do(ctx, nop) }), "Do, a free permit, a window each call")
	_ = a.Do(ctx, func(context.Context) error {
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = a.Do(ctx, nop) }), "Do, refused")
		return nil
	})
	o := bulkhead.Adaptive(bulkhead.WithObserver(resilience.ObserverFunc(func(context.Context, resilience.Event) {})))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = o.Do(ctx, nop) }), "Do, observed")
}

func TestAdaptiveBadArgumentsPanic(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"bulkhead: WithLimits(0, 20, 200): want 1 <= min <= initial <= max <= 2147483647", func() { bulkhead.WithLimits(0, 20, 200) }},
		{"bulkhead: WithLimits(5, 4, 200): want 1 <= min <= initial <= max <= 2147483647", func() { bulkhead.WithLimits(5, 4, 200) }},
		{"bulkhead: WithLimits(1, 20, 10): want 1 <= min <= initial <= max <= 2147483647", func() { bulkhead.WithLimits(1, 20, 10) }},
		{"bulkhead: WithWindow(0s): want d > 0", func() { bulkhead.WithWindow(0) }},
		{"bulkhead: WithAdaptiveMinSamples(0): want n >= 1", func() { bulkhead.WithAdaptiveMinSamples(0) }},
		{"bulkhead: WithMaxHealthyLatency(-1s): want d >= 0", func() { bulkhead.WithMaxHealthyLatency(-time.Second) }},
		{"bulkhead: WithDropOn: nil f", func() { bulkhead.WithDropOn(nil) }},
		{"bulkhead: Adaptive: nil Option", func() { bulkhead.Adaptive(nil) }},
		{"bulkhead: Adaptive: WithMaxWait and WithMaxQueue are options of New; an AdaptiveBulkhead refuses at once",
			func() { bulkhead.Adaptive(bulkhead.WithMaxWait(time.Second)) }},
		{"bulkhead: AdaptiveBulkhead.Do: nil Op", func() { _ = bulkhead.Adaptive().Do(context.Background(), nil) }},
		{"bulkhead: zero AdaptiveBulkhead; use Adaptive", func() { _ = new(bulkhead.AdaptiveBulkhead).Do(context.Background(), nop) }},
		{"bulkhead: zero AdaptiveBulkhead; use Adaptive", func() { new(bulkhead.AdaptiveBulkhead).Metrics() }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}
