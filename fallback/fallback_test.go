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
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	alt := func(context.Context, error) (int, error) { return 2, nil }
	tests := []struct {
		want string
		f    func()
	}{
		{"fallback: New: nil fallback", func() { fallback.New(nil) }},
		{"fallback: New: nil Option", func() { fallback.New(func(context.Context, error) error { return nil }, nil) }},
		{"fallback: WithFallbackIf: nil pred", func() { fallback.WithFallbackIf(nil) }},
		{"fallback: WithObserver: nil Observer", func() { fallback.WithObserver(nil) }},
		{"fallback: Do: nil fn", func() { _, _ = fallback.Do(ctx, nil, nil, alt) }},
		{"fallback: Do: nil fallback", func() { _, _ = fallback.Do(ctx, nil, fn, nil) }},
		{"fallback: Do: nil Option", func() { _, _ = fallback.Do(ctx, nil, fn, alt, nil) }},
		{"fallback: Failover()", func() { fallback.Failover() }},
		{"fallback: Failover: nil Op at index 1", func() { fallback.Failover(func(context.Context) error { return nil }, nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// A nil op and a zero Fallback panic at once, even with a done ctx.
func TestDoPanicsOnNilOpAndZeroFallback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op := func(context.Context) error { return nil }
	f := fallback.New(func(context.Context, error) error { return nil })
	assert.PanicsWithValue(t, "fallback: Fallback.Do: nil Op", func() { _ = f.Do(ctx, nil) })
	assert.PanicsWithValue(t, "fallback: zero Fallback; use New", func() { _ = new(fallback.Fallback).Do(ctx, op) })
}

func TestObserved(t *testing.T) {
	alt := func(ctx context.Context, err error) error { return fmt.Errorf("and the fallback failed too: %w", err) }
	options := func(name string, o resilience.Observer) []fallback.Option {
		opts := []fallback.Option{fallback.WithName(name)}
		if o != nil {
			opts = append(opts, fallback.WithObserver(o))
		}
		return opts
	}
	policytest.RunObserved(t, resilience.PolicyFallback, func(name string, o resilience.Observer) resilience.Policy {
		return fallback.New(alt, options(name, o)...)
	})
	t.Run("Do", func(t *testing.T) {
		policytest.RunObserved(t, resilience.PolicyFallback, func(name string, o resilience.Observer) resilience.Policy {
			opts := options(name, o)
			return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
				_, err := fallback.Do(ctx, nil,
					func(ctx context.Context) (int, error) { return 1, op(ctx) },
					func(ctx context.Context, err error) (int, error) { return 0, alt(ctx, err) },
					opts...)
				return err
			})
		})
	})
}

// A call the fallback answered ends with FellBack and the error it
// answered, its Duration the fallback's time included; one it did not
// answer with the op's outcome.
func TestObserverEvents(t *testing.T) {
	errBadRequest := errors.New("400 Bad Request")
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "call")
	tests := []struct {
		name string
		do   func(ctx context.Context, o resilience.Observer, op resilience.Op) error
	}{
		{"Fallback", func(ctx context.Context, o resilience.Observer, op resilience.Op) error {
			return fallback.New(func(context.Context, error) error { time.Sleep(time.Second); return nil },
				fallback.WithName("price"), fallback.WithObserver(o),
				fallback.WithFallbackIf(func(err error) bool { return err != errBadRequest })).Do(ctx, op)
		}},
		{"Do", func(ctx context.Context, o resilience.Observer, op resilience.Op) error {
			_, err := fallback.Do(ctx, nil, func(ctx context.Context) (int, error) { return 1, op(ctx) },
				func(context.Context, error) (int, error) { time.Sleep(time.Second); return 2, nil },
				fallback.WithName("price"), fallback.WithObserver(o),
				fallback.WithFallbackIf(func(err error) bool { return err != errBadRequest }))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec policytest.Recorder
				require.NoError(t, tt.do(ctx, &rec, func(context.Context) error { time.Sleep(time.Second); return errDown }))
				require.ErrorIs(t, tt.do(ctx, &rec, func(context.Context) error { return errBadRequest }), errBadRequest)
				cctx, cancel := context.WithCancel(ctx)
				require.ErrorIs(t, tt.do(cctx, &rec, func(ctx context.Context) error { cancel(); return ctx.Err() }), context.Canceled)
				require.NoError(t, tt.do(ctx, &rec, func(context.Context) error { return nil }))

				events := rec.Events()
				require.Equal(t, []resilience.EventKind{resilience.FellBack, resilience.Failure, resilience.Ignored, resilience.Success},
					rec.Kinds())
				assert.Equal(t, errDown, events[0].Err, "the error the fallback answered")
				assert.Equal(t, 2*time.Second, events[0].Duration, "the op's second and the fallback's")
				assert.Equal(t, errBadRequest, events[1].Err)
				for i, e := range events {
					assert.Equal(t, "price", e.Name, "Name of %+v", e)
					assert.Equal(t, resilience.PolicyFallback, e.Policy, "Policy of %+v", e)
					assert.Equal(t, "call", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
				}
			})
		})
	}
}

// With an observer, a call and a call the fallback answers allocate
// nothing.
func TestObservedCallsAllocateNothing(t *testing.T) {
	ctx := context.Background()
	f := fallback.New(func(context.Context, error) error { return nil },
		fallback.WithObserver(resilience.ObserverFunc(func(context.Context, resilience.Event) {})))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = f.Do(ctx, func(context.Context) error { return nil }) }))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = f.Do(ctx, func(context.Context) error { return errDown }) }))
}
