package fallback_test

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
	"github.com/resilience-go/resilience/fallback"
	"github.com/resilience-go/resilience/internal/policytest"
)

var errDown = errors.New("dependency down")

func TestContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy {
		return fallback.New(func(ctx context.Context, err error) error {
			return fmt.Errorf("and the fallback failed too: %w", err)
		})
	})
	t.Run("Failover", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
				return fallback.Failover(op, op)(ctx)
			})
		})
	})
}

func TestFallbackAnswersFailures(t *testing.T) {
	var got error
	f := fallback.New(func(ctx context.Context, err error) error { got = err; return nil })
	require.NoError(t, f.Do(context.Background(), func(context.Context) error { return errDown }))
	assert.Same(t, errDown, got, "the fallback sees op's error")

	got = nil
	require.NoError(t, f.Do(context.Background(), func(context.Context) error { return nil }))
	assert.Nil(t, got, "no fallback for a success")
}

func TestFallbackIf(t *testing.T) {
	errNotFound := errors.New("not found")
	f := fallback.New(func(context.Context, error) error { return nil },
		fallback.WithFallbackIf(func(err error) bool { return !errors.Is(err, errNotFound) }))
	assert.NoError(t, f.Do(context.Background(), func(context.Context) error { return errDown }))
	assert.Same(t, errNotFound, f.Do(context.Background(), func(context.Context) error { return errNotFound }))
}

func TestNoFallbackForTheCallersCancellation(t *testing.T) {
	called := false
	f := fallback.New(func(context.Context, error) error { called = true; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	err := f.Do(ctx, func(context.Context) error { cancel(); return errDown })
	assert.Same(t, errDown, err)
	assert.False(t, called, "the caller has gone: nobody to answer")
}

func TestFallbackAnswersAfterTheCallersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		called := false
		f := fallback.New(func(context.Context, error) error { called = true; return nil })
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := f.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		assert.NoError(t, err, "the dependency was too slow for the caller: the fallback answers")
		assert.True(t, called)
	})
}

func TestFallbackAnswersRejections(t *testing.T) {
	rejected := fmt.Errorf("breaker open: %w", resilience.ErrRejected)
	f := fallback.New(func(ctx context.Context, err error) error { return nil })
	assert.NoError(t, f.Do(context.Background(), func(context.Context) error { return rejected }))
}

func TestPanicIsNotAnswered(t *testing.T) {
	called := false
	f := fallback.New(func(context.Context, error) error { called = true; return nil })
	assert.PanicsWithValue(t, "boom", func() {
		_ = f.Do(context.Background(), func(context.Context) error { panic("boom") })
	})
	assert.False(t, called)
}

func TestDoGeneric(t *testing.T) {
	ctx := context.Background()
	cached := func(ctx context.Context, err error) (string, error) { return "cached", nil }

	v, err := fallback.Do(ctx, nil, func(context.Context) (string, error) { return "", errDown }, cached)
	require.NoError(t, err)
	assert.Equal(t, "cached", v)

	v, err = fallback.Do(ctx, nil, func(context.Context) (string, error) { return "fresh", nil }, cached)
	require.NoError(t, err)
	assert.Equal(t, "fresh", v)

	// Under a policy: the policy's rejection is answered too.
	refuse := resilience.PolicyFunc(func(context.Context, resilience.Op) error {
		return fmt.Errorf("refused: %w", resilience.ErrRejected)
	})
	v, err = fallback.Do(ctx, refuse, func(context.Context) (string, error) { return "fresh", nil }, cached)
	require.NoError(t, err)
	assert.Equal(t, "cached", v)

	// With a predicate that declines.
	v, err = fallback.Do(ctx, nil, func(context.Context) (string, error) { return "partial", errDown }, cached,
		fallback.WithFallbackIf(func(error) bool { return false }))
	assert.Same(t, errDown, err)
	assert.Equal(t, "partial", v, "the value comes back with the error")

	// A done ctx calls neither.
	done, cancel := context.WithCancel(ctx)
	cancel()
	v, err = fallback.Do(done, nil, func(context.Context) (string, error) { return "fresh", nil }, cached)
	assert.Equal(t, context.Canceled, err)
	assert.Empty(t, v)
}

func TestFailover(t *testing.T) {
	var order []string
	endpoint := func(name string, err error) resilience.Op {
		return func(context.Context) error { order = append(order, name); return err }
	}
	errA, errB := errors.New("a down"), errors.New("b down")

	err := fallback.Failover(endpoint("a", errA), endpoint("b", nil), endpoint("c", nil))(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, order, "stops at the first success")

	order = nil
	err = fallback.Failover(endpoint("a", errA), endpoint("b", errB))(context.Background())
	assert.ErrorIs(t, err, errA)
	assert.ErrorIs(t, err, errB)
	assert.EqualError(t, err, "a down\nb down", "every error, in order")

	// The caller's cancellation stops the failover.
	order = nil
	ctx, cancel := context.WithCancel(context.Background())
	err = fallback.Failover(
		func(context.Context) error { order = append(order, "a"); cancel(); return errA },
		endpoint("b", nil),
	)(ctx)
	assert.Equal(t, []string{"a"}, order)
	assert.ErrorIs(t, err, errA)
	assert.ErrorIs(t, err, context.Canceled)
}

// Each endpoint behind a policy of its own: an open breaker on the primary
// sends the call to the secondary at once.
func TestFailoverWithPolicies(t *testing.T) {
	open := resilience.PolicyFunc(func(context.Context, resilience.Op) error {
		return fmt.Errorf("primary breaker open: %w", resilience.ErrRejected)
	})
	calls := 0
	op := fallback.Failover(
		resilience.Wrap(open, func(context.Context) error { calls++; return nil }),
		resilience.Wrap(resilience.Chain(), func(context.Context) error { calls += 10; return nil }),
	)
	require.NoError(t, op(context.Background()))
	assert.Equal(t, 10, calls, "only the secondary ran")
}

func TestBadArgumentsPanic(t *testing.T) {
	assert.PanicsWithValue(t, "fallback: New(nil)", func() { fallback.New(nil) })
	assert.PanicsWithValue(t, "fallback: WithFallbackIf(nil)", func() { fallback.WithFallbackIf(nil) })
	assert.PanicsWithValue(t, "fallback: Failover()", func() { fallback.Failover() })
	assert.PanicsWithValue(t, "fallback: Failover: op 1 is nil", func() {
		fallback.Failover(func(context.Context) error { return nil }, nil)
	})
}
