package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// An adaptive bulkhead starts at 20 calls at once and moves its limit by
// the latency it sees; a call beyond the limit is refused at once, with
// the last window's p90 latency as a retry-after hint.
func ExampleAdaptive() {
	b := bulkhead.Adaptive(bulkhead.WithLimits(1, 2, 100))
	fmt.Println(b.Metrics().Limit)

	inside := make(chan struct{}, 2)
	leave := make(chan struct{})
	done := make(chan error, 2)
	for range 2 {
		go func() {
			done <- b.Do(context.Background(), func(context.Context) error {
				inside <- struct{}{}
				<-leave // slow calls hold both permits
				return nil
			})
		}()
	}
	<-inside
	<-inside
	err := b.Do(context.Background(), func(context.Context) error { return nil })
	var full *bulkhead.FullError
	fmt.Println(err, errors.Is(err, bulkhead.ErrFull), errors.Is(err, resilience.ErrRejected), errors.As(err, &full))
	close(leave)
	fmt.Println(<-done, <-done, b.Metrics().Rejected)
	// Output:
	// 2
	// bulkhead: full (adaptive limit) true true true
	// <nil> <nil> 1
}

// With WithCoDel a call beyond the limit waits for a permit, up to the
// interval while the queue drains.
func ExampleWithCoDel() {
	b := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1), bulkhead.WithCoDel(5*time.Millisecond, 10*time.Second))
	inside := make(chan struct{})
	leave := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Do(context.Background(), func(context.Context) error {
			close(inside)
			<-leave // holds the only permit
			return nil
		})
	}()
	<-inside
	waited := make(chan error)
	go func() {
		waited <- b.Do(context.Background(), func(context.Context) error {
			fmt.Println("got the permit")
			return nil
		})
	}()
	for b.Metrics().Waiting == 0 {
		runtime.Gosched()
	}
	fmt.Println("waiting:", b.Metrics().Waiting)
	close(leave)
	fmt.Println(<-done, <-waited)
	// Output:
	// waiting: 1
	// got the permit
	// <nil> <nil>
}
