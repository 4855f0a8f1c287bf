package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/retry"
)

func ExampleRetrier_Do() {
	r := retry.New(
		retry.WithMaxAttempts(4),
		retry.WithBackoff(retry.Constant(time.Millisecond)),
		retry.WithOnRetry(func(e retry.Event) {
			fmt.Printf("attempt %d failed: %v\n", e.Attempt, e.Err)
		}),
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
