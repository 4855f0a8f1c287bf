package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/resilience-go/resilience"
)

// logged returns a policy that prints when a call enters and leaves it.
func logged(name string) resilience.Policy {
	return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Println(name, "in")
		defer fmt.Println(name, "out")
		return op(ctx)
	})
}

// attempts returns a policy that calls op up to n times until it succeeds.
func attempts(n int) resilience.Policy {
	return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		var err error
		for i := range n {
			if err = ctx.Err(); err != nil {
				return err
			}
			if err = op(ctx); err == nil {
				return nil
			}
			fmt.Printf("attempt %d: %v\n", i+1, err)
		}
		return err
	})
}

func ExampleChain() {
	p := resilience.Chain(logged("outer"), logged("inner"))
	err := p.Do(context.Background(), func(context.Context) error {
		fmt.Println("call")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// outer in
	// inner in
	// call
	// inner out
	// outer out
	// err: <nil>
}

func ExampleWrap() {
	calls := 0
	ping := resilience.Wrap(attempts(3), func(context.Context) error {
		calls++
		if calls%2 == 1 {
			return errors.New("connection reset")
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
	replies := []string{"busy", "busy", "42"}
	n, err := resilience.Do(context.Background(), attempts(3), func(context.Context) (int, error) {
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
