package timeout_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/timeout"
)

func ExampleTimeout_Do() {
	t := timeout.New(10 * time.Millisecond)
	err := t.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a call that takes too long, and honours its ctx
		return ctx.Err()
	})
	fmt.Println(err)
	fmt.Println(errors.Is(err, timeout.ErrExceeded), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// timeout: exceeded 10ms: context deadline exceeded
	// true true
}

// WithObserver finds the calls that do not honour their ctx: Do waits for
// them, and says by how much they overran.
func ExampleWithObserver() {
	t := timeout.New(time.Millisecond, timeout.WithName("report"),
		timeout.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			if e.Kind == resilience.Overrun {
				fmt.Println(e.Name, "overran by at least 5ms:", e.Delay >= 5*time.Millisecond)
				return
			}
			fmt.Println(e.Name, e.Kind, e.Err)
		})))
	err := t.Do(context.Background(), func(ctx context.Context) error {
		ignore := time.NewTimer(6 * time.Millisecond) // ignores ctx
		<-ignore.C
		return errors.New("out of memory")
	})
	fmt.Println("err:", err)
	// Output:
	// report overran by at least 5ms: true
	// report timed out timeout: exceeded 1ms: out of memory
	// err: timeout: exceeded 1ms: out of memory
}

// An adaptive timeout starts at its upper bound and, once it has seen 100
// latencies, gives each call p99.9 × 2 of the latencies of the last 30
// seconds, within its bounds.
func ExampleAdaptive() {
	t := timeout.Adaptive(timeout.WithBounds(5*time.Millisecond, 2*time.Second))
	fmt.Println("at first:", t.Timeout())
	for range 100 {
		_ = t.Do(context.Background(), func(context.Context) error { return nil }) // quick calls
	}
	fmt.Println("after 100 quick calls:", t.Timeout())

	err := t.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a call that takes too long, and honours its ctx
		return ctx.Err()
	})
	fmt.Println(err)
	// Output:
	// at first: 2s
	// after 100 quick calls: 5ms
	// timeout: exceeded 5ms: context deadline exceeded
}
