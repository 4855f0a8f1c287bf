package timeout_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/timeout"
)

// sleep waits d or until ctx is done, like a call that honours its ctx.
func sleep(ctx context.Context, d time.Duration) error {
	if !wait.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func TestContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy { return timeout.New(time.Second) })
}

func TestWithinTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opErr := errors.New("not found")
		to := timeout.New(time.Second)
		assert.NoError(t, to.Do(context.Background(), func(ctx context.Context) error { return sleep(ctx, 999*time.Millisecond) }))
		err := to.Do(context.Background(), func(context.Context) error { return opErr })
		assert.Same(t, opErr, err, "an error within the deadline comes back as it is")
	})
}

func TestDeadlinePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var overruns []timeout.Overrun
		to := timeout.New(time.Second, timeout.WithOnOverrun(func(o timeout.Overrun) { overruns = append(overruns, o) }))
		start := time.Now()
		var cause error
		err := to.Do(context.Background(), func(ctx context.Context) error {
			err := sleep(ctx, time.Hour)
			cause = context.Cause(ctx)
			return err
		})
		assert.Equal(t, time.Second, time.Since(start))
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.EqualError(t, err, "timeout: exceeded 1s: context deadline exceeded")
		assert.ErrorIs(t, cause, timeout.ErrExceeded, "op's ctx gives ErrExceeded as its cause")
		assert.ErrorIs(t, cause, context.DeadlineExceeded)
		require.Len(t, overruns, 1)
		assert.Equal(t, timeout.Overrun{Timeout: time.Second, By: 0, Err: context.DeadlineExceeded}, overruns[0])
	})
}

// An op that fails with its ctx's cause, as the Op contract allows, gets it
// back as it is: the cause names the timeout once, not twice.
func TestDeadlinePassesWithTheCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := timeout.New(time.Second)
		err := to.Do(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("get: %w", context.Cause(ctx))
		})
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.EqualError(t, err, "get: timeout: exceeded 1s")
	})
}

// An op that ignores its ctx is waited for, never abandoned, and reported.
func TestOpThatIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var overruns []timeout.Overrun
		to := timeout.New(time.Second, timeout.WithOnOverrun(func(o timeout.Overrun) { overruns = append(overruns, o) }))
		start := time.Now()
		stubborn := errors.New("read: i/o timeout")
		returned := false
		err := to.Do(context.Background(), func(ctx context.Context) error {
			time.Sleep(5 * time.Second) // ignores ctx
			returned = true
			return stubborn
		})
		assert.True(t, returned, "Do returned before op")
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "even though op returned an error of its own")
		assert.ErrorIs(t, err, stubborn)
		assert.Equal(t, []timeout.Overrun{{Timeout: time.Second, By: 4 * time.Second, Err: stubborn}}, overruns)

		// Late success is success, and still reported.
		overruns = nil
		err = to.Do(context.Background(), func(ctx context.Context) error { time.Sleep(2 * time.Second); return nil })
		assert.NoError(t, err)
		assert.Equal(t, []timeout.Overrun{{Timeout: time.Second, By: time.Second}}, overruns)
	})
}

func TestParentDeadlineFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		overrun := false
		to := timeout.New(time.Minute, timeout.WithOnOverrun(func(timeout.Overrun) { overrun = true }))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var opCtx context.Context
		err := to.Do(ctx, func(c context.Context) error { opCtx = c; return sleep(c, time.Hour) })
		assert.Same(t, ctx, opCtx, "the caller's sooner deadline stands: no ctx or timer of our own")
		assert.Equal(t, context.DeadlineExceeded, err, "the caller's deadline: its error as it is")
		assert.NotErrorIs(t, err, timeout.ErrExceeded)
		assert.False(t, overrun)
	})
}

func TestCallerCancelsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := timeout.New(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		err := to.Do(ctx, func(c context.Context) error {
			time.AfterFunc(time.Second, cancel)
			return sleep(c, time.Hour)
		})
		assert.Equal(t, context.Canceled, err)
		assert.NotErrorIs(t, err, timeout.ErrExceeded)
	})
}

// The caller's ctx ending after the timeout's own deadline does not hide
// the timeout, nor the overrun.
func TestCallerEndsAfterTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var overruns []timeout.Overrun
		to := timeout.New(time.Second, timeout.WithOnOverrun(func(o timeout.Overrun) { overruns = append(overruns, o) }))
		stubborn := errors.New("read: i/o timeout")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := to.Do(ctx, func(context.Context) error {
			time.Sleep(10 * time.Second) // ignores ctx past both deadlines
			return stubborn
		})
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.ErrorIs(t, err, stubborn)
		assert.Equal(t, []timeout.Overrun{{Timeout: time.Second, By: 9 * time.Second, Err: stubborn}}, overruns)
	})
}

// Nested timeouts: when the outer one fires, the inner one does not claim it.
func TestNestedTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		outer, inner := timeout.New(time.Second), timeout.New(time.Minute)
		var innerErr error
		err := outer.Do(context.Background(), func(ctx context.Context) error {
			innerErr = inner.Do(ctx, func(ctx context.Context) error { return sleep(ctx, time.Hour) })
			return innerErr
		})
		assert.Equal(t, context.DeadlineExceeded, innerErr, "the inner timeout passes the outer's deadline through")
		assert.EqualError(t, err, "timeout: exceeded 1s: context deadline exceeded")
	})
}

func TestNewPanicsOnBadDuration(t *testing.T) {
	assert.PanicsWithValue(t, "timeout: New(0s): want d > 0", func() { timeout.New(0) })
	assert.PanicsWithValue(t, "timeout: New(-1s): want d > 0", func() { timeout.New(-time.Second) })
	assert.PanicsWithValue(t, "timeout: New: nil Option", func() { timeout.New(time.Second, nil) })
	assert.PanicsWithValue(t, "timeout: WithOnOverrun: nil f", func() { timeout.WithOnOverrun(nil) })
	assert.PanicsWithValue(t, "timeout: WithObserver: nil Observer", func() { timeout.WithObserver(nil) })
}

// A nil op and a zero Timeout panic at once, even with a done ctx.
func TestDoPanicsOnNilOpAndZeroTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op := func(context.Context) error { return nil }
	assert.PanicsWithValue(t, "timeout: Timeout.Do: nil Op", func() { _ = timeout.New(time.Second).Do(ctx, nil) })
	assert.PanicsWithValue(t, "timeout: zero Timeout; use New", func() { _ = new(timeout.Timeout).Do(ctx, op) })
}

// An op whose result outlives it keeps its ctx: Do returns without
// cancelling it, and the result's release does.
func TestKeptContextOutlivesDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := timeout.New(time.Second)
		var (
			kept    context.Context
			release func()
		)
		require.NoError(t, to.Do(context.Background(), func(ctx context.Context) error {
			var ok bool
			release, ok = resilience.Keep(ctx)
			require.True(t, ok, "the timeout's ctx is keepable")
			kept = ctx
			return nil
		}))
		time.Sleep(999 * time.Millisecond)
		assert.NoError(t, kept.Err(), "still alive after Do returned, within the deadline")
		release()
		assert.ErrorIs(t, kept.Err(), context.Canceled, "released: cancelled at once, before the deadline")
		assert.NotErrorIs(t, context.Cause(kept), timeout.ErrExceeded)
		release()
	})
}

// A kept ctx still ends at the deadline, with the timeout's cause, and a
// release after that does no harm.
func TestKeptContextEndsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := timeout.New(time.Second)
		var (
			kept    context.Context
			release func()
		)
		require.NoError(t, to.Do(context.Background(), func(ctx context.Context) error {
			release, _ = resilience.Keep(ctx)
			kept = ctx
			return nil
		}))
		start := time.Now()
		<-kept.Done()
		assert.Equal(t, time.Second, time.Since(start))
		assert.ErrorIs(t, kept.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(kept), timeout.ErrExceeded)
		release()
		release()
	})
}

// A ctx that nobody kept ends when Do returns, as before.
func TestContextNotKeptEndsWithDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen context.Context
		require.NoError(t, timeout.New(time.Second).Do(context.Background(), func(ctx context.Context) error {
			seen = ctx
			return nil
		}))
		assert.ErrorIs(t, seen.Err(), context.Canceled)
		_, ok := resilience.Keep(seen)
		assert.False(t, ok, "too late to keep")
	})
}

// Keeping the ctx of an attempt timeout inside a total one holds both: the
// total's end would otherwise cancel the attempt's ctx beneath.
func TestKeepThroughNestedTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		total, attempt := timeout.New(time.Minute), timeout.New(time.Second)
		var (
			kept    context.Context
			release func()
		)
		require.NoError(t, total.Do(context.Background(), func(ctx context.Context) error {
			return attempt.Do(ctx, func(ctx context.Context) error {
				release, _ = resilience.Keep(ctx)
				kept = ctx
				return nil
			})
		}))
		time.Sleep(500 * time.Millisecond)
		assert.NoError(t, kept.Err(), "neither timeout cancelled it on return")
		release()
		assert.ErrorIs(t, kept.Err(), context.Canceled)
	})
}

// The keepable ctx costs one allocation more than context.WithTimeout's
// four (the timer context, its timer and their two closures).
func TestDoAllocations(t *testing.T) {
	to := timeout.New(time.Hour)
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	allocs := testing.AllocsPerRun(1000, func() { _ = to.Do(ctx, op) })
	assert.LessOrEqual(t, allocs, 5.0)
}

func TestObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyTimeout, func(name string, o resilience.Observer) resilience.Policy {
		opts := []timeout.Option{timeout.WithName(name)}
		if o != nil {
			opts = append(opts, timeout.WithObserver(o))
		}
		return timeout.New(time.Minute, opts...)
	})
}

// Each call ends with an event that says how, after an Overrun event if
// its deadline passed before op returned.
func TestObserverEvents(t *testing.T) {
	opErr := errors.New("not found")
	tests := []struct {
		name     string
		deadline time.Duration // of the caller's ctx, if any
		cancelAt time.Duration // when the caller cancels, if it does
		op       resilience.Op
		want     []resilience.Event
	}{{
		name: "within the deadline",
		op:   func(ctx context.Context) error { return sleep(ctx, 500*time.Millisecond) },
		want: []resilience.Event{{Kind: resilience.Success, Duration: 500 * time.Millisecond}},
	}, {
		name: "failed within the deadline",
		op:   func(context.Context) error { return opErr },
		want: []resilience.Event{{Kind: resilience.Failure, Err: opErr}},
	}, {
		name: "timed out",
		op:   func(ctx context.Context) error { return sleep(ctx, time.Hour) },
		want: []resilience.Event{
			{Kind: resilience.Overrun, Duration: time.Second, Err: context.DeadlineExceeded},
			{Kind: resilience.TimedOut, Duration: time.Second, Err: errExceeded},
		},
	}, {
		name: "late success",
		op:   func(context.Context) error { time.Sleep(3 * time.Second); return nil },
		want: []resilience.Event{
			{Kind: resilience.Overrun, Delay: 2 * time.Second, Duration: time.Second},
			{Kind: resilience.Success, Duration: 3 * time.Second},
		},
	}, {
		name:     "the caller's deadline first",
		deadline: 500 * time.Millisecond,
		op:       func(ctx context.Context) error { return sleep(ctx, time.Hour) },
		want:     []resilience.Event{{Kind: resilience.Ignored, Duration: 500 * time.Millisecond, Err: context.DeadlineExceeded}},
	}, {
		name:     "the caller cancels first",
		cancelAt: 500 * time.Millisecond,
		op:       func(ctx context.Context) error { return sleep(ctx, time.Hour) },
		want:     []resilience.Event{{Kind: resilience.Ignored, Duration: 500 * time.Millisecond, Err: context.Canceled}},
	}, {
		name:     "the caller's deadline after this one",
		deadline: 5 * time.Second,
		op:       func(context.Context) error { time.Sleep(10 * time.Second); return opErr },
		want: []resilience.Event{
			{Kind: resilience.Overrun, Delay: 9 * time.Second, Duration: time.Second, Err: opErr},
			{Kind: resilience.TimedOut, Duration: 10 * time.Second, Err: errExceeded},
		},
	}}
	type key struct{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec policytest.Recorder
				to := timeout.New(time.Second, timeout.WithName("lookup"), timeout.WithObserver(&rec))
				ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "call"))
				defer cancel()
				if tt.deadline > 0 {
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				if tt.cancelAt > 0 {
					time.AfterFunc(tt.cancelAt, cancel)
				}
				err := to.Do(ctx, tt.op)
				events := rec.Events()
				require.Len(t, events, len(tt.want), "events %+v", events)
				for i, e := range events {
					want := tt.want[i]
					assert.Equal(t, want.Kind, e.Kind, "event %d: %+v", i, e)
					assert.Equal(t, want.Delay, e.Delay, "Delay of %+v", e)
					assert.Equal(t, want.Duration, e.Duration, "Duration of %+v", e)
					assert.Equal(t, "lookup", e.Name, "Name of %+v", e)
					assert.Equal(t, resilience.PolicyTimeout, e.Policy, "Policy of %+v", e)
					assert.True(t, e.Time.Equal(time.Now()), "Time of %+v, at %v", e, time.Now())
					assert.Equal(t, "call", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
					switch want.Err {
					case nil:
						assert.NoError(t, e.Err, "Err of %+v", e)
					case errExceeded:
						assert.ErrorIs(t, e.Err, timeout.ErrExceeded, "Err of %+v", e)
					default:
						assert.ErrorIs(t, e.Err, want.Err, "Err of %+v", e)
					}
				}
				assert.Equal(t, err, events[len(events)-1].Err, "the last event's Err is what Do returned")
			})
		})
	}
}

// errExceeded stands for an error that matches timeout.ErrExceeded.
var errExceeded = errors.New("exceeded")

// With an observer, a call allocates nothing more.
func TestObservedCallsAllocateNothingMore(t *testing.T) {
	ctx := context.Background()
	nop := resilience.ObserverFunc(func(context.Context, resilience.Event) {})
	bare, observed := timeout.New(time.Second), timeout.New(time.Second, timeout.WithObserver(nop))
	op := func(context.Context) error { return nil }
	assert.Equal(t, testing.AllocsPerRun(1000, func() { _ = bare.Do(ctx, op) }),
		testing.AllocsPerRun(1000, func() { _ = observed.Do(ctx, op) }))
}
