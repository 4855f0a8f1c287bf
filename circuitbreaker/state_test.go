package circuitbreaker_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	cb "github.com/resilience-go/resilience/circuitbreaker"
)

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

func TestStateString(t *testing.T) {
	tests := []struct {
		s    cb.State
		want string
	}{
		{cb.Closed, "closed"},
		{cb.Open, "open"},
		{cb.HalfOpen, "half-open"},
		{cb.ForcedOpen, "forced-open"},
		{cb.Disabled, "disabled"},
		{cb.MetricsOnly, "metrics-only"},
		{cb.MetricsOnly + 1, "State(6)"},
		{cb.State(-1), "State(-1)"},
		{cb.State(math.MaxInt32), "State(2147483647)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.s.String(), "State(%d)", int32(tt.s))
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
