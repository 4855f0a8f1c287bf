package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/fallback"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// errReset is the error of a flaky dependency.
var errReset = errors.New("connection reset")

// printRetries is a retry option that prints each retry.
func printRetries() retry.Option {
	return retry.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		if e.Kind == resilience.Retry {
			fmt.Printf("attempt %d: %v\n", e.Attempt, e.Err)
		}
	}))
}

func ExampleChain() {
	// One policy for a dependency, shared by every call to it, in the
	// canonical order, outermost first.
	breaker := circuitbreaker.New()
	p := resilience.Chain(
		fallback.New(func(ctx context.Context, err error) error {
			fmt.Println("fallback for:", err)
			return nil // served from a cache, say
		}),
		retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Millisecond)), printRetries()),
		breaker,
		ratelimit.New(100, 10),
		bulkhead.New(10),
		timeout.New(time.Second),
	)
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		return errReset
	})
	fmt.Println("err:", err)
	fmt.Println("calls:", calls, "breaker:", breaker.State())
	// Output:
	// attempt 1: connection reset
	// attempt 2: connection reset
	// fallback for: retry: gave up after 3 attempts (max attempts): connection reset
	// err: <nil>
	// calls: 3 breaker: closed
}

func ExampleWrap() {
	p := resilience.Chain(
		retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)), printRetries()),
		timeout.New(time.Second),
	)
	calls := 0
	ping := resilience.Wrap(p, func(context.Context) error {
		calls++
		if calls%2 == 1 {
			return errReset
		}
		return nil
	})
	// Bound once, called many times.
	for range 2 {
		fmt.Println("ping:", ping(context.Background()))
	}
	// Output:
	// attempt 1: connection reset
	// ping: <nil>
	// attempt 1: connection reset
	// ping: <nil>
}

func ExampleDo() {
	p := retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)), printRetries())
	replies := []string{"busy", "busy", "42"}
	n, err := resilience.Do(context.Background(), p, func(context.Context) (int, error) {
		reply := replies[0]
		replies = replies[1:]
		return strconv.Atoi(reply)
	})
	fmt.Println(n, err)
	// Output:
	// attempt 1: strconv.Atoi: parsing "busy": invalid syntax
	// attempt 2: strconv.Atoi: parsing "busy": invalid syntax
	// 42 <nil>
}

func ExampleRetryAfter() {
	// An error built from a 503 response with "Retry-After: 2".
	err := fmt.Errorf("get /users: %w", unavailable{seconds: 2})
	if d, ok := resilience.RetryAfter(err); ok {
		fmt.Println("retry after", d)
	}
	// Output:
	// retry after 2s
}

// unavailable is the error an HTTP client returns for a 503 response.
type unavailable struct{ seconds int }

func (e unavailable) Error() string { return "503 Service Unavailable" }

// RetryAfter reports the response's Retry-After header.
func (e unavailable) RetryAfter() time.Duration { return time.Duration(e.seconds) * time.Second }
