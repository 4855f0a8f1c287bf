package hedge_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
)

// A slow first attempt is hedged after the delay; the hedge answers, and
// the first attempt is cancelled, its value discarded.
func Example() {
	h := hedge.New(hedge.WithDelay(time.Millisecond), hedge.WithMaxExtraLoad(1),
		hedge.WithDiscard(func(v any) { fmt.Println("discarded:", v) }))
	var n atomic.Int32
	v, err := resilience.Do(context.Background(), h, func(ctx context.Context) (string, error) {
		if n.Add(1) == 1 {
			<-ctx.Done() // a replica that does not answer in time
			return "replica 1", ctx.Err()
		}
		return "replica 2", nil
	})
	fmt.Println(v, err)
	// Output:
	// discarded: replica 1
	// replica 2 <nil>
}

// An attempt that fails with an error worth another try starts the next
// at once; one that is not worth it ends the call.
func ExampleWithRetryIf() {
	errNotFound := errors.New("not found")
	h := hedge.New(hedge.WithMaxExtraLoad(1),
		hedge.WithRetryIf(func(err error) bool { return !errors.Is(err, errNotFound) }))
	var n atomic.Int32
	err := h.Do(context.Background(), func(context.Context) error {
		if n.Add(1) == 1 {
			return errors.New("connection reset")
		}
		return nil
	})
	fmt.Println("attempts:", n.Load(), "error:", err)

	n.Store(0)
	err = h.Do(context.Background(), func(context.Context) error {
		n.Add(1)
		return errNotFound
	})
	fmt.Println("attempts:", n.Load(), "error:", err)
	// Output:
	// attempts: 2 error: <nil>
	// attempts: 1 error: not found
}
