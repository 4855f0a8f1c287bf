package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/ratelimit"
)

func ExampleLimiter_Do() {
	l := ratelimit.New(1, 3) // one call a second, bursts of three
	for i := range 5 {
		err := l.Do(context.Background(), func(context.Context) error { return nil })
		fmt.Println(i, err, errors.Is(err, resilience.ErrRejected))
	}
	// Output:
	// 0 <nil> false
	// 1 <nil> false
	// 2 <nil> false
	// 3 ratelimit: limited true
	// 4 ratelimit: limited true
}

// With WithMaxWait a call waits for its token when the token is due in
// time, and is refused at once when it is not.
func ExampleWithMaxWait() {
	l := ratelimit.New(100, 1, ratelimit.WithMaxWait(15*time.Millisecond)) // a token every 10ms
	ctx := context.Background()
	call := func(context.Context) error { return nil }
	fmt.Println(l.Do(ctx, call)) // the burst token
	fmt.Println(l.Do(ctx, call)) // waits about 10ms
	l.Reserve(time.Second)       // someone else takes the token due in 20ms
	err := l.Do(ctx, call)       // the next is due in 30ms: more than 15ms
	fmt.Println(err)
	// Output:
	// <nil>
	// <nil>
	// ratelimit: limited
}

func ExampleKeyed() {
	perTenant := ratelimit.NewKeyed(rate.Every(time.Minute), 2) // bursts of two, then one a minute
	for _, tenant := range []string{"acme", "acme", "acme", "globex"} {
		err := perTenant.DoKey(context.Background(), tenant, func(context.Context) error { return nil })
		fmt.Println(tenant, err)
	}
	// Output:
	// acme <nil>
	// acme <nil>
	// acme ratelimit: limited (key "acme")
	// globex <nil>
}

func ExampleFromLimiter() {
	shared := rate.NewLimiter(5, 1) // also used elsewhere in the program
	l := ratelimit.FromLimiter(shared)
	fmt.Println(l.Allow(), l.Allow())
	// Output: true false
}
