package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	cb "github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/timeout"
)

var errDown = errors.New("dependency down")

func succeed(context.Context) error { return nil }
func fail(context.Context) error    { return errDown }

// run calls b.Do with op n times and returns the last error.
func run(b *cb.Breaker, n int, op resilience.Op) error {
	var err error
	for range n {
		err = b.Do(context.Background(), op)
	}
	return err
}

func TestContract(t *testing.T) {
	// Room for the suite's 100 panics (failures) in a row.
	policytest.Run(t, func() resilience.Policy { return cb.New(cb.WithCountWindow(200), cb.WithFailureRate(1, 200)) })
	t.Run("time window", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return cb.New(cb.WithTimeWindow(time.Second, 10), cb.WithFailureRate(1, 200), cb.WithSlowCalls(time.Minute, 1))
		})
	})
}

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

func TestCountWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithCountWindow(10), cb.WithFailureRate(0.5, 10))
		run(b, 4, fail)
		run(b, 6, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10, Failures: 4}, b.Metrics())
		// Four more successes push the four failures out.
		run(b, 4, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10, Failures: 0}, b.Metrics())
		// Four failures are 4 of 10: closed. A fifth is 5 of 10: open.
		run(b, 4, fail)
		assert.Equal(t, cb.Closed, b.State())
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State())
	})
}

func TestTimeWindowForgetsOldBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithTimeWindow(10*time.Second, 10), cb.WithFailureRate(0.5, 10))
		run(b, 9, fail)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 9, Failures: 9, ConsecutiveFailures: 9}, b.Metrics(), "9 calls: below the minimum")
		time.Sleep(10 * time.Second)
		run(b, 10, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10}, b.Metrics(), "the failures left the window")
	})
}

func TestTimeWindowTripsAndExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithTimeWindow(10*time.Second, 10), cb.WithFailureRate(0.5, 10))
		run(b, 20, succeed)
		time.Sleep(9 * time.Second)
		run(b, 9, fail)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 29, Failures: 9, ConsecutiveFailures: 9}, b.Metrics())
		// The 20 successes were recorded in the first bucket; once it
		// leaves the window the 9 failures are all there is, and the next
		// outcome, even a success, finds 9 of 10 failed.
		time.Sleep(1500 * time.Millisecond)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 9, Failures: 9, ConsecutiveFailures: 9}, b.Metrics())
		run(b, 1, succeed)
		assert.Equal(t, cb.Open, b.State())
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

func TestOpenRejectsWithRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []cb.Transition
		b := cb.New(cb.WithName("payments"), cb.WithConsecutiveFailures(1),
			cb.WithBreakDuration(10*time.Second, time.Minute),
			cb.WithOnStateChange(func(tr cb.Transition) { seen = append(seen, tr) }))
		run(b, 1, fail)
		require.Len(t, seen, 1)
		brk := seen[0].Break
		assert.InDelta(t, float64(10*time.Second), float64(brk), float64(2*time.Second), "break within ±20%% of the base")

		calls := 0
		time.Sleep(3 * time.Second)
		err := b.Do(context.Background(), func(context.Context) error { calls++; return nil })
		assert.Zero(t, calls, "an open breaker must not call op")
		assert.ErrorIs(t, err, cb.ErrOpen)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		assert.EqualError(t, err, "circuitbreaker: payments: open")
		var oe *cb.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, brk-3*time.Second, oe.RetryAfter())
		d, ok := resilience.RetryAfter(fmt.Errorf("charge: %w", err))
		assert.True(t, ok)
		assert.Equal(t, brk-3*time.Second, d)
		assert.Equal(t, int64(1), b.Metrics().Rejections)

		time.Sleep(oe.RetryAfter())
		assert.Zero(t, oe.RetryAfter(), "the break is over")
		assert.NoError(t, b.Do(context.Background(), succeed), "the break is over: a probe is admitted")
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

// trip opens b and waits out its break, leaving it to turn half-open.
func tripAndWait(t *testing.T, b *cb.Breaker) {
	t.Helper()
	for b.State() == cb.Closed {
		run(b, 1, fail)
	}
	var oe *cb.OpenError
	require.ErrorAs(t, b.Do(context.Background(), succeed), &oe)
	time.Sleep(oe.RetryAfter())
	require.Equal(t, cb.HalfOpen, b.State())
}

func TestHalfOpenAdmitsAtMostNProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(3))
		tripAndWait(t, b)
		var dones []func(error)
		for range 3 {
			done, err := b.Allow()
			require.NoError(t, err)
			dones = append(dones, done)
		}
		_, err := b.Allow()
		require.ErrorIs(t, err, cb.ErrOpen, "a fourth probe while three are out")
		var oe *cb.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, cb.HalfOpen, oe.State())
		assert.EqualError(t, err, "circuitbreaker: half-open")

		dones[0](nil)
		dones[1](nil)
		assert.Equal(t, cb.HalfOpen, b.State(), "two of three probes succeeded")
		done, err := b.Allow()
		require.NoError(t, err, "a slot came back")
		done(nil)
		assert.Equal(t, cb.Closed, b.State(), "three probes succeeded")
		dones[2](nil) // reports after the breaker closed: dropped
		assert.Equal(t, cb.Metrics{State: cb.Closed}, b.Metrics(), "the stale probe is not counted in the new window")
	})
}

func TestHalfOpenFirstFailedProbeReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(3))
		tripAndWait(t, b)
		d1, err := b.Allow()
		require.NoError(t, err)
		d2, err := b.Allow()
		require.NoError(t, err)
		d1(nil)
		d2(errDown)
		assert.Equal(t, cb.Open, b.State())
	})
}

func TestHalfOpenIgnoredProbeReturnsItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1))
		tripAndWait(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		err := b.Do(ctx, func(ctx context.Context) error { cancel(); return ctx.Err() })
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, cb.HalfOpen, b.State(), "the caller's cancellation says nothing")

		inner := fmt.Errorf("bulkhead full: %w", resilience.ErrRejected)
		require.ErrorIs(t, b.Do(context.Background(), func(context.Context) error { return inner }), inner)
		assert.Equal(t, cb.HalfOpen, b.State(), "an inner rejection says nothing")

		require.NoError(t, b.Do(context.Background(), succeed), "the slot was returned twice, so a probe runs")
		assert.Equal(t, cb.Closed, b.State())
	})
}

func TestHungProbeDoesNotWedgeHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var brk time.Duration
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1),
			cb.WithOnStateChange(func(tr cb.Transition) {
				if tr.To == cb.Open {
					brk = tr.Break
				}
			}))
		tripAndWait(t, b)
		hung, err := b.Allow() // a probe that never reports
		require.NoError(t, err)
		_, err = b.Allow()
		require.ErrorIs(t, err, cb.ErrOpen)
		var oe *cb.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, brk, oe.RetryAfter(), "the next slot opens a break after the probe started")

		time.Sleep(brk - time.Millisecond)
		_, err = b.Allow()
		require.ErrorIs(t, err, cb.ErrOpen, "still waiting for the hung probe")
		time.Sleep(time.Millisecond)
		require.NoError(t, b.Do(context.Background(), succeed), "a new probe slot after a whole break")
		assert.Equal(t, cb.Closed, b.State(), "the new probe's success closed the breaker")
		hung(errDown) // reports after the breaker closed: dropped
		assert.Equal(t, cb.Closed, b.State())
	})
}

func TestStaleResultsAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(2), cb.WithHalfOpenProbes(1))
		// Five calls admitted while closed are still running when it opens.
		var stale []func(error)
		for range 5 {
			done, err := b.Allow()
			require.NoError(t, err)
			stale = append(stale, done)
		}
		run(b, 2, fail)
		require.Equal(t, cb.Open, b.State())
		for _, done := range stale {
			done(nil)
		}
		assert.Equal(t, cb.Open, b.State(), "successes of calls admitted while closed must not close an open breaker")
		m := b.Metrics()
		assert.Equal(t, int64(2), m.Calls, "the window that tripped holds the two failures only")
	})
}

func TestCallerCancellationIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1))
		ctx, cancel := context.WithCancel(context.Background())
		err := b.Do(ctx, func(context.Context) error {
			cancel()
			return errors.New("read: connection reset") // any error after the caller gave up
		})
		require.Error(t, err)
		assert.Equal(t, cb.Metrics{State: cb.Closed}, b.Metrics())

		// A deadline that fired inside the call, with the caller's ctx live, is
		// the dependency being slow: a failure.
		err = b.Do(context.Background(), func(context.Context) error { return context.DeadlineExceeded })
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, cb.Open, b.State())
	})
}

// The caller's deadline is the caller giving up: ignored, as a
// cancellation is. A dependency that hangs is counted by a timeout inside
// the breaker, whose deadline is the call's own: a failure, and a slow call.
func TestCallerDeadlineIsIgnoredATimeoutInsideIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		withDeadline := func(p resilience.Policy) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return p.Do(ctx, hang)
		}
		b := cb.New(cb.WithFailureRate(0.5, 4), cb.WithSlowCalls(time.Second, 1), cb.WithHalfOpenProbes(1))
		for range 4 {
			require.ErrorIs(t, withDeadline(b), context.DeadlineExceeded)
		}
		assert.Equal(t, cb.Metrics{State: cb.Closed}, b.Metrics(), "the caller gave up four times: nothing recorded")

		guarded := resilience.Chain(b, timeout.New(2*time.Second))
		for range 4 {
			require.ErrorIs(t, withDeadline(guarded), timeout.ErrExceeded)
		}
		assert.Equal(t, cb.Open, b.State(), "four calls that hung until their own timeout trip the breaker")
		assert.Equal(t, cb.Metrics{State: cb.Open, Calls: 4, Failures: 4, SlowCalls: 4}, b.Metrics())

		var oe *cb.OpenError
		require.ErrorAs(t, b.Do(context.Background(), succeed), &oe)
		time.Sleep(oe.RetryAfter())
		require.Equal(t, cb.HalfOpen, b.State())
		_ = withDeadline(guarded)
		assert.Equal(t, cb.Open, b.State(), "a probe that hangs until its timeout re-opens the breaker")
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

func TestPanicCountsAsFailureAndPropagates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(2))
		for range 2 {
			assert.PanicsWithValue(t, "boom", func() {
				_ = b.Do(context.Background(), func(context.Context) error { panic("boom") })
			})
		}
		assert.Equal(t, cb.Open, b.State(), "two panics are two failures")
	})
}

func TestObserversSeeTransitionsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu   sync.Mutex
			seen []string
			b    *cb.Breaker
		)
		b = cb.New(cb.WithName("db"), cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1),
			cb.WithOnStateChange(func(tr cb.Transition) {
				// Observers run without the lock: reading the breaker is safe.
				_ = b.Metrics()
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%d %s %s->%s", tr.Generation, tr.Name, tr.From, tr.To))
				mu.Unlock()
			}))
		tripAndWait(t, b)
		run(b, 1, succeed)
		b.ForceOpen()
		b.Disable()
		b.MetricsOnly()
		b.Reset()
		b.OpenFor(time.Second)
		assert.Equal(t, []string{
			"1 db closed->open", "2 db open->half-open", "3 db half-open->closed", "4 db closed->forced-open",
			"5 db forced-open->disabled", "6 db disabled->metrics-only", "7 db metrics-only->closed", "8 db closed->open",
		}, seen)
	})
}

func TestConcurrentTransitionsAreDeliveredInOrder(t *testing.T) {
	var (
		mu   sync.Mutex
		gens []uint64
	)
	b := cb.New(cb.WithOnStateChange(func(tr cb.Transition) {
		mu.Lock()
		gens = append(gens, tr.Generation)
		mu.Unlock()
	}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				switch (g + i) % 4 {
				case 0:
					b.ForceOpen()
				case 1:
					b.Reset()
				case 2:
					b.MetricsOnly()
				default:
					b.OpenFor(time.Hour)
				}
			}
		})
	}
	wg.Wait()
	require.NotEmpty(t, gens)
	for i, g := range gens {
		require.Equal(t, uint64(i+1), g, "transition %d delivered out of order", i)
	}
}

func TestPanickingObserverDoesNotBreakTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithOnStateChange(func(tr cb.Transition) {
			if calls.Add(1) == 1 {
				panic("observer bug")
			}
		}))
		assert.PanicsWithValue(t, "observer bug", func() { run(b, 1, fail) },
			"the panic reaches the call that delivered the transition")
		assert.Equal(t, cb.Open, b.State(), "the transition happened")
		b.Reset()
		assert.Equal(t, int32(2), calls.Load(), "later transitions are still delivered")
		assert.NoError(t, run(b, 1, succeed))
	})
}

func TestForceOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New()
		b.ForceOpen()
		calls := 0
		err := b.Do(context.Background(), func(context.Context) error { calls++; return nil })
		assert.Zero(t, calls)
		assert.ErrorIs(t, err, cb.ErrForcedOpen)
		assert.ErrorIs(t, err, cb.ErrOpen)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		_, ok := resilience.RetryAfter(err)
		assert.False(t, ok, "a forced-open breaker gives no retry-after hint")
		_, err = b.Allow()
		assert.ErrorIs(t, err, cb.ErrForcedOpen)
		b.OpenFor(time.Second)
		assert.Equal(t, cb.ForcedOpen, b.State(), "OpenFor does not override a state set by hand")
		b.Reset()
		assert.NoError(t, b.Do(context.Background(), succeed))
	})
}

func TestDisable(t *testing.T) {
	b := cb.New(cb.WithConsecutiveFailures(1))
	b.Disable()
	for range 10 {
		assert.ErrorIs(t, b.Do(context.Background(), fail), errDown)
	}
	done, err := b.Allow()
	require.NoError(t, err)
	done(errDown)
	assert.Equal(t, cb.Metrics{State: cb.Disabled}, b.Metrics(), "a disabled breaker records nothing")
}

func TestMetricsOnlyRecordsButNeverRejects(t *testing.T) {
	b := cb.New(cb.WithConsecutiveFailures(1))
	b.MetricsOnly()
	for range 30 {
		assert.ErrorIs(t, b.Do(context.Background(), fail), errDown)
	}
	assert.Equal(t, cb.Metrics{State: cb.MetricsOnly, Calls: 30, Failures: 30, ConsecutiveFailures: 30}, b.Metrics())
	b.OpenFor(time.Second)
	assert.Equal(t, cb.MetricsOnly, b.State(), "OpenFor does not override a state set by hand")
}

func TestOpenFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New()
		b.OpenFor(0)
		b.OpenFor(-time.Second)
		assert.Equal(t, cb.Closed, b.State(), "a duration that is not positive changes nothing")

		b.OpenFor(30 * time.Second)
		var oe *cb.OpenError
		require.ErrorAs(t, b.Do(context.Background(), succeed), &oe)
		assert.Equal(t, 30*time.Second, oe.RetryAfter(), "exactly, without jitter")

		b.OpenFor(10 * time.Second)
		require.ErrorAs(t, b.Do(context.Background(), succeed), &oe)
		assert.Equal(t, 30*time.Second, oe.RetryAfter(), "a shorter OpenFor does not shorten the break")
		b.OpenFor(time.Minute)
		require.ErrorAs(t, b.Do(context.Background(), succeed), &oe)
		assert.Equal(t, time.Minute, oe.RetryAfter(), "a longer one extends it")

		time.Sleep(time.Minute)
		assert.Equal(t, cb.HalfOpen, b.State())
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

func TestZeroOpenError(t *testing.T) {
	var oe cb.OpenError
	assert.Zero(t, oe.RetryAfter())
	assert.EqualError(t, &oe, "circuitbreaker: closed")
	d, ok := resilience.RetryAfter(&oe)
	assert.True(t, ok)
	assert.Zero(t, d)
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

// Counts stay exact under concurrency: 32 goroutines, a known number of
// failures, a window that holds them all.
func TestExactCountsUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // time stands still: the time window keeps every call
		for _, window := range []cb.Option{cb.WithCountWindow(100_000), cb.WithTimeWindow(time.Minute, 60)} {
			b := cb.New(window, cb.WithSlowCalls(time.Hour, 1))
			b.MetricsOnly()
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 500 {
						if (g+i)%4 == 0 {
							_ = b.Do(context.Background(), fail)
						} else {
							_ = b.Do(context.Background(), succeed)
						}
						_ = b.Metrics() // readers race with the writers
					}
				})
			}
			wg.Wait()
			assert.Equal(t, cb.Metrics{State: cb.MetricsOnly, Calls: 16000, Failures: 4000}, withoutConsecutive(b.Metrics()))
		}
	})
}

// withoutConsecutive zeroes the one count that depends on the interleaving.
func withoutConsecutive(m cb.Metrics) cb.Metrics {
	m.ConsecutiveFailures = 0
	return m
}

func TestRejectionAndSuccessAllocateNothing(t *testing.T) {
	ctx := context.Background()
	b := cb.New()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, closed, success")
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		done, _ := b.Allow()
		done(nil)
	}), "Allow, closed, success")

	tw := cb.New(cb.WithTimeWindow(time.Minute, 60))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = tw.Do(ctx, succeed) }), "Do, time window, success")

	b.OpenFor(time.Hour)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, open")
	b.ForceOpen()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, forced open")
	b.Disable()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, disabled")

	// With an observer, and in the half-open state with its probe out.
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1), cb.WithOnStateChange(func(cb.Transition) {}))
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, closed, with an observer")
		tripAndWait(t, b)
		_, err := b.Allow()
		require.NoError(t, err)
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, half-open, rejected")
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
		{"circuitbreaker: WithClassifier(nil)", func() { cb.WithClassifier(nil) }},
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

func TestStateString(t *testing.T) {
	assert.Equal(t, "metrics-only", cb.MetricsOnly.String())
	assert.Equal(t, "State(9)", cb.State(9).String())
}

// Many goroutines sharing one breaker keep its invariants: run with -race.
func TestConcurrentUse(t *testing.T) {
	for _, window := range []cb.Option{cb.WithCountWindow(50), cb.WithTimeWindow(50*time.Millisecond, 5)} {
		var transitions atomic.Int32
		b := cb.New(window, cb.WithFailureRate(0.5, 10), cb.WithHalfOpenProbes(2),
			cb.WithBreakDuration(time.Millisecond, time.Millisecond),
			cb.WithOnStateChange(func(cb.Transition) { transitions.Add(1) }))
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 2000 {
					_ = b.Do(context.Background(), func(context.Context) error {
						if (g+i)%3 != 0 {
							return errDown
						}
						return nil
					})
					if m := b.Metrics(); m.Calls < 0 || m.Failures < 0 || m.SlowCalls < 0 || m.Failures > m.Calls || m.Rejections < 0 {
						t.Errorf("bad counts: %+v", m)
						return
					}
				}
			})
		}
		wg.Wait()
		assert.Positive(t, transitions.Load(), "two thirds of calls failing against a 0.5 threshold")
	}
}

// Rejections count in the window: from the breaker's last close, across the
// open and half-open states that follow, and from zero again once it
// closes.
func TestRejectionsCountInTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithBreakDuration(time.Second, time.Second), cb.WithHalfOpenProbes(1))
		run(b, 1, fail)
		run(b, 3, succeed)
		assert.Equal(t, int64(3), b.Metrics().Rejections)
		time.Sleep(2 * time.Second)
		run(b, 1, fail) // the probe fails: open again, the same window
		run(b, 2, succeed)
		assert.Equal(t, int64(5), b.Metrics().Rejections)
		time.Sleep(2 * time.Second)
		run(b, 1, succeed) // the probe succeeds: closed, a new window
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 0}, b.Metrics())
	})
}
