package timeout_test

import (
	"context"
	"errors"
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
}
