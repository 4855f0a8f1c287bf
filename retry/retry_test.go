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

func TestOnRetryEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []retry.Event
		r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Exponential(time.Second, time.Minute)),
			retry.WithOnRetry(func(e retry.Event) { events = append(events, e) }))
		op, _ := failing(5, errFlaky)
		_ = r.Do(context.Background(), op)
		assert.Equal(t, []retry.Event{
			{Attempt: 1, Err: errFlaky, Delay: time.Second},
			{Attempt: 2, Err: errFlaky, Delay: 2 * time.Second},
		}, events)
	})
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
		{"retry: WithRetryIf(nil)", func() { retry.WithRetryIf(nil) }},
		{"retry: WithBackOffFactory(nil)", func() { retry.WithBackOffFactory(nil) }},
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

func TestReasonString(t *testing.T) {
	assert.Equal(t, "out of budget", retry.OutOfBudget.String())
	assert.Equal(t, "Reason(9)", retry.Reason(9).String())
	assert.EqualError(t, &retry.ExhaustedError{Attempts: 1, Err: errFlaky, Reason: retry.OutOfBudget},
		"retry: gave up after 1 attempt (out of budget): flaky")
}
