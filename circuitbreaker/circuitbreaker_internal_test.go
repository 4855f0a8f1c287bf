package circuitbreaker

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errFail = errors.New("fail")

func ok(context.Context) error   { return nil }
func fail(context.Context) error { return errFail }

// A reader of the metrics that runs between a success's count and its check
// must not make the success skip the check it needs.
func TestMetricsRacingASuccessDoesNotSwallowATrip(t *testing.T) {
	b := New(WithCountWindow(20), WithFailureRate(0.5, 20))
	for range 9 {
		_ = b.Do(context.Background(), ok)
	}
	for range 10 {
		_ = b.Do(context.Background(), fail)
	}
	ep := b.cur.Load()
	w := ep.win.(*countWindow)
	// The 20th call, a success, has counted itself...
	w.hits.Add(1)
	// ...when Metrics runs on another goroutine...
	m := b.Metrics()
	assert.Equal(t, int64(20), m.Calls)
	// ...and then it asks whether it must check the thresholds.
	require.True(t, !w.reached.Load(), "Metrics marked the minimum as reached: the success would skip its check")
	b.record(permit{ep: ep}, Success, b.now())
	assert.Equal(t, Open, b.cur.Load().state, "10 of 20 failed")
}

// RetryAfter is a getter: it changes nothing in the breaker, not even once
// the break is over and the breaker has not seen it yet because the break's
// timer runs late. State, which reads the clock, moves the breaker on.
func TestRetryAfterChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(WithConsecutiveFailures(1))
		_ = b.Do(context.Background(), fail)
		ep := b.cur.Load()
		require.Equal(t, Open, ep.state)
		ep.timer.Stop() // the timer is late: it has not run yet
		var oe *OpenError
		require.ErrorAs(t, b.Do(context.Background(), ok), &oe)
		time.Sleep(oe.RetryAfter())

		rejections := b.rejections.Sum()
		for range 3 {
			assert.Zero(t, oe.RetryAfter(), "the break is over")
		}
		assert.Same(t, ep, b.cur.Load(), "the breaker is in the same epoch")
		assert.False(t, ep.elapsed.Load(), "RetryAfter told the fast path the break is over")
		assert.Equal(t, rejections, b.rejections.Sum())
		require.ErrorIs(t, b.Do(context.Background(), ok), ErrOpen, "without the timer's flag the fast path still rejects")

		assert.Equal(t, HalfOpen, b.State(), "State reads the clock")
		assert.NoError(t, b.Do(context.Background(), ok), "and the next call is admitted")
	})
}

// An observer that panics while a half-open probe is admitted, by Do or by
// Allow, does not keep the probe's slot.
func TestObserverPanicDoesNotLeakAProbe(t *testing.T) {
	for _, twoStep := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			var panicOn atomic.Value
			b := New(WithConsecutiveFailures(1), WithHalfOpenProbes(1), WithOnStateChange(func(tr Transition) {
				if tr.To == panicOn.Load() {
					panic("observer bug")
				}
			}))
			_ = b.Do(context.Background(), fail)
			var oe *OpenError
			require.ErrorAs(t, b.Do(context.Background(), ok), &oe)
			time.Sleep(oe.RetryAfter())
			panicOn.Store(HalfOpen)
			assert.PanicsWithValue(t, "observer bug", func() {
				if twoStep {
					_, _ = b.Allow()
				} else {
					_ = b.Do(context.Background(), ok)
				}
			})
			panicOn.Store(State(-1))
			// Do and Allow deliver the change to HalfOpen before the
			// probe runs: it did not run.
			require.Equal(t, HalfOpen, b.State())
			assert.NoError(t, b.Do(context.Background(), ok), "the probe slot was given back")
			assert.Equal(t, Closed, b.State())
		})
	}
}

// An observer that ends its goroutine does not stop later deliveries.
func TestObserverGoexit(t *testing.T) {
	var calls atomic.Int32
	b := New(WithConsecutiveFailures(1), WithOnStateChange(func(Transition) {
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
	}))
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Do(context.Background(), fail) })
	wg.Wait()
	require.Equal(t, Open, b.State())
	b.Reset()
	b.ForceOpen()
	assert.Equal(t, int32(3), calls.Load(), "the changes after the one whose observer exited are delivered")
}

// When op panics and the failure trips the breaker, the observer's panic does
// not replace op's.
func TestObserverPanicDoesNotReplaceOpsPanic(t *testing.T) {
	var calls atomic.Int32
	b := New(WithConsecutiveFailures(1), WithOnStateChange(func(Transition) {
		if calls.Add(1) == 1 {
			panic("observer")
		}
	}))
	assert.PanicsWithValue(t, "op", func() {
		_ = b.Do(context.Background(), func(context.Context) error { panic("op") })
	})
	assert.Equal(t, Open, b.cur.Load().state)
	assert.Zero(t, calls.Load(), "the trip waits for the next call to be delivered")
	assert.PanicsWithValue(t, "observer", func() { b.State() }, "the next call delivers it")
	assert.Equal(t, int32(1), calls.Load())
}

func TestOpenForHugeDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New()
		b.OpenFor(time.Duration(1<<63 - 1))
		var oe *OpenError
		require.ErrorAs(t, b.Do(context.Background(), ok), &oe)
		assert.Positive(t, oe.RetryAfter(), "no overflow to a past time")
		time.Sleep(24 * time.Hour)
		assert.Equal(t, Open, b.State(), "still open a day later")
	})
}
