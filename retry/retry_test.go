package retry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/retry"
)

var errFlaky = errors.New("flaky")

// failing returns an op that fails n times with err, then succeeds, and a
// count of its calls.
func failing(n int, err error) (resilience.Op, *atomic.Int32) {
	var calls atomic.Int32
	return func(context.Context) error {
		if int(calls.Add(1)) <= n {
			return err
		}
		return nil
	}, &calls
}

func TestContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy { return retry.New() })
	t.Run("no waits", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return retry.New(retry.WithBackoff(retry.Constant(0)), retry.WithMaxAttempts(5))
		})
	})
}

func TestRetriesUntilSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		op, calls := failing(2, errFlaky)
		require.NoError(t, retry.New().Do(context.Background(), op))
		assert.Equal(t, int32(3), calls.Load())
	})
}

func TestExhaustedKeepsTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		err := retry.New(retry.WithMaxAttempts(4)).Do(context.Background(), func(context.Context) error {
			n++
			return fmt.Errorf("attempt %d: %w", n, errFlaky)
		})
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 4, ex.Attempts)
		assert.Equal(t, retry.MaxAttempts, ex.Reason)
		assert.EqualError(t, ex.Err, "attempt 4: flaky", "the last attempt's error, not the first")
		assert.ErrorIs(t, err, errFlaky)
		assert.EqualError(t, err, "retry: gave up after 4 attempts (max attempts): attempt 4: flaky")
	})
}

func TestErrorsThatAreNeverRetried(t *testing.T) {
	rejected := fmt.Errorf("bulkhead full: %w", resilience.ErrRejected)
	tests := []struct {
		name string
		err  error
		r    *retry.Retrier
	}{
		{"Permanent", retry.Permanent(errFlaky), retry.New()},
		{"wrapped Permanent", fmt.Errorf("call: %w", retry.Permanent(errFlaky)), retry.New()},
		{"backoff.Permanent", backoff.Permanent(errFlaky), retry.New()},
		{"joined Permanent", errors.Join(errors.New("a"), retry.Permanent(errFlaky)), retry.New()},
		{"RetryIf says no", errFlaky, retry.New(retry.WithRetryIf(func(err error) bool { return !errors.Is(err, errFlaky) }))},
		{"rejection without a hint", rejected, retry.New()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, calls := failing(1, tt.err)
			err := tt.r.Do(context.Background(), op)
			assert.Same(t, tt.err, err, "returned as it is")
			assert.Equal(t, int32(1), calls.Load(), "op called once")
		})
	}
	assert.Nil(t, retry.Permanent(nil))
}

func TestCallerCancellationIsNotRetried(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	opErr := errors.New("read: connection reset")
	err := retry.New().Do(ctx, func(context.Context) error {
		calls++
		cancel()
		return opErr
	})
	assert.Same(t, opErr, err)
	assert.Equal(t, 1, calls)
}

func TestCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		errShutdown := errors.New("shutting down")
		r := retry.New(retry.WithBackoff(retry.Constant(time.Minute)))
		result := make(chan error, 1)
		op, calls := failing(10, errFlaky)
		go func() { result <- r.Do(ctx, op) }()
		time.Sleep(30 * time.Second)
		cancel(errShutdown)
		err := <-result
		assert.Equal(t, int32(1), calls.Load(), "no attempt after the cancel")
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, retry.Cancelled, ex.Reason)
		assert.ErrorIs(t, err, errFlaky, "the last error is kept")
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, errShutdown, "the cause is kept")
	})
}

// A cancel during the wait gives the budget's token back.
func TestCancelDuringWaitRefundsTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := retry.NewBudget(0, 1)
		r := retry.New(retry.WithBudget(budget), retry.WithBackoff(retry.Constant(time.Second)))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		calls := 0
		err := r.Do(ctx, func(ctx context.Context) error {
			calls++
			require.NoError(t, ctx.Err(), "op called with a done ctx")
			return errFlaky
		})
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, retry.Cancelled, ex.Reason)
		assert.Equal(t, 1, calls)

		// The one token of the floor was refunded: the next call retries.
		retries := 0
		r = retry.New(retry.WithBudget(budget), retry.WithMaxAttempts(2), retry.WithBackoff(retry.Constant(0)),
			retry.WithOnRetry(func(retry.Event) { retries++ }))
		_ = r.Do(context.Background(), func(context.Context) error { return errFlaky })
		assert.Equal(t, 1, retries)
	})
}

func TestNeverWaitsIntoADeadContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		var at []time.Duration
		r := retry.New(retry.WithMaxAttempts(10), retry.WithBackoff(retry.Constant(100*time.Millisecond)))
		err := r.Do(ctx, func(context.Context) error {
			at = append(at, time.Since(start))
			return errFlaky
		})
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, retry.Deadline, ex.Reason)
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, at)
		assert.Equal(t, 200*time.Millisecond, time.Since(start), "gave up at once instead of waiting past the deadline")
		assert.NoError(t, ctx.Err(), "returned before the deadline")
	})
}

// hinted is an error carrying a retry-after hint, like an HTTP 503 with a
// Retry-After header.
type hinted struct {
	d        time.Duration
	rejected bool
}

func (h hinted) Error() string             { return fmt.Sprintf("unavailable, retry after %v", h.d) }
func (h hinted) RetryAfter() time.Duration { return h.d }
func (h hinted) Is(target error) bool      { return h.rejected && target == resilience.ErrRejected }

func TestRetryAfterHintReplacesTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var delays []time.Duration
		r := retry.New(retry.WithBackoff(retry.Constant(100*time.Millisecond)),
			retry.WithOnRetry(func(e retry.Event) { delays = append(delays, e.Delay) }))
		calls := 0
		err := r.Do(context.Background(), func(context.Context) error {
			calls++
			if calls == 1 {
				return hinted{d: 3 * time.Second}
			}
			if calls == 2 {
				return errFlaky
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{3 * time.Second, 100 * time.Millisecond}, delays)
		assert.Equal(t, 3100*time.Millisecond, time.Since(start))
	})
}

func TestRejectionIsRetriedOnlyWhenItsHintFits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		op, calls := failing(1, hinted{d: 2 * time.Second, rejected: true})
		require.NoError(t, retry.New().Do(ctx, op), "a 2s hint fits in 5s")
		assert.Equal(t, int32(2), calls.Load())
		assert.Equal(t, 2*time.Second, time.Since(start), "the wait is the hint")

		tooLong := hinted{d: 10 * time.Second, rejected: true}
		op, calls = failing(1, tooLong)
		err := retry.New().Do(ctx, op)
		assert.Equal(t, tooLong, err, "a rejection whose hint does not fit comes back as it is")
		assert.Equal(t, int32(1), calls.Load())
		assert.Equal(t, 2*time.Second, time.Since(start), "and without waiting")

		// An error that is not a rejection, with a hint past the deadline:
		// the retrier gives up.
		op, _ = failing(1, hinted{d: 10 * time.Second})
		var ex *retry.ExhaustedError
		require.ErrorAs(t, retry.New().Do(ctx, op), &ex)
		assert.Equal(t, retry.Deadline, ex.Reason)
	})
}

// A hint of zero is no hint: an error that carries one, such as an HTTP 500
// without a Retry-After header, waits as the backoff says instead of not at
// all, and a rejection whose wait is over comes back as it is.
func TestZeroHintIsNoHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var delays []time.Duration
		r := retry.New(retry.WithBackoff(retry.Constant(100*time.Millisecond)),
			retry.WithOnRetry(func(e retry.Event) { delays = append(delays, e.Delay) }))
		op, calls := failing(2, hinted{d: 0})
		require.NoError(t, r.Do(context.Background(), op))
		assert.Equal(t, int32(3), calls.Load())
		assert.Equal(t, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, delays, "the backoff's waits")
		assert.Equal(t, 200*time.Millisecond, time.Since(start))

		over := hinted{d: 0, rejected: true}
		op, calls = failing(1, over)
		assert.Equal(t, over, r.Do(context.Background(), op), "a rejection whose wait is over, as it is")
		assert.Equal(t, int32(1), calls.Load())
		assert.Equal(t, 200*time.Millisecond, time.Since(start), "and without waiting")
	})
}

// WithOnRetry sees the retries, beside an observer.
func TestOnRetryEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []retry.Event
		var rec policytest.Recorder
		r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Exponential(time.Second, time.Minute)),
			retry.WithOnRetry(func(e retry.Event) { events = append(events, e) }), retry.WithObserver(&rec))
		op, _ := failing(5, errFlaky)
		_ = r.Do(context.Background(), op)
		assert.Equal(t, []retry.Event{
			{Attempt: 1, Err: errFlaky, Delay: time.Second},
			{Attempt: 2, Err: errFlaky, Delay: 2 * time.Second},
		}, events)
		assert.Equal(t, []resilience.EventKind{resilience.Retry, resilience.Retry, resilience.GaveUp, resilience.Failure}, rec.Kinds())
	})
}

func TestObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyRetry, func(name string, o resilience.Observer) resilience.Policy {
		// No budget: its tokens come with time, and the check compares
		// the allocations of calls made at different times.
		opts := []retry.Option{retry.WithName(name), retry.WithBudget(nil)}
		if o != nil {
			opts = append(opts, retry.WithObserver(o))
		}
		return retry.New(opts...)
	})
}

// A call tells of each retry, of giving up, and of how it ended, with the
// attempts made and the time it took, waits included.
func TestObserverEvents(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "call")
	tests := []struct {
		name string
		op   func(cancel context.CancelFunc) resilience.Op
		want []resilience.Event
	}{{
		name: "success after a retry",
		op: func(context.CancelFunc) resilience.Op {
			op, _ := failing(1, errFlaky)
			return op
		},
		want: []resilience.Event{
			{Kind: resilience.Retry, Attempt: 1, Delay: time.Second, Err: errFlaky},
			{Kind: resilience.Success, Attempt: 2, Duration: time.Second},
		},
	}, {
		name: "gave up",
		op: func(context.CancelFunc) resilience.Op {
			op, _ := failing(5, errFlaky)
			return op
		},
		want: []resilience.Event{
			{Kind: resilience.Retry, Attempt: 1, Delay: time.Second, Err: errFlaky},
			{Kind: resilience.Retry, Attempt: 2, Delay: 2 * time.Second, Err: errFlaky},
			{Kind: resilience.GaveUp, Attempt: 3, Err: &retry.ExhaustedError{Attempts: 3, Err: errFlaky, Reason: retry.MaxAttempts}},
			{Kind: resilience.Failure, Attempt: 3, Duration: 3 * time.Second,
				Err: &retry.ExhaustedError{Attempts: 3, Err: errFlaky, Reason: retry.MaxAttempts}},
		},
	}, {
		name: "permanent",
		op: func(context.CancelFunc) resilience.Op {
			return func(context.Context) error { return errPermanent }
		},
		want: []resilience.Event{{Kind: resilience.Failure, Attempt: 1, Err: errPermanent}},
	}, {
		name: "cancelled during the wait",
		op: func(cancel context.CancelFunc) resilience.Op {
			return func(context.Context) error {
				time.AfterFunc(500*time.Millisecond, cancel)
				return errFlaky
			}
		},
		want: []resilience.Event{
			{Kind: resilience.Retry, Attempt: 1, Delay: time.Second, Err: errFlaky},
			{Kind: resilience.GaveUp, Attempt: 1, Err: errCancelled},
			{Kind: resilience.Ignored, Attempt: 1, Duration: 500 * time.Millisecond, Err: errCancelled},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec policytest.Recorder
				r := retry.New(retry.WithName("ping"), retry.WithMaxAttempts(3),
					retry.WithBackoff(retry.Exponential(time.Second, time.Minute)), retry.WithObserver(&rec))
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				start := time.Now()
				err := r.Do(ctx, tt.op(cancel))
				events := rec.Events()
				require.Len(t, events, len(tt.want), "events %+v", events)
				for i, e := range events {
					want := tt.want[i]
					assert.Equal(t, want.Kind, e.Kind, "event %d: %+v", i, e)
					assert.Equal(t, want.Attempt, e.Attempt, "Attempt of %+v", e)
					assert.Equal(t, want.Delay, e.Delay, "Delay of %+v", e)
					assert.Equal(t, want.Duration, e.Duration, "Duration of %+v", e)
					assert.Equal(t, "ping", e.Name, "Name of %+v", e)
					assert.Equal(t, resilience.PolicyRetry, e.Policy, "Policy of %+v", e)
					assert.Equal(t, "call", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
					assert.False(t, e.Time.Before(start), "Time of %+v", e)
					switch want.Err {
					case nil:
						assert.NoError(t, e.Err, "Err of %+v", e)
					case errCancelled:
						var ex *retry.ExhaustedError
						if assert.ErrorAs(t, e.Err, &ex, "Err of %+v", e) {
							assert.Equal(t, retry.Cancelled, ex.Reason)
						}
					default:
						assert.Equal(t, want.Err.Error(), e.Err.Error(), "Err of %+v", e)
					}
				}
				if n := len(events); n > 0 {
					assert.Equal(t, err, events[n-1].Err, "the last event's Err is what Do returned")
				}
			})
		})
	}
}

var (
	errPermanent = retry.Permanent(errors.New("400 Bad Request"))
	// errCancelled stands for the ExhaustedError of a call cancelled
	// during a wait.
	errCancelled = errors.New("cancelled")
)

// With an observer, a call that retries allocates nothing more.
func TestObservedRetriesAllocateNothingMore(t *testing.T) {
	ctx := context.Background()
	nop := resilience.ObserverFunc(func(context.Context, resilience.Event) {})
	newRetrier := func(opts ...retry.Option) *retry.Retrier {
		return retry.New(append(opts, retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil))...)
	}
	for _, fails := range []int{0, 1, 5} {
		bare, observed := newRetrier(), newRetrier(retry.WithObserver(nop))
		run := func(r *retry.Retrier) func() {
			return func() {
				op, _ := failing(fails, errFlaky)
				_ = r.Do(ctx, op)
			}
		}
		assert.Equal(t, testing.AllocsPerRun(100, run(bare)), testing.AllocsPerRun(100, run(observed)),
			"allocations of a call whose op fails %d times, with a no-op observer and without", fails)
	}
}

// sequence is a cenkalti BackOff that yields fixed waits, then Stop.
type sequence struct {
	waits []time.Duration
	next  int
}

func (s *sequence) NextBackOff() time.Duration {
	if s.next == len(s.waits) {
		return backoff.Stop
	}
	s.next++
	return s.waits[s.next-1]
}

func (s *sequence) Reset() { s.next = 0 }

func TestBackOffFactory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var made atomic.Int32
		r := retry.New(retry.WithMaxAttempts(10), retry.WithBudget(nil), retry.WithBackOffFactory(func() backoff.BackOff {
			made.Add(1)
			return &sequence{waits: []time.Duration{time.Second, 2 * time.Second}}
		}))
		// A first attempt that succeeds makes no BackOff.
		require.NoError(t, r.Do(context.Background(), func(context.Context) error { return nil }))
		assert.Zero(t, made.Load())

		// Concurrent calls each get a BackOff of their own (run with -race).
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				start := time.Now()
				op, calls := failing(10, errFlaky)
				var ex *retry.ExhaustedError
				if assert.ErrorAs(t, r.Do(context.Background(), op), &ex) {
					assert.Equal(t, retry.BackoffStopped, ex.Reason)
				}
				assert.Equal(t, int32(3), calls.Load())
				assert.Equal(t, 3*time.Second, time.Since(start))
			})
		}
		wg.Wait()
		assert.Equal(t, int32(8), made.Load())
	})
}

// The budget stops a retry storm: a dependency that fails every call, and a
// thousand callers that would each make three attempts.
func TestBudgetStopsARetryStorm(t *testing.T) {
	const callers = 1000
	synctest.Test(t, func(t *testing.T) {
		run := func(r *retry.Retrier) (attempts int64, outOfBudget int64) {
			var n, out atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					err := r.Do(context.Background(), func(context.Context) error { n.Add(1); return errFlaky })
					var ex *retry.ExhaustedError
					if errors.As(err, &ex) && ex.Reason == retry.OutOfBudget {
						out.Add(1)
					}
				})
			}
			wg.Wait()
			return n.Load(), out.Load()
		}
		opts := []retry.Option{retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(0))}

		attempts, _ := run(retry.New(append(opts, retry.WithBudget(nil))...))
		assert.Equal(t, int64(3*callers), attempts, "without a budget every caller makes three attempts")

		budget := retry.NewBudget(0.2, 10)
		attempts, outOfBudget := run(retry.New(append(opts, retry.WithBudget(budget))...))
		// A fifth of a token per call, plus the ten of a new budget's floor;
		// no time passes, so the floor does not refill.
		assert.LessOrEqual(t, attempts, int64(callers+callers/5+10), "attempts with a 20%% budget")
		assert.GreaterOrEqual(t, attempts, int64(callers+10), "the floor's retries at least")
		assert.Positive(t, outOfBudget, "callers told the budget ran out")
	})
}

func TestBudgetFloorRefillsOverTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		retries := 0
		r := retry.New(retry.WithBudget(retry.NewBudget(0, 2)), // the floor only: two retries a second
			retry.WithMaxAttempts(10), retry.WithBackoff(retry.Constant(0)),
			retry.WithOnRetry(func(retry.Event) { retries++ }))
		fail := func(context.Context) error { return errFlaky }
		_ = r.Do(context.Background(), fail)
		assert.Equal(t, 2, retries, "a new budget's floor")
		time.Sleep(500 * time.Millisecond)
		_ = r.Do(context.Background(), fail)
		assert.Equal(t, 3, retries, "half a second refills one token")
		for range 10 {
			time.Sleep(time.Second)
			_ = r.Do(context.Background(), fail)
		}
		assert.Equal(t, 23, retries, "each second refills two, and the bucket holds two")
		time.Sleep(time.Hour)
		_ = r.Do(context.Background(), fail)
		assert.Equal(t, 25, retries, "an idle hour still refills only two")
	})
}

func TestBudgetIsSharedAcrossRetriers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.NewBudget(0, 3)
		retries := 0
		count := retry.WithOnRetry(func(retry.Event) { retries++ })
		a := retry.New(retry.WithBudget(b), retry.WithMaxAttempts(10), retry.WithBackoff(retry.Constant(0)), count)
		c := retry.New(retry.WithBudget(b), retry.WithMaxAttempts(10), retry.WithBackoff(retry.Constant(0)), count)
		fail := func(context.Context) error { return errFlaky }
		_ = a.Do(context.Background(), fail)
		_ = c.Do(context.Background(), fail)
		assert.Equal(t, 3, retries, "both retriers draw from the same three tokens")
	})
}

func TestBudgetSavingsAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.NewBudget(1, 0) // a token per call, no floor
		r := retry.New(retry.WithBudget(b), retry.WithMaxAttempts(1000), retry.WithBackoff(retry.Constant(0)))
		for range 1000 { // a long healthy spell
			require.NoError(t, r.Do(context.Background(), func(context.Context) error { return nil }))
		}
		retries := 0
		r = retry.New(retry.WithBudget(b), retry.WithMaxAttempts(1000), retry.WithBackoff(retry.Constant(0)),
			retry.WithOnRetry(func(retry.Event) { retries++ }))
		_ = r.Do(context.Background(), func(context.Context) error { return errFlaky })
		assert.Equal(t, 10, retries, "1001 tokens deposited, but at most 10 are saved")
	})
}

func TestSuccessAllocatesNothing(t *testing.T) {
	r := retry.New()
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = r.Do(ctx, op) }))

	// Two failures, then success, with no waits: nothing either.
	r = retry.New(retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil))
	n := 0
	flaky := func(context.Context) error {
		n++
		if n%3 != 0 {
			return errFlaky
		}
		return nil
	}
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = r.Do(ctx, flaky) }))
}

func TestOptionsPanicOnBadValues(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"retry: WithMaxAttempts(0): want n >= 1", func() { retry.WithMaxAttempts(0) }},
		{"retry: WithRetryIf: nil f", func() { retry.WithRetryIf(nil) }},
		{"retry: WithBackOffFactory: nil newBackOff", func() { retry.WithBackOffFactory(nil) }},
		{"retry: WithOnRetry: nil f", func() { retry.WithOnRetry(nil) }},
		{"retry: WithObserver: nil Observer", func() { retry.WithObserver(nil) }},
		{"retry: WithBudget: zero Budget; use NewBudget", func() { retry.WithBudget(&retry.Budget{}) }},
		{"retry: New: nil Option", func() { retry.New(retry.WithMaxAttempts(2), nil) }},
		{"retry: Constant(-1s): want d >= 0", func() { retry.Constant(-time.Second) }},
		{"retry: Exponential(0s, 1s): want 0 < base <= maxDelay", func() { retry.Exponential(0, time.Second) }},
		{"retry: FullJitter(2s, 1s): want 0 < base <= maxDelay", func() { retry.FullJitter(2*time.Second, time.Second) }},
		{"retry: EqualJitter(-1s, 1s): want 0 < base <= maxDelay", func() { retry.EqualJitter(-time.Second, time.Second) }},
		{"retry: DecorrelatedJitter(0s, 0s): want 0 < base <= maxDelay", func() { retry.DecorrelatedJitter(0, 0) }},
		{"retry: NewBudget(0, 0): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0", func() { retry.NewBudget(0, 0) }},
		{"retry: NewBudget(-0.1, 10): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0", func() { retry.NewBudget(-0.1, 10) }},
		{"retry: NewBudget(1e-07, 10): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0", func() { retry.NewBudget(1e-7, 10) }},
		{"retry: NewBudget(0.2, -1): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0", func() { retry.NewBudget(0.2, -1) }},
		{"retry: NewBudget(0.2, 1000001): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0", func() { retry.NewBudget(0.2, 1_000_001) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// A nil op and a zero Retrier panic at once, even with a done ctx.
func TestDoPanicsOnNilOpAndZeroRetrier(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op := func(context.Context) error { return nil }
	assert.PanicsWithValue(t, "retry: Retrier.Do: nil Op", func() { _ = retry.New().Do(ctx, nil) })
	assert.PanicsWithValue(t, "retry: zero Retrier; use New", func() { _ = new(retry.Retrier).Do(ctx, op) })
	// Without a budget a Retrier made by New still works.
	assert.NoError(t, retry.New(retry.WithBudget(nil)).Do(context.Background(), op))
}

// The zero Backoff waits nothing.
func TestZeroBackoff(t *testing.T) {
	var b retry.Backoff
	for attempt := 1; attempt <= 3; attempt++ {
		assert.Zero(t, b.Delay(attempt, time.Second), "attempt %d", attempt)
	}
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		r := retry.New(retry.WithBackoff(b), retry.WithBudget(nil))
		start := time.Now()
		err := r.Do(context.Background(), func(context.Context) error {
			if calls++; calls < 3 {
				return errFlaky
			}
			return nil
		})
		assert.NoError(t, err)
		assert.Equal(t, 3, calls)
		assert.Zero(t, time.Since(start), "virtual time spent waiting")
	})
}

func TestReasonString(t *testing.T) {
	tests := []struct {
		r    retry.Reason
		want string
	}{
		{retry.MaxAttempts, "max attempts"},
		{retry.Deadline, "deadline"},
		{retry.OutOfBudget, "out of budget"},
		{retry.BackoffStopped, "backoff stopped"},
		{retry.Cancelled, "cancelled"},
		{retry.Cancelled + 1, "Reason(5)"},
		{retry.Reason(255), "Reason(255)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.r.String(), "Reason %d", uint8(tt.r))
	}
	assert.EqualError(t, &retry.ExhaustedError{Attempts: 1, Err: errFlaky, Reason: retry.OutOfBudget},
		"retry: gave up after 1 attempt (out of budget): flaky")
}
