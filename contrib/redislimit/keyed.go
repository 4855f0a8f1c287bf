package redislimit

import (
	"context"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
)

// Keyed limits each key (a tenant, a client address, a route) to its own
// token bucket of the same rate and burst, shared by every process that
// uses the same prefix on the same Redis. Make one with [NewKeyed]; it is
// safe for concurrent use. The zero value is not usable; use NewKeyed: its
// methods panic. Most callers want [Keyed.DoKey], or [Keyed.Policy] to place
// it in a chain.
//
// The bucket of key k is the Redis key prefix+"{"+k+"}". The braces make k
// its hash tag (when prefix holds no brace), so that on Redis Cluster the
// buckets spread over the slots by key. A bucket takes a key only while it
// is not full: the key expires when the bucket has refilled, so Redis holds
// only the keys in use, and this process holds none. A Keyed limiter made
// with [WithLocalFallback] keeps the keys its local limiter sees while
// Redis is down, as [ratelimit.Keyed] does, at most 100000.
//
// The limiter keeps one record of whether Redis answers, for all its keys:
// a call for one key that gets no answer sends the calls for every key to
// the fallback for the probe interval ([WithProbeInterval]).
type Keyed struct {
	s *store
}

// made returns k's store, and panics if k is the zero Keyed.
func (k *Keyed) made() *store {
	if k.s == nil {
		panic("redislimit: zero Keyed; use NewKeyed")
	}
	return k.s
}

// NewKeyed returns a Keyed limiter that gives each key r tokens a second and
// bursts of burst, in Redis keys that start with prefix, configured by opts,
// with the same ranges and the same requirement on client as [New]. prefix
// may be empty. The keys that start with prefix must be the limiter's
// alone, and every limiter that uses them must have the same r and burst.
func NewKeyed(client redis.UniversalClient, prefix string, r rate.Limit, burst int, opts ...Option) *Keyed {
	s := newStore("NewKeyed", true, client, r, burst, opts)
	s.prefix = prefix
	return &Keyed{s: s}
}

// AllowKey takes a token from key's bucket if one is available now, and
// reports whether it did, as [Limiter.Allow] does.
func (k *Keyed) AllowKey(ctx context.Context, key string) bool {
	return k.made().allow(ctx, key)
}

// DoKey runs op if key's bucket has a token for it, waiting as [Limiter.Do]
// does. A refusal is a [*LimitedError] or, failing closed, an
// [*UnavailableError], that names the key. DoKey panics if op is nil.
func (k *Keyed) DoKey(ctx context.Context, key string, op resilience.Op) error {
	if op == nil {
		panic("redislimit: Keyed.DoKey: nil Op")
	}
	return k.made().do(ctx, key, op)
}

// Policy returns a [resilience.Policy] that limits each call by the key
// keyOf finds in its ctx, such as a tenant set by middleware. Policy panics
// if keyOf is nil.
func (k *Keyed) Policy(keyOf func(ctx context.Context) string) resilience.Policy {
	if keyOf == nil {
		panic("redislimit: Keyed.Policy: nil keyOf")
	}
	k.made()
	return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		return k.DoKey(ctx, keyOf(ctx), op)
	})
}

// Metrics returns the limiter's counts, over all keys.
func (k *Keyed) Metrics() Metrics { return k.made().metrics() }
