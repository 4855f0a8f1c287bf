package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
)

func ExampleBulkhead_Do() {
	b := bulkhead.New(1)
	inside := make(chan struct{})
	leave := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Do(context.Background(), func(context.Context) error {
			close(inside)
			<-leave // a slow call holds the only slot
			return nil
		})
	}()
	<-inside

	err := b.Do(context.Background(), func(context.Context) error { return nil })
	fmt.Println(err, errors.Is(err, resilience.ErrRejected))
	close(leave)
	fmt.Println(<-done, b.Metrics())
	// Output:
	// bulkhead: full true
	// <nil> {0 0 1}
}

// With WithMaxWait a call waits its turn for a slot.
func ExampleWithMaxWait() {
	b := bulkhead.New(1, bulkhead.WithMaxWait(time.Second))
	inside := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Do(context.Background(), func(context.Context) error {
			close(inside)
			return nil
		})
	}()
	<-inside
	err := b.Do(context.Background(), func(context.Context) error {
		fmt.Println("got the slot")
		return nil
	})
	fmt.Println(err, <-done)
	// Output:
	// got the slot
	// <nil> <nil>
}
