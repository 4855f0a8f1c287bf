package circuitbreaker_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	cb "github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/internal/policytest"
)

func TestObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyCircuitBreaker, func(name string, o resilience.Observer) resilience.Policy {
		opts := []cb.Option{cb.WithName(name), cb.WithCountWindow(200), cb.WithFailureRate(1, 200)}
		if o != nil {
			opts = append(opts, cb.WithObserver(o))
		}
		return cb.New(opts...)
	})
}

// change is a state change as an observer sees it.
type change struct {
	from, to string
	cause    resilience.Cause
}

// changes returns the state changes among events.
func changes(events []resilience.Event) []change {
	var out []change
	for _, e := range events {
		if e.Kind == resilience.StateChange {
			out = append(out, change{e.From, e.To, e.Cause})
		}
	}
	return out
}

// Every transition says why it happened, to the observer and in the
// Transition of WithOnStateChange.
func TestStateChangeCauses(t *testing.T) {
	slow := func(ctx context.Context) error { time.Sleep(time.Second); return nil }
	const brk = 10 * time.Second // base and maximum: the jitter stays below
	tests := []struct {
		name  string
		opts  []cb.Option
		drive func(b *cb.Breaker)
		want  []change
	}{{
		name: "failure rate",
		opts: []cb.Option{cb.WithCountWindow(4), cb.WithFailureRate(0.5, 4)},
		drive: func(b *cb.Breaker) {
			run(b, 2, succeed)
			run(b, 2, fail)
		},
		want: []change{{"closed", "open", resilience.FailureRate}},
	}, {
		name: "slow call rate",
		opts: []cb.Option{cb.WithFailureRate(1, 2), cb.WithSlowCalls(time.Second, 0.5)},
		drive: func(b *cb.Breaker) {
			run(b, 1, succeed)
			run(b, 1, slow)
		},
		want: []change{{"closed", "open", resilience.SlowCallRate}},
	}, {
		name:  "consecutive failures",
		opts:  []cb.Option{cb.WithConsecutiveFailures(3)},
		drive: func(b *cb.Breaker) { run(b, 3, fail) },
		want:  []change{{"closed", "open", resilience.ConsecutiveFailures}},
	}, {
		name: "consecutive failures before the failure rate",
		opts: []cb.Option{cb.WithConsecutiveFailures(2), cb.WithCountWindow(2), cb.WithFailureRate(0.5, 2)},
		drive: func(b *cb.Breaker) {
			run(b, 2, fail)
		},
		want: []change{{"closed", "open", resilience.ConsecutiveFailures}},
	}, {
		name: "break elapsed, then a probe failed",
		opts: []cb.Option{cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1), cb.WithBreakDuration(brk, brk)},
		drive: func(b *cb.Breaker) {
			run(b, 1, fail)
			time.Sleep(brk)
			run(b, 1, fail)
		},
		want: []change{
			{"closed", "open", resilience.ConsecutiveFailures},
			{"open", "half-open", resilience.BreakElapsed},
			{"half-open", "open", resilience.ProbeFailed},
		},
	}, {
		name: "a slow probe failed",
		opts: []cb.Option{cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(1), cb.WithBreakDuration(brk, brk),
			cb.WithSlowCalls(time.Second, 1)},
		drive: func(b *cb.Breaker) {
			run(b, 1, fail)
			time.Sleep(brk)
			run(b, 1, slow)
		},
		want: []change{
			{"closed", "open", resilience.ConsecutiveFailures},
			{"open", "half-open", resilience.BreakElapsed},
			{"half-open", "open", resilience.ProbeFailed},
		},
	}, {
		name: "probes succeeded",
		opts: []cb.Option{cb.WithConsecutiveFailures(1), cb.WithHalfOpenProbes(2), cb.WithBreakDuration(brk, brk)},
		drive: func(b *cb.Breaker) {
			run(b, 1, fail)
			time.Sleep(brk)
			run(b, 2, succeed)
		},
		want: []change{
			{"closed", "open", resilience.ConsecutiveFailures},
			{"open", "half-open", resilience.BreakElapsed},
			{"half-open", "closed", resilience.ProbesSucceeded},
		},
	}, {
		name: "break elapsed, seen by State",
		opts: []cb.Option{cb.WithConsecutiveFailures(1), cb.WithBreakDuration(brk, brk)},
		drive: func(b *cb.Breaker) {
			run(b, 1, fail)
			time.Sleep(brk)
			b.State()
		},
		want: []change{
			{"closed", "open", resilience.ConsecutiveFailures},
			{"open", "half-open", resilience.BreakElapsed},
		},
	}, {
		name: "forced",
		drive: func(b *cb.Breaker) {
			b.ForceOpen()
			b.Disable()
			b.MetricsOnly()
		},
		want: []change{
			{"closed", "forced-open", resilience.Forced},
			{"forced-open", "disabled", resilience.Forced},
			{"disabled", "metrics-only", resilience.Forced},
		},
	}, {
		name:  "opened for",
		drive: func(b *cb.Breaker) { b.OpenFor(time.Minute) },
		want:  []change{{"closed", "open", resilience.OpenedFor}},
	}, {
		name: "reset",
		drive: func(b *cb.Breaker) {
			b.ForceOpen()
			b.Reset()
			b.Reset()
		},
		want: []change{
			{"closed", "forced-open", resilience.Forced},
			{"forced-open", "closed", resilience.Reset},
			{"closed", "closed", resilience.Reset},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec policytest.Recorder
				var transitions []change
				b := cb.New(append(tt.opts, cb.WithName("payments"), cb.WithObserver(&rec),
					cb.WithOnStateChange(func(tr cb.Transition) {
						transitions = append(transitions, change{tr.From.String(), tr.To.String(), tr.Cause})
					}))...)
				tt.drive(b)
				assert.Equal(t, tt.want, changes(rec.Events()), "state changes the observer saw")
				assert.Equal(t, tt.want, transitions, "transitions WithOnStateChange saw")
				for _, e := range rec.Events() {
					assert.Equal(t, "payments", e.Name, "Name of %+v", e)
					assert.Equal(t, resilience.PolicyCircuitBreaker, e.Policy, "Policy of %+v", e)
				}
			})
		})
	}
}

// A state change into Open says how long the break is: OpenFor's duration
// exactly, a trip's within its jitter.
func TestStateChangeDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithBreakDuration(10*time.Second, time.Minute), cb.WithObserver(&rec))
		b.OpenFor(7 * time.Second)
		b.Reset()
		run(b, 1, fail)
		var opens []resilience.Event
		for _, e := range rec.Events() {
			if e.Kind == resilience.StateChange {
				if e.To == "open" {
					opens = append(opens, e)
				} else {
					assert.Zero(t, e.Delay, "Delay of a change into %s", e.To)
				}
			}
		}
		require.Len(t, opens, 2)
		assert.Equal(t, 7*time.Second, opens[0].Delay, "OpenFor(7s)")
		assert.InDelta(t, float64(10*time.Second), float64(opens[1].Delay), float64(2*time.Second), "a trip's break, within ±20%% of the base")
		assert.True(t, opens[1].Time.Equal(time.Now()), "Time of the trip %v, at %v", opens[1].Time, time.Now())
	})
}

// Each call's event says how it ended, with the call's ctx; a rejection
// carries the retry-after hint.
func TestCallEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		b := cb.New(cb.WithName("search"), cb.WithConsecutiveFailures(2), cb.WithBreakDuration(time.Minute, time.Minute),
			cb.WithObserver(&rec))
		type key struct{}
		ctx := context.WithValue(context.Background(), key{}, "call")
		_ = b.Do(ctx, func(context.Context) error { time.Sleep(time.Second); return nil })
		_ = b.Do(ctx, func(context.Context) error { return context.Canceled })
		_ = b.Do(ctx, fail)
		_ = b.Do(ctx, fail)
		time.Sleep(time.Second)
		err := b.Do(ctx, succeed)
		require.ErrorIs(t, err, cb.ErrOpen)

		events := rec.Events()
		kinds := []resilience.EventKind{resilience.Success, resilience.Ignored, resilience.Failure, resilience.Failure,
			resilience.StateChange, resilience.Rejected}
		require.Equal(t, kinds, rec.Kinds())
		assert.Equal(t, time.Second, events[0].Duration, "the success took a second")
		assert.ErrorIs(t, events[1].Err, context.Canceled)
		assert.ErrorIs(t, events[2].Err, errDown)
		rejected := events[5]
		assert.Same(t, err, rejected.Err, "the rejection is the error Do returned")
		var oe *cb.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, oe.RetryAfter(), rejected.Delay, "the rejection's retry-after hint")
		assert.Positive(t, rejected.Delay)
		for i, c := range rec.Contexts() {
			assert.Equal(t, "call", c.Value(key{}), "ctx of %+v", events[i])
			assert.Equal(t, "search", events[i].Name, "Name of %+v", events[i])
		}

		rec.Reset()
		b.ForceOpen()
		require.ErrorIs(t, b.Do(ctx, succeed), cb.ErrForcedOpen)
		events = rec.Events()
		require.Len(t, events, 2)
		assert.Equal(t, resilience.StateChange, events[0].Kind)
		assert.Equal(t, resilience.Rejected, events[1].Kind)
		assert.Zero(t, events[1].Delay, "a breaker forced open gives no hint")

		rec.Reset()
		b.Disable()
		require.ErrorIs(t, b.Do(ctx, fail), errDown)
		assert.Equal(t, []resilience.EventKind{resilience.StateChange, resilience.Failure}, rec.Kinds(),
			"a disabled breaker records nothing, and still tells of its calls")
	})
}

// The events of Allow's calls come with context.Background(), which is all
// it has; its done tells how the call ended.
func TestAllowEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		b := cb.New(cb.WithConsecutiveFailures(1), cb.WithObserver(&rec))
		done, err := b.Allow()
		require.NoError(t, err)
		time.Sleep(time.Second)
		done(nil)
		done(errDown) // a second done counts nothing, and tells nothing
		done, err = b.Allow()
		require.NoError(t, err)
		done(errDown)
		_, err = b.Allow()
		require.ErrorIs(t, err, cb.ErrOpen)
		assert.Equal(t, []resilience.EventKind{resilience.Success, resilience.Failure, resilience.StateChange, resilience.Rejected},
			rec.Kinds())
		assert.Equal(t, time.Second, rec.Events()[0].Duration)
		for _, c := range rec.Contexts() {
			assert.Equal(t, context.Background(), c)
		}
	})
}

// The observer is called with no lock held: it may read the breaker.
func TestObserverMayReadTheBreaker(t *testing.T) {
	var b *cb.Breaker
	var states []cb.State
	b = cb.New(cb.WithConsecutiveFailures(1), cb.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		states = append(states, b.Metrics().State)
	})))
	run(b, 1, fail)
	assert.Equal(t, []cb.State{cb.Open, cb.Open}, states, "at the failure and at the change it made")
}

// An observer that panics on a state change leaves the breaker as the
// panic of a WithOnStateChange function does: consistent, and the panic
// goes on.
func TestPanickingObserverOfStateChanges(t *testing.T) {
	b := cb.New(cb.WithConsecutiveFailures(1), cb.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		if e.Kind == resilience.StateChange {
			panic("observer bug")
		}
	})))
	assert.PanicsWithValue(t, "observer bug", func() { run(b, 1, fail) })
	assert.Equal(t, cb.Open, b.State())
	assert.PanicsWithValue(t, "observer bug", b.Reset)
	assert.Equal(t, cb.Closed, b.State())
	assert.NoError(t, b.Do(context.Background(), succeed))
}

// With an observer, a call allocates nothing more: its events are values.
func TestObservedCallsAllocateNothing(t *testing.T) {
	ctx := context.Background()
	nop := resilience.ObserverFunc(func(context.Context, resilience.Event) {})
	b := cb.New(cb.WithObserver(nop))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, closed, success")
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		_ = b.Do(ctx, succeed)
		_ = b.Do(ctx, succeed)
		_ = b.Do(ctx, fail)
	}), "Do, closed, a failure in three")
	b.OpenFor(time.Hour)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, open")
	b.ForceOpen()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, forced open")
	b.Disable()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }), "Do, disabled")
}

func TestWithObserverNil(t *testing.T) {
	assert.PanicsWithValue(t, "circuitbreaker: WithObserver: nil Observer", func() { cb.WithObserver(nil) })
}
