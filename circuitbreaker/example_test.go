package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
)

// A breaker trips after repeated failures, rejects calls while open, and
// closes again once probes succeed after the break.
func Example() {
	b := circuitbreaker.New(
		circuitbreaker.WithName("inventory"),
		circuitbreaker.WithFailureRate(0.5, 4),
		circuitbreaker.WithBreakDuration(20*time.Millisecond, time.Second),
		circuitbreaker.WithHalfOpenProbes(2),
		circuitbreaker.WithOnStateChange(func(t circuitbreaker.Transition) {
			fmt.Printf("%s: %s -> %s\n", t.Name, t.From, t.To)
		}),
	)
	ctx := context.Background()
	down := errors.New("connection refused")

	for range 4 {
		_ = b.Do(ctx, func(context.Context) error { return down })
	}
	err := b.Do(ctx, func(context.Context) error {
		panic("not called: the breaker is open")
	})
	fmt.Println(err, errors.Is(err, resilience.ErrRejected))

	// Wait as long as the rejection says, as a retry would.
	var oe *circuitbreaker.OpenError
	if errors.As(err, &oe) {
		wait := time.NewTimer(oe.RetryAfter())
		<-wait.C
	}
	fmt.Println(b.State())
	for range 2 {
		fmt.Println("probe:", b.Do(ctx, func(context.Context) error { return nil }))
	}
	fmt.Println(b.State())
	// Output:
	// inventory: closed -> open
	// circuitbreaker: inventory: open true
	// inventory: open -> half-open
	// half-open
	// probe: <nil>
	// inventory: half-open -> closed
	// probe: <nil>
	// closed
}

// Allow serves code that cannot hand the call to Do as a closure, such as
// middleware that learns the outcome later.
func ExampleBreaker_Allow() {
	b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(2))
	for _, status := range []int{200, 503, 503, 200} {
		done, err := b.Allow()
		if err != nil {
			fmt.Println("rejected:", err)
			continue
		}
		var callErr error
		if status >= 500 {
			callErr = fmt.Errorf("status %d", status)
		}
		done(callErr)
		fmt.Println("status", status, "->", b.State())
	}
	// Output:
	// status 200 -> closed
	// status 503 -> closed
	// status 503 -> open
	// rejected: circuitbreaker: open
}

// MetricsOnly watches a configuration without enforcing it: every call goes
// through, and the metrics show what the breaker would have seen.
func ExampleBreaker_MetricsOnly() {
	b := circuitbreaker.New(circuitbreaker.WithFailureRate(0.2, 10))
	b.MetricsOnly()
	for i := range 20 {
		_ = b.Do(context.Background(), func(context.Context) error {
			if i%3 == 0 {
				return errors.New("timeout")
			}
			return nil
		})
	}
	m := b.Metrics()
	fmt.Printf("%s: %d calls, %d failures, %d rejected\n", m.State, m.Calls, m.Failures, m.Rejections)
	// Output:
	// metrics-only: 20 calls, 7 failures, 0 rejected
}

// OpenFor opens the breaker for as long as an overloaded server asked, for
// example in the Retry-After header of a 429 or 503 response.
func ExampleBreaker_OpenFor() {
	b := circuitbreaker.New(circuitbreaker.WithName("search"))
	retryAfter := 30 * time.Second // parsed from "Retry-After: 30"
	b.OpenFor(retryAfter)

	err := b.Do(context.Background(), func(context.Context) error { return nil })
	d, _ := resilience.RetryAfter(err)
	fmt.Println(err)
	fmt.Println("retry after the server's 30s:", d > 29*time.Second && d <= 30*time.Second)
	// Output:
	// circuitbreaker: search: open
	// retry after the server's 30s: true
}

// WithObserver tells one observer of every call and every change of state,
// with its cause. A real program hands the events to
// resilience.SlogObserver or a metrics exporter.
func ExampleWithObserver() {
	b := circuitbreaker.New(
		circuitbreaker.WithName("inventory"),
		circuitbreaker.WithConsecutiveFailures(2),
		circuitbreaker.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			if e.Kind == resilience.StateChange {
				fmt.Printf("%s: %s -> %s (%s)\n", e.Name, e.From, e.To, e.Cause)
				return
			}
			fmt.Printf("%s: %s: %v\n", e.Name, e.Kind, e.Err)
		})),
	)
	ctx := context.Background()
	down := errors.New("connection refused")

	_ = b.Do(ctx, func(context.Context) error { return nil })
	for range 2 {
		_ = b.Do(ctx, func(context.Context) error { return down })
	}
	_ = b.Do(ctx, func(context.Context) error { return nil })
	b.Reset()
	// Output:
	// inventory: success: <nil>
	// inventory: failure: connection refused
	// inventory: failure: connection refused
	// inventory: closed -> open (consecutive failures)
	// inventory: rejected: circuitbreaker: inventory: open
	// inventory: open -> closed (reset)
}
