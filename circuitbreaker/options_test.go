package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cb "github.com/resilience-go/resilience/circuitbreaker"
)

func TestTripsOnFailureRateAfterMinimumCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithFailureRate(0.5, 20))
		require.NoError(t, run(b, 9, succeed))
		require.ErrorIs(t, run(b, 10, fail), errDown)
		assert.Equal(t, cb.Closed, b.State(), "19 calls are below the minimum of 20")
		// The 20th call is a success, and completes the minimum: 10 of 20 failed.
		require.NoError(t, run(b, 1, succeed))
		assert.Equal(t, cb.Open, b.State(), "a success that completes the minimum trips the breaker")
		m := b.Metrics()
		assert.Equal(t, cb.Metrics{State: cb.Open, Calls: 20, Failures: 10, Rejections: 0}, m,
			"while open, Metrics shows the window that tripped the breaker")
	})
}

func TestFailureRateThresholdIsInclusiveAndExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 0.1 of 30 calls is 3 failures exactly; floating point would make it
		// 3.0000000000000004 and miss it.
		b := cb.New(cb.WithFailureRate(0.1, 30), cb.WithCountWindow(30))
		require.NoError(t, run(b, 27, succeed))
		run(b, 2, fail)
		assert.Equal(t, cb.Closed, b.State(), "2 of 29")
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State(), "3 of 30 is a ratio of 0.1")
	})
}

func TestConsecutiveFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(3))
		run(b, 2, fail)
		run(b, 1, succeed)
		run(b, 2, fail)
		assert.Equal(t, cb.Closed, b.State(), "a success resets the run")
		assert.Equal(t, int64(2), b.Metrics().ConsecutiveFailures)
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State(), "three failures in a row")

		// Used alone, it replaces the failure-rate rule.
		b = cb.New(cb.WithConsecutiveFailures(1000), cb.WithCountWindow(20))
		for range 50 {
			run(b, 2, fail)
			run(b, 1, succeed)
		}
		assert.Equal(t, cb.Closed, b.State(), "two thirds failed, but never 1000 in a row")

		// With WithFailureRate, either rule trips.
		b = cb.New(cb.WithConsecutiveFailures(1000), cb.WithFailureRate(0.5, 20))
		for range 10 {
			run(b, 2, fail)
			run(b, 1, succeed)
		}
		assert.Equal(t, cb.Open, b.State(), "the failure-rate rule still applies")
	})
}

func TestSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithSlowCalls(time.Second, 0.5), cb.WithFailureRate(0.5, 4), cb.WithCountWindow(4))
		slow := func(ctx context.Context) error { time.Sleep(2 * time.Second); return nil }
		run(b, 2, succeed)
		run(b, 1, slow)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 3, SlowCalls: 1}, b.Metrics())
		run(b, 1, slow)
		assert.Equal(t, cb.Open, b.State(), "2 of 4 calls took a second or more")
	})
}

func TestBreakDurationDoublesUpToMaxAndResetsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var breaks []time.Duration
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1),
			cb.WithBreakDuration(time.Second, 5*time.Second),
			cb.WithOnStateChange(func(tr cb.Transition) {
				if tr.To == cb.Open {
					breaks = append(breaks, tr.Break)
				}
			}))
		run(b, 1, fail) // trip
		for range 4 {
			time.Sleep(breaks[len(breaks)-1])
			require.Equal(t, cb.HalfOpen, b.State())
			run(b, 1, fail) // a failed probe re-opens
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
		require.Len(t, breaks, len(want))
		for i, w := range want {
			assert.InDelta(t, float64(w), float64(breaks[i]), float64(w)/5+1, "break %d", i)
		}
		time.Sleep(breaks[len(breaks)-1])
		run(b, 1, succeed) // closes
		require.Equal(t, cb.Closed, b.State())
		run(b, 1, fail)
		assert.InDelta(t, float64(time.Second), float64(breaks[len(breaks)-1]), float64(time.Second)/5,
			"closing resets the break to the base")
	})
}

func TestBreakJitterSpreads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seen := map[time.Duration]bool{}
		for range 50 {
			var brk time.Duration
			b := cb.New(cb.WithConsecutiveFailures(1), cb.WithBreakDuration(10*time.Second, time.Minute),
				cb.WithOnStateChange(func(tr cb.Transition) { brk = tr.Break }))
			run(b, 1, fail)
			require.GreaterOrEqual(t, brk, 8*time.Second)
			require.LessOrEqual(t, brk, 12*time.Second)
			seen[brk] = true
		}
		assert.Greater(t, len(seen), 40, "50 breakers drew %d distinct breaks", len(seen))
	})
}

func TestClassifier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errNotFound := errors.New("not found")
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithClassifier(func(err error) cb.Outcome {
			switch {
			case errors.Is(err, errNotFound):
				return cb.Success // the dependency answered
			case errors.Is(err, errDown):
				return cb.Failure
			}
			return cb.Ignore
		}))
		run(b, 3, func(context.Context) error { return errNotFound })
		run(b, 3, func(context.Context) error { return errors.New("odd") })
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 3}, b.Metrics())
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State())

		assert.Equal(t, cb.Success, cb.DefaultClassifier(nil))
		assert.Equal(t, cb.Ignore, cb.DefaultClassifier(fmt.Errorf("x: %w", context.Canceled)))
		assert.Equal(t, cb.Ignore, cb.DefaultClassifier(cb.ErrForcedOpen))
		assert.Equal(t, cb.Failure, cb.DefaultClassifier(context.DeadlineExceeded))
		assert.Equal(t, cb.Failure, cb.DefaultClassifier(errDown))
	})
}

func TestAllowWithSlowCallsMeasuresEachCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithSlowCalls(time.Second, 1), cb.WithFailureRate(1, 3), cb.WithCountWindow(3))
		fast, err := b.Allow()
		require.NoError(t, err)
		slow, err := b.Allow()
		require.NoError(t, err)
		time.Sleep(time.Second)
		fast2, err := b.Allow()
		require.NoError(t, err)
		fast(nil)
		slow(nil)
		fast2(nil)
		// fast also took a second: it was admitted before the sleep.
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 3, SlowCalls: 2}, b.Metrics())
	})
}

func TestBreakNeverPassesTheMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 200 {
			var brk time.Duration
			b := cb.New(cb.WithConsecutiveFailures(1), cb.WithBreakDuration(10*time.Second, 10*time.Second),
				cb.WithOnStateChange(func(tr cb.Transition) { brk = tr.Break }))
			run(b, 1, fail)
			require.GreaterOrEqual(t, brk, 8*time.Second)
			require.LessOrEqual(t, brk, 10*time.Second, "a break at the maximum is spread below it")
		}
	})
}

func TestOptionsPanicOnBadValues(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"circuitbreaker: WithFailureRate(0, 20): want 1e-6 <= ratio <= 1", func() { cb.WithFailureRate(0, 20) }},
		{"circuitbreaker: WithFailureRate(1e-07, 1): want 1e-6 <= ratio <= 1", func() { cb.WithFailureRate(1e-7, 1) }},
		{"circuitbreaker: WithFailureRate(1.5, 20): want 1e-6 <= ratio <= 1", func() { cb.WithFailureRate(1.5, 20) }},
		{"circuitbreaker: WithFailureRate(0.5, 0): want minCalls >= 1", func() { cb.WithFailureRate(0.5, 0) }},
		{"circuitbreaker: WithConsecutiveFailures(0): want n >= 1", func() { cb.WithConsecutiveFailures(0) }},
		{"circuitbreaker: WithSlowCalls(0s, 0.5): want threshold > 0", func() { cb.WithSlowCalls(0, 0.5) }},
		{"circuitbreaker: WithSlowCalls(1s, 0): want 1e-6 <= ratio <= 1", func() { cb.WithSlowCalls(time.Second, 0) }},
		{"circuitbreaker: WithCountWindow(0): want 1 <= n <= 100000", func() { cb.WithCountWindow(0) }},
		{"circuitbreaker: WithCountWindow(100001): want 1 <= n <= 100000", func() { cb.WithCountWindow(100001) }},
		{"circuitbreaker: WithTimeWindow(1s, 2000): want span > 0, 1 <= buckets <= 100 and span/buckets >= 1ms", func() { cb.WithTimeWindow(time.Second, 2000) }},
		{"circuitbreaker: WithTimeWindow(1h0m0s, 101): want span > 0, 1 <= buckets <= 100 and span/buckets >= 1ms", func() { cb.WithTimeWindow(time.Hour, 101) }},
		{"circuitbreaker: WithTimeWindow(0s, 10): want span > 0, 1 <= buckets <= 100 and span/buckets >= 1ms", func() { cb.WithTimeWindow(0, 10) }},
		{"circuitbreaker: WithBreakDuration(5s, 1s): want 0 < base <= max", func() { cb.WithBreakDuration(5*time.Second, time.Second) }},
		{"circuitbreaker: WithBreakDuration(0s, 1s): want 0 < base <= max", func() { cb.WithBreakDuration(0, time.Second) }},
		{"circuitbreaker: WithHalfOpenProbes(0): want 1 <= n <= 1000", func() { cb.WithHalfOpenProbes(0) }},
		{"circuitbreaker: WithHalfOpenProbes(1001): want 1 <= n <= 1000", func() { cb.WithHalfOpenProbes(1001) }},
		{"circuitbreaker: WithClassifier: nil classifier", func() { cb.WithClassifier(nil) }},
		{"circuitbreaker: WithOnStateChange: nil observer", func() { cb.WithOnStateChange(nil) }},
		{"circuitbreaker: New: nil Option", func() { cb.New(nil) }},
		{"circuitbreaker: New: nil Option", func() { cb.New(cb.WithName("db"), nil) }},
		{"circuitbreaker: WithFailureRate minimum of 200 calls exceeds WithCountWindow(100): the breaker could never trip",
			func() { cb.New(cb.WithFailureRate(0.5, 200)) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

func TestDefaultMinimumFitsASmallWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithCountWindow(10)) // the default minimum is 20
		run(b, 5, succeed)
		run(b, 4, fail)
		assert.Equal(t, cb.Closed, b.State(), "4 of 9")
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State(), "5 of 10: the minimum is the window's size")
	})
}

// The defaults: a count window of the last 100 calls, tripping at a failure
// rate of one half once 20 calls are in it.
func TestDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New()
		run(b, 10, fail)
		run(b, 9, succeed)
		assert.Equal(t, cb.Closed, b.State(), "19 calls: under the minimum")
		run(b, 1, succeed)
		assert.Equal(t, cb.Open, b.State(), "10 of 20: the success that completes the minimum trips it")
		b = cb.New()
		run(b, 100, succeed)
		run(b, 49, fail)
		assert.Equal(t, cb.Closed, b.State(), "49 of 100")
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State(), "50 of the last 100")
		b = cb.New()
		run(b, 60, fail)
		b.Reset()
		run(b, 100, succeed)
		run(b, 49, fail)
		m := b.Metrics()
		assert.Equal(t, int64(100), m.Calls, "the window holds the last 100 calls")
		assert.Equal(t, int64(49), m.Failures)
	})
}
