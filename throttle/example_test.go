package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/throttle"
)

func Example() {
	th := throttle.New(throttle.WithRand(rand.New(rand.NewPCG(1, 1))))
	overloaded := resilience.Rejection("search: overloaded")
	ctx := context.Background()

	// The backend accepts 100 calls, then refuses every one.
	for range 100 {
		_ = th.Do(ctx, func(context.Context) error { return nil })
	}
	sent, throttled := 0, 0
	for range 1000 {
		err := th.Do(ctx, func(context.Context) error {
			sent++
			return overloaded
		})
		if errors.Is(err, throttle.ErrThrottled) {
			throttled++
		}
	}
	m := th.Metrics()
	fmt.Printf("requests %d, accepts %d\n", m.Requests, m.Accepts)
	fmt.Printf("rejection now %.2f\n", m.Rejection)
	fmt.Printf("sent to the backend %d, throttled locally %d\n", sent, throttled)
	// Output:
	// requests 1100, accepts 100
	// rejection now 0.82
	// sent to the backend 444, throttled locally 556
}
