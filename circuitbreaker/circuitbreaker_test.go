package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// The done func that Allow hands out in the closed state delivers the trip
// it causes, as Do does.
func TestAllowsDoneDeliversItsTrip(t *testing.T) {
	var seen []cb.State
	b := cb.New(cb.WithConsecutiveFailures(1), cb.WithOnStateChange(func(tr cb.Transition) { seen = append(seen, tr.To) }))
	done, err := b.Allow()
	require.NoError(t, err)
	done(errDown)
	assert.Equal(t, []cb.State{cb.Open}, seen, "delivered by the call that tripped the breaker")
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

func TestZeroOpenError(t *testing.T) {
	var oe cb.OpenError
	assert.Zero(t, oe.RetryAfter())
	assert.EqualError(t, &oe, "circuitbreaker: closed")
	d, ok := resilience.RetryAfter(&oe)
	assert.False(t, ok, "a hint of zero is no hint")
	assert.Zero(t, d)
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

// The zero Breaker is not usable: every method panics at once, saying to
// use New.
func TestZeroBreakerPanics(t *testing.T) {
	const want = "circuitbreaker: zero Breaker; use New"
	tests := []struct {
		name string
		f    func(b *cb.Breaker)
	}{
		{"Do", func(b *cb.Breaker) { _ = b.Do(context.Background(), succeed) }},
		{"Do with a done ctx", func(b *cb.Breaker) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = b.Do(ctx, succeed)
		}},
		{"Allow", func(b *cb.Breaker) { _, _ = b.Allow() }},
		{"State", func(b *cb.Breaker) { _ = b.State() }},
		{"Metrics", func(b *cb.Breaker) { _ = b.Metrics() }},
		{"Name", func(b *cb.Breaker) { _ = b.Name() }},
		{"Reset", func(b *cb.Breaker) { b.Reset() }},
		{"ForceOpen", func(b *cb.Breaker) { b.ForceOpen() }},
		{"Disable", func(b *cb.Breaker) { b.Disable() }},
		{"MetricsOnly", func(b *cb.Breaker) { b.MetricsOnly() }},
		{"OpenFor", func(b *cb.Breaker) { b.OpenFor(time.Second) }},
		{"OpenFor(0)", func(b *cb.Breaker) { b.OpenFor(0) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, want, func() { tt.f(&cb.Breaker{}) }, tt.name)
	}
}

// Every error and panic of the package names it once.
func TestErrorsHaveThePrefixOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		named := cb.New(cb.WithName("payments"), cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1))
		run(named, 1, fail)
		errOpen := named.Do(context.Background(), succeed)
		unnamed := cb.New(cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1))
		tripAndWait(t, unnamed)
		_, err := unnamed.Allow()
		require.NoError(t, err)
		_, errHalfOpen := unnamed.Allow()
		for _, err := range []error{cb.ErrOpen, cb.ErrForcedOpen, errOpen, errHalfOpen, &cb.OpenError{}} {
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "circuitbreaker: "), "%q", err)
			assert.Equal(t, 1, strings.Count(err.Error(), "circuitbreaker"), "%q", err)
		}
		for _, f := range []func(){
			func() { cb.New(cb.WithFailureRate(0.5, 200)) },
			func() { cb.New(nil) },
			func() { cb.WithClassifier(nil) },
			func() { (&cb.Breaker{}).Reset() },
		} {
			msg := fmt.Sprint(catch(f))
			assert.True(t, strings.HasPrefix(msg, "circuitbreaker: "), "%q", msg)
			assert.Equal(t, 1, strings.Count(msg, "circuitbreaker"), "%q", msg)
		}
	})
}

// catch returns what f panics with.
func catch(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
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
