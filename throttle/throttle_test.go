package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/throttle"
)

func TestPolicy(t *testing.T) {
	// A throttle that never rejects keeps the contract for every op,
	// panicking ones too; one that rejects may refuse calls under
	// concurrency, as the contract allows.
	policytest.Run(t, func() resilience.Policy { return throttle.New(throttle.WithMaxRejection(0)) })
	policytest.RunObserved(t, resilience.PolicyThrottler, func(name string, o resilience.Observer) resilience.Policy {
		opts := []throttle.Option{throttle.WithName(name), throttle.WithMaxRejection(0)}
		if o != nil {
			opts = append(opts, throttle.WithObserver(o))
		}
		return throttle.New(opts...)
	})
}

var errDown = errors.New("down")

// run makes n calls that end with err.
func run(th *throttle.Throttle, n int, err error) (rejected int) {
	for range n {
		if errors.Is(th.Do(context.Background(), func(context.Context) error { return err }), throttle.ErrThrottled) {
			rejected++
		}
	}
	return rejected
}

func TestRejection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := throttle.New(throttle.WithRand(rand.New(rand.NewPCG(3, 4))))
		assert.Zero(t, run(th, 100, nil), "rejections while every call is accepted")
		assert.Zero(t, run(th, 100, errDown), "rejections while calls fail with errors that are not refusals")
		m := th.Metrics()
		assert.Equal(t, throttle.Metrics{Requests: 200, Accepts: 200}, m)

		// 200 accepts let 400 requests through before any rejection.
		assert.Zero(t, run(th, 200, errOverloaded), "rejections up to K·accepts")
		m = th.Metrics()
		assert.Equal(t, int64(400), m.Requests)
		assert.Equal(t, int64(200), m.Accepts)
		assert.Zero(t, m.Rejection)

		// Past it, the probability is (requests − 2·accepts)/(requests + 1),
		// and rejected requests count.
		rejected := run(th, 400, errOverloaded)
		m = th.Metrics()
		assert.Equal(t, int64(800), m.Requests, "requests, the %d rejected ones included", rejected)
		assert.InDelta(t, 400.0/801, m.Rejection, 1e-9, "rejection after 800 requests, 200 accepts")
		assert.Positive(t, rejected)

		// The window forgets: two minutes later, nothing is counted.
		time.Sleep(2 * time.Minute)
		assert.Equal(t, throttle.Metrics{}, th.Metrics())
	})
}

func TestMaxRejection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := throttle.New(throttle.WithMaxRejection(0.5), throttle.WithRand(rand.New(rand.NewPCG(5, 6))))
		rejected := run(th, 10000, errOverloaded)
		assert.Equal(t, 0.5, th.Metrics().Rejection, "rejection with no accepts")
		assert.InDelta(t, 5000, rejected, 200, "rejections of 10000 requests at 0.5")
	})
}

func TestK(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := throttle.New(throttle.WithK(1.5))
		run(th, 10, nil)
		run(th, 5, errOverloaded)
		assert.Zero(t, th.Metrics().Rejection, "15 requests, 10 accepts, K 1.5")
		run(th, 1, errOverloaded)
		assert.InDelta(t, 1.0/17, th.Metrics().Rejection, 1e-9, "16 requests, 10 accepts, K 1.5")
	})
}

func TestDefaultRejectedIf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"an error", errDown, false},
		{"a rejection", errOverloaded, true},
		{"a wrapped rejection", fmt.Errorf("call: %w", errOverloaded), true},
		{"a retry-after hint", hinted{time.Second}, true},
		{"a hint of zero", hinted{0}, false},
		{"a deadline", context.DeadlineExceeded, true},
		{"a cancellation", context.Canceled, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, throttle.DefaultRejectedIf(tt.err), "%s: %v", tt.name, tt.err)
	}
}

type hinted struct{ d time.Duration }

func (h hinted) Error() string             { return "busy" }
func (h hinted) RetryAfter() time.Duration { return h.d }

func TestCallerCancelIsAccept(t *testing.T) {
	th := throttle.New(throttle.WithRejectedIf(func(error) bool { return true }))
	ctx, cancel := context.WithCancel(context.Background())
	err := th.Do(ctx, func(context.Context) error {
		cancel()
		return context.Canceled
	})
	require.ErrorIs(t, err, context.Canceled)
	_ = th.Do(context.Background(), func(context.Context) error { return errDown })
	assert.Equal(t, throttle.Metrics{Requests: 2, Accepts: 1}, th.Metrics(),
		"a call the caller cancelled is an accept; one the classifier refuses is not")
}

func TestObserverRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		th := throttle.New(throttle.WithName("search"), throttle.WithObserver(&rec), throttle.WithMaxRejection(1))
		run(th, 100, errOverloaded)
		var err error
		for range 100 { // at rejection 0.99
			rec.Reset()
			if err = th.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
				break
			}
		}
		require.ErrorIs(t, err, throttle.ErrThrottled, "after 100 refusals")
		events := rec.Events()
		require.Len(t, events, 1)
		assert.Equal(t, resilience.Event{Time: time.Now(), Policy: resilience.PolicyThrottler, Name: "search",
			Kind: resilience.Rejected, Err: throttle.ErrThrottled}, events[0])
	})
}

func TestErrThrottled(t *testing.T) {
	assert.ErrorIs(t, throttle.ErrThrottled, resilience.ErrRejected)
	assert.Equal(t, "throttle: rejected locally", throttle.ErrThrottled.Error())
}

func TestRejectionAllocs(t *testing.T) {
	th := throttle.New(throttle.WithMaxRejection(1))
	run(th, 1, errOverloaded)
	op := func(context.Context) error { return nil }
	ctx := context.Background()
	for range 100 {
		_ = th.Do(ctx, op)
	}
	allocs := testing.AllocsPerRun(100, func() { _ = th.Do(ctx, op) })
	assert.Zero(t, allocs, "allocations of a call, rejected or let through")
}

func TestOptionsPanic(t *testing.T) {
	tests := []struct {
		want string
		opt  func() throttle.Option
	}{
		{"throttle: WithK(0.5): want 1 <= k <= 100", func() throttle.Option { return throttle.WithK(0.5) }},
		{"throttle: WithWindow(1s, 0): want d >= 1ms, 1 <= n <= 3600, d/n >= 1ms", func() throttle.Option { return throttle.WithWindow(time.Second, 0) }},
		{"throttle: WithWindow(10ms, 20): want d >= 1ms, 1 <= n <= 3600, d/n >= 1ms", func() throttle.Option { return throttle.WithWindow(10*time.Millisecond, 20) }},
		{"throttle: WithRecovery(-1s): want d >= 0", func() throttle.Option { return throttle.WithRecovery(-time.Second) }},
		{"throttle: WithMaxRejection(1.5): want 0 <= p <= 1", func() throttle.Option { return throttle.WithMaxRejection(1.5) }},
		{"throttle: WithRejectedIf: nil f", func() throttle.Option { return throttle.WithRejectedIf(nil) }},
		{"throttle: WithRand: nil *rand.Rand", func() throttle.Option { return throttle.WithRand(nil) }},
		{"throttle: WithObserver: nil Observer", func() throttle.Option { return throttle.WithObserver(nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, func() { tt.opt() })
	}
	assert.PanicsWithValue(t, "throttle: New: nil Option", func() { throttle.New(nil) })
	assert.PanicsWithValue(t, "throttle: zero Throttle; use New", func() {
		_ = new(throttle.Throttle).Do(context.Background(), func(context.Context) error { return nil })
	})
}

// An accept counts in the bucket of its request, also when the window moved
// on while the call ran, and not at all once that bucket left the window.
func TestAcceptInRequestBucket(t *testing.T) {
	tests := []struct {
		name     string
		takes    time.Duration // how long the slow call takes
		accepts  int64         // over the window when it returned
		requests int64
	}{
		{"the window moved on", 1500 * time.Millisecond, 2, 2},
		{"its bucket left the window", 3500 * time.Millisecond, 1, 1},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			th := throttle.New(throttle.WithWindow(3*time.Second, 3), throttle.WithMaxRejection(0))
			done := make(chan error)
			go func() {
				done <- th.Do(context.Background(), func(context.Context) error {
					time.Sleep(tt.takes)
					return nil
				})
			}()
			time.Sleep(tt.takes - 200*time.Millisecond)
			assert.NoError(t, th.Do(context.Background(), func(context.Context) error { return nil }))
			require.NoError(t, <-done)
			assert.Equal(t, throttle.Metrics{Requests: tt.requests, Accepts: tt.accepts}, th.Metrics(), tt.name)
		})
	}
}
