package timeout_test

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// WithOnOverrun finds the calls that do not honour their ctx: Do waits for
// them, and says by how much they overran.
func ExampleWithOnOverrun() {
	t := timeout.New(time.Millisecond, timeout.WithOnOverrun(func(o timeout.Overrun) {
		fmt.Println("overran by at least 5ms:", o.By >= 5*time.Millisecond)
	}))
	err := t.Do(context.Background(), func(ctx context.Context) error {
		ignore := time.NewTimer(6 * time.Millisecond) // ignores ctx
		<-ignore.C
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// overran by at least 5ms: true
	// err: <nil>
}
