package retry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/retry"
)

func ExampleRetrier_Do() {
	r := retry.New(
		retry.WithMaxAttempts(4),
		retry.WithBackoff(retry.Constant(time.Millisecond)),
		retry.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			if e.Kind == resilience.Retry {
				fmt.Printf("attempt %d failed: %v\n", e.Attempt, e.Err)
			}
		})),
	)
	calls := 0
	err := r.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("connection reset")
		}
		return nil
	})
	fmt.Println("err:", err, "after", calls, "calls")
	// Output:
	// attempt 1 failed: connection reset
	// attempt 2 failed: connection reset
	// err: <nil> after 3 calls
}

func ExampleExhaustedError() {
	r := retry.New(retry.WithMaxAttempts(2), retry.WithBackoff(retry.Constant(0)))
	errDown := errors.New("503 Service Unavailable")
	err := r.Do(context.Background(), func(context.Context) error { return errDown })

	var ex *retry.ExhaustedError
	if errors.As(err, &ex) {
		fmt.Println(ex.Attempts, ex.Reason, ex.Err)
	}
	fmt.Println(errors.Is(err, errDown))
	// Output:
	// 2 max attempts 503 Service Unavailable
	// true
}

func ExamplePermanent() {
	r := retry.New()
	calls := 0
	err := r.Do(context.Background(), func(context.Context) error {
		calls++
		return retry.Permanent(errors.New("400 Bad Request"))
	})
	fmt.Println(err, "after", calls, "call")
	// Output: 400 Bad Request after 1 call
}

// A budget caps retries at a share of the calls made: here a dependency
// that is down gets 22 attempts for 20 calls, not the 60 that three attempts
// each would make.
func ExampleNewBudget() {
	budget := retry.NewBudget(0.1, 0) // 10% of calls, no floor
	r := retry.New(retry.WithBudget(budget), retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(0)))

	attempts := 0
	down := func(context.Context) error {
		attempts++
		return errors.New("connection refused")
	}
	for range 20 {
		_ = r.Do(context.Background(), down)
	}
	fmt.Println(attempts, "attempts for 20 calls")
	// Output: 22 attempts for 20 calls
}

// WithObserver with resilience.SlogObserver logs each retry at Debug, and a
// retrier that gives up at Warn; a success is not logged.
func ExampleWithObserver() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // for an output that does not change
			}
			return a
		},
	}))
	r := retry.New(
		retry.WithName("inventory"),
		retry.WithMaxAttempts(2),
		retry.WithBackoff(retry.Constant(time.Millisecond)),
		retry.WithObserver(resilience.SlogObserver(logger)),
	)
	_ = r.Do(context.Background(), func(context.Context) error { return nil })
	_ = r.Do(context.Background(), func(context.Context) error { return errors.New("connection reset") })
	// Output:
	// level=DEBUG msg="resilience: retry" resilience.policy=retry resilience.name=inventory resilience.event=retry resilience.attempt=1 resilience.delay=1ms error="connection reset"
	// level=WARN msg="resilience: gave up" resilience.policy=retry resilience.name=inventory resilience.event="gave up" resilience.attempt=2 error="retry: gave up after 2 attempts (max attempts): connection reset"
	// level=DEBUG msg="resilience: failure" resilience.policy=retry resilience.name=inventory resilience.event=failure resilience.attempt=2 error="retry: gave up after 2 attempts (max attempts): connection reset"
}
