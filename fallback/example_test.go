package fallback_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/fallback"
)

func ExampleNew() {
	var greeting string
	f := fallback.New(func(ctx context.Context, err error) error {
		greeting = "hello (from cache)"
		return nil
	})
	err := f.Do(context.Background(), func(context.Context) error {
		return errors.New("greeter: connection refused")
	})
	fmt.Println(greeting, err)
	// Output: hello (from cache) <nil>
}

func ExampleDo() {
	fetch := func(context.Context) (int, error) { return 0, errors.New("pricing: 503") }
	lastKnown := func(ctx context.Context, err error) (int, error) { return 1299, nil }

	price, err := fallback.Do(context.Background(), nil, fetch, lastKnown)
	fmt.Println(price, err)
	// Output: 1299 <nil>
}

func ExampleFailover() {
	primary := func(context.Context) error { return errors.New("eu-west: timeout") }
	secondary := func(context.Context) error { return errors.New("us-east: timeout") }
	tertiary := func(context.Context) error { fmt.Println("served by ap-south"); return nil }

	err := fallback.Failover(primary, secondary, tertiary)(context.Background())
	fmt.Println("err:", err)

	err = fallback.Failover(primary, secondary)(context.Background())
	fmt.Println(err)
	// Output:
	// served by ap-south
	// err: <nil>
	// eu-west: timeout
	// us-east: timeout
}

// Do takes a policy, so a fallback can sit outside a whole chain.
func ExampleDo_withPolicy() {
	breakerOpen := resilience.PolicyFunc(func(context.Context, resilience.Op) error {
		return fmt.Errorf("inventory breaker open: %w", resilience.ErrRejected)
	})
	stock, err := fallback.Do(context.Background(), breakerOpen,
		func(context.Context) (string, error) { return "12 in stock", nil },
		func(ctx context.Context, err error) (string, error) { return "availability unknown", nil })
	fmt.Println(stock, err)
	// Output: availability unknown <nil>
}
