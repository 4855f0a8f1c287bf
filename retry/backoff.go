package retry

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff is a strategy for the wait before each retry: [Constant],
// [Exponential], [FullJitter], [EqualJitter] or [DecorrelatedJitter]. A
// Backoff is a value that holds no state between calls, so one serves every
// retrier and goroutine at once. Its zero value waits nothing.
//
// The waits of the exponential strategies double from base with each attempt
// and never exceed maxDelay; the jittered ones draw the wait at random below
// that ceiling, so that clients that failed together do not retry together,
// and the ceiling is applied before the draw, not after it, so that clients
// at the ceiling do not all wait exactly maxDelay. The arithmetic saturates:
// attempt one billion waits maxDelay.
type Backoff struct {
	kind           backoffKind
	base, maxDelay time.Duration
}

type backoffKind uint8

const (
	constant backoffKind = iota
	exponential
	fullJitter
	equalJitter
	decorrelatedJitter
)

// Constant waits d before every retry. d must not be negative.
func Constant(d time.Duration) Backoff {
	if d < 0 {
		panic(fmt.Sprintf("retry: Constant(%v): want d >= 0", d))
	}
	return Backoff{kind: constant, base: d, maxDelay: d}
}

// Exponential waits base·2^(n-1) before retry n, at most maxDelay, without
// jitter. 0 < base <= maxDelay.
func Exponential(base, maxDelay time.Duration) Backoff {
	return newBackoff("Exponential", exponential, base, maxDelay)
}

// FullJitter waits a uniformly random time in [0, min(maxDelay,
// base·2^(n-1))] before retry n: the least work for a contended dependency
// (AWS, "Exponential Backoff and Jitter"). The default strategy, with base
// 100ms and maxDelay 10s. 0 < base <= maxDelay.
func FullJitter(base, maxDelay time.Duration) Backoff {
	return newBackoff("FullJitter", fullJitter, base, maxDelay)
}

// EqualJitter waits half of min(maxDelay, base·2^(n-1)) plus a uniformly
// random time up to the other half before retry n: never less than half the
// exponential wait. 0 < base <= maxDelay.
func EqualJitter(base, maxDelay time.Duration) Backoff {
	return newBackoff("EqualJitter", equalJitter, base, maxDelay)
}

// DecorrelatedJitter waits a uniformly random time in [base, min(maxDelay,
// 3·previous wait)] before each retry, the previous wait being base before
// the first: each wait grows from the last one drawn rather than from the
// attempt number. 0 < base <= maxDelay.
func DecorrelatedJitter(base, maxDelay time.Duration) Backoff {
	return newBackoff("DecorrelatedJitter", decorrelatedJitter, base, maxDelay)
}

func newBackoff(name string, kind backoffKind, base, maxDelay time.Duration) Backoff {
	if base <= 0 || maxDelay < base {
		panic(fmt.Sprintf("retry: %s(%v, %v): want 0 < base <= maxDelay", name, base, maxDelay))
	}
	return Backoff{kind: kind, base: base, maxDelay: maxDelay}
}

// Delay returns the wait before the next attempt, after attempt number
// attempt (1 for the first) failed; prev is the wait this strategy returned
// before the previous attempt, or zero. The result is in [0, maxDelay].
func (b Backoff) Delay(attempt int, prev time.Duration) time.Duration {
	return b.delay(attempt, prev, nil)
}

// delay is Delay with its draws from r, or from math/rand/v2's global
// source when r is nil.
func (b Backoff) delay(attempt int, prev time.Duration, r *rand.Rand) time.Duration {
	switch b.kind {
	case exponential:
		return b.ceiling(attempt)
	case fullJitter:
		return uniform(r, 0, b.ceiling(attempt))
	case equalJitter:
		t := b.ceiling(attempt)
		return t/2 + uniform(r, 0, t-t/2)
	case decorrelatedJitter:
		prev = max(prev, b.base)
		hi := b.maxDelay
		if prev <= b.maxDelay/3 {
			hi = 3 * prev
		}
		return uniform(r, b.base, hi)
	}
	return b.base
}

// ceiling returns min(maxDelay, base·2^(attempt-1)) without overflow.
func (b Backoff) ceiling(attempt int) time.Duration {
	shift := max(attempt-1, 0)
	if shift >= 62 || b.base > b.maxDelay>>shift {
		return b.maxDelay
	}
	return b.base << shift
}

// uniform returns a random duration in [lo, hi], drawn from r or, when r
// is nil, from math/rand/v2's global source.
func uniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	span := int64(hi - lo)
	switch {
	case span <= 0:
		return lo
	case span == math.MaxInt64: // span+1 would overflow
	default:
		span++
	}
	if r == nil {
		return lo + time.Duration(rand.Int64N(span))
	}
	return lo + time.Duration(r.Int64N(span))
}

// BackOff returns a new [backoff.BackOff] of github.com/cenkalti/backoff/v4
// that yields this strategy's waits, for code written against that package.
// It never returns backoff.Stop: bound it with backoff.WithMaxRetries or a
// ctx. Like every BackOff it holds state: use one per sequence of retries.
func (b Backoff) BackOff() backoff.BackOff { return &backOff{b: b} }

type backOff struct {
	b       Backoff
	attempt int
	prev    time.Duration
}

func (o *backOff) NextBackOff() time.Duration {
	o.attempt++
	o.prev = o.b.Delay(o.attempt, o.prev)
	return o.prev
}

func (o *backOff) Reset() { o.attempt, o.prev = 0, 0 }
