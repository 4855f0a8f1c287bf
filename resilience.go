package resilience

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/resilience-go/resilience/internal/race"
)

// Op is one attempt at a call. It must honour ctx: return soon after ctx is
// done, with an error that wraps ctx.Err() or context.Cause(ctx).
type Op func(ctx context.Context) error

// Policy runs an [Op] under a rule: it may refuse the call, run it once, run it
// again, or bound it in time. Implementations keep the contract in the package
// documentation and are safe for concurrent use.
type Policy interface {
	// Do runs op under the policy and returns op's error, possibly wrapped,
	// or an error of the policy's own.
	Do(ctx context.Context, op Op) error
}

// PolicyFunc adapts an ordinary function to a [Policy], as
// net/http.HandlerFunc adapts a function to a Handler. The function must keep
// the contract in the package documentation.
type PolicyFunc func(ctx context.Context, op Op) error

// Do calls f(ctx, op). It panics if f or op is nil.
func (f PolicyFunc) Do(ctx context.Context, op Op) error {
	if f == nil {
		panic("resilience: PolicyFunc.Do: nil PolicyFunc")
	}
	if op == nil {
		panic("resilience: PolicyFunc.Do: nil Op")
	}
	return f(ctx, op)
}

// ErrRejected is matched, through errors.Is, by every error with which a
// policy refuses a call without running it: an open circuit breaker, a full
// bulkhead, an exhausted rate limiter. It tells an outer policy that the
// dependency did not fail, so a breaker does not count it as a failure and a
// retry does not retry it blindly.
var ErrRejected = errors.New("resilience: rejected")

// Rejection is a sentinel error for a kind of refusal, which matches
// [ErrRejected] through errors.Is: each policy that refuses calls declares
// its own, as in
//
//	var ErrFull error = resilience.Rejection("bulkhead: full")
//
// Its text is the whole message, with the package's prefix.
type Rejection string

// Error returns r's text.
func (r Rejection) Error() string { return string(r) }

// Is reports whether target is ErrRejected.
func (r Rejection) Is(target error) bool { return target == ErrRejected }

// Chain returns a Policy that applies ps in order, ps[0] outermost:
// Chain(a, b).Do(ctx, op) is a.Do(ctx, op') where op' runs b.Do(ctx, op).
// Chain() runs op directly (after checking ctx) and Chain(p) is p. Chains
// passed to Chain are flattened. Chain panics if a policy is nil or a nil
// pointer, and the returned Policy's Do panics if op is nil.
//
// Each call to the returned Policy's Do allocates one small closure per inner
// layer to bind op; bind op once with [Wrap] where the same op is called many
// times.
func Chain(ps ...Policy) Policy {
	c := make(chain, 0, len(ps))
	for i, p := range ps {
		if isNil(p) {
			panic(fmt.Sprintf("resilience: Chain: nil Policy at index %d", i))
		}
		switch p := p.(type) {
		case chain:
			c = append(c, p...)
		case direct:
		default:
			c = append(c, p)
		}
	}
	switch len(c) {
	case 0:
		return direct{}
	case 1:
		return c[0]
	}
	return c
}

// Wrap binds op to p once and returns an Op that runs op under p. Calling the
// result allocates nothing beyond what the policies themselves allocate, even
// when p is a [Chain]. Wrap panics if p is nil or a nil pointer, or op is
// nil.
func Wrap(p Policy, op Op) Op {
	if isNil(p) {
		panic("resilience: Wrap: nil Policy")
	}
	if op == nil {
		panic("resilience: Wrap: nil Op")
	}
	if c, ok := p.(chain); ok {
		return c.bind(op)
	}
	return func(ctx context.Context) error { return p.Do(ctx, op) }
}

// Do runs fn under p and returns, with p's error, the value of the first call
// to fn that succeeded or, if none did, of the last call p made: for a retry,
// the value of its last attempt. When p refuses the call without running fn,
// the value is the zero T. Under a policy that runs attempts at once, such
// as a hedge, Do returns the value of the attempt whose result the policy
// returned, never that of an attempt it cancelled or passed over, and hands
// the values of those to the policy's discard hook, if it has one (see
// hedge.WithDiscard); it is free of data races there too. A fallback policy
// cannot supply a value through Do; use fallback.Do. Do panics if p is nil
// or a nil pointer, or fn is nil.
func Do[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error)) (T, error) {
	if isNil(p) {
		panic("resilience: Do: nil Policy")
	}
	if fn == nil {
		panic("resilience: Do: nil fn")
	}
	st := &doState[T]{outer: race.From(ctx)} // one allocation for what the calls share
	err := p.Do(ctx, func(ctx context.Context) error {
		r, err := fn(ctx)
		st.keep(race.From(ctx), r, err == nil)
		return err
	})
	// p has returned, so every call to fn has returned (the contract), and
	// its writes to st happened before these reads, as did the choice of
	// each race's winner.
	v, ok := st.v, st.ok
	for _, r := range st.raced {
		if !r.attempt.Won() {
			r.attempt.Lost(r.v)
		} else if !ok {
			v, ok = r.v, r.ok
		}
	}
	return v, err
}

// doState is what the calls to the fn of one [Do] share.
type doState[T any] struct {
	outer *race.Attempt // the attempt that Do itself runs in, if any

	mu    sync.Mutex
	v     T
	ok    bool        // v is the value of a success
	raced []result[T] // the values of attempts of races that p ran
}

// keep keeps the value of a call to fn that ran in attempt a: the first
// success or else the last value, or, for an attempt of a race, every
// value until the winner is known.
func (st *doState[T]) keep(a *race.Attempt, v T, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a != st.outer {
		st.raced = append(st.raced, result[T]{a, v, ok})
	} else if !st.ok {
		st.v, st.ok = v, ok
	}
}

// result is the value of a call to the fn of [Do] made in an attempt of a
// race.
type result[T any] struct {
	attempt *race.Attempt
	v       T
	ok      bool
}

// RetryAfter reports the first retry-after hint in err's tree, walked as
// errors.Is walks it: the result of the RetryAfter method of the first error
// that has one and reports a positive duration. A hint of zero or less is no
// hint, and the walk goes on past it: an error built from an HTTP 500
// response without a Retry-After header, or a refusal whose wait is already
// over, says nothing about when to call again, so RetryAfter reports false
// and a retrier waits as its backoff says. Rejections from this module's
// policies carry a hint, and so can any error a user defines, such as one
// built from an HTTP 429 or 503 response with a Retry-After header.
func RetryAfter(err error) (time.Duration, bool) {
	for err != nil {
		if h, ok := err.(interface{ RetryAfter() time.Duration }); ok {
			if d := h.RetryAfter(); d > 0 {
				return d, true
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if d, ok := RetryAfter(e); ok {
					return d, true
				}
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// isNil reports whether p is nil, or holds a nil pointer or func, which would
// panic on its first call.
func isNil(p Policy) bool {
	if p == nil {
		return true
	}
	switch v := reflect.ValueOf(p); v.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// chain is the Policy that Chain returns for two or more policies.
type chain []Policy

func (c chain) Do(ctx context.Context, op Op) error {
	if op == nil {
		panic("resilience: Chain.Do: nil Op")
	}
	return c[0].Do(ctx, c[1:].bind(op))
}

// bind returns an Op that runs op under every policy of c, c[0] outermost.
func (c chain) bind(op Op) Op {
	for i := len(c) - 1; i >= 0; i-- {
		p, next := c[i], op
		op = func(ctx context.Context) error { return p.Do(ctx, next) }
	}
	return op
}

// direct is the Policy that Chain returns for no policies.
type direct struct{}

func (direct) Do(ctx context.Context, op Op) error {
	if op == nil {
		panic("resilience: Chain.Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return op(ctx)
}
