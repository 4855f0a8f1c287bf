package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/redislimit"
	"github.com/resilience-go/resilience/ratelimit"
)

func ExampleNew() {
	// A client of the limiters' own.
	client := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		ContextTimeoutEnabled: true, // required: calls end at their ctx's deadline
		MaxRetries:            -1,   // a call takes at most one token
	})
	defer client.Close()
	// 100 calls a second, bursts of 20, shared by every instance. If Redis
	// does not answer, each of the 4 instances allows 25 a second.
	l := redislimit.New(client, "limit:payments", 100, 20, redislimit.WithLocalFallback(4))
	err := l.Do(context.Background(), func(ctx context.Context) error {
		return nil // the call to the payment provider
	})
	if d, ok := resilience.RetryAfter(err); ok && errors.Is(err, ratelimit.ErrLimited) {
		fmt.Println("try again in", d)
	}
}

// While Redis does not answer, each of 4 instances admits its share of the
// limit: here 8 a minute and bursts of 4 become 2 a minute and bursts of 1.
func ExampleWithLocalFallback() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1}) // no Redis here
	defer client.Close()
	l := redislimit.New(client, "limit:example", rate.Every(time.Minute/8), 4, redislimit.WithLocalFallback(4))
	for i := range 3 {
		fmt.Println(i, l.Do(context.Background(), func(context.Context) error { return nil }))
	}
	// The first call asked Redis; the others, within the probe interval,
	// did not.
	fmt.Printf("%+v\n", l.Metrics())
	// Output:
	// 0 <nil>
	// 1 redislimit: limited
	// 2 redislimit: limited
	// {Admitted:1 Rejected:2 Fallback:3 Errors:1}
}

// Failing closed, a call that Redis does not decide is refused: a
// rejection, but not a rate limit.
func ExampleWithFailClosed() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1}) // no Redis here
	defer client.Close()
	l := redislimit.New(client, "limit:example", 100, 10, redislimit.WithFailClosed())
	err := l.Do(context.Background(), func(context.Context) error { return nil })
	fmt.Println(errors.Is(err, redislimit.ErrUnavailable), errors.Is(err, resilience.ErrRejected), errors.Is(err, ratelimit.ErrLimited))
	// Output: true true false
}

// Failing open, the default, every call that Redis does not decide is
// admitted; the observer hears that Redis stopped answering.
func ExampleWithObserver() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1}) // no Redis here
	defer client.Close()
	l := redislimit.New(client, "limit:example", 1, 1,
		redislimit.WithObserver(func(e redislimit.Event) { fmt.Println("redis", e.Kind) }))
	for range 3 {
		fmt.Println(l.Allow(context.Background()))
	}
	// Output:
	// redis unavailable
	// true
	// true
	// true
}

func ExampleKeyed() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1}) // no Redis here
	defer client.Close()
	// Bursts of two, then one a minute, per tenant; on one instance, the
	// local fallback has the same limits.
	perTenant := redislimit.NewKeyed(client, "limit:tenant:", rate.Every(time.Minute), 2, redislimit.WithLocalFallback(1))
	for _, tenant := range []string{"acme", "acme", "acme", "globex"} {
		err := perTenant.DoKey(context.Background(), tenant, func(context.Context) error { return nil })
		fmt.Println(tenant, err)
	}
	// Output:
	// acme <nil>
	// acme <nil>
	// acme redislimit: limited (key "acme")
	// globex <nil>
}

func ExampleKeyed_Policy() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1}) // no Redis here
	defer client.Close()
	type tenantKey struct{}
	perTenant := redislimit.NewKeyed(client, "limit:tenant:", rate.Every(time.Minute), 1, redislimit.WithLocalFallback(1))
	p := perTenant.Policy(func(ctx context.Context) string {
		tenant, _ := ctx.Value(tenantKey{}).(string)
		return tenant
	})
	ctx := context.WithValue(context.Background(), tenantKey{}, "acme")
	for range 2 {
		fmt.Println(p.Do(ctx, func(context.Context) error { return nil }))
	}
	// Output:
	// <nil>
	// redislimit: limited (key "acme")
}
