package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// gcra is a token bucket kept as one number, the generic cell rate
// algorithm's theoretical arrival time (tat): the time at which the bucket
// would be full again, in nanoseconds of the limiter's monotonic clock. A
// call at now takes a token if, after it, the bucket would be full again
// within burst intervals: tat' = max(tat, now) + interval and tat' - now <=
// burst·interval. Taking a token is one compare-and-swap; tat never moves
// back, so no interval is credited twice.
type gcra struct {
	tat      atomic.Int64
	interval int64 // nanoseconds per token
	limit    int64 // burst·interval: how far ahead of now tat may run
}

// init sets the bucket's rate and burst; the bucket starts full.
func (g *gcra) init(interval time.Duration, burst int) {
	g.interval, g.limit = int64(interval), math.MaxInt64
	if int64(burst) <= math.MaxInt64/g.interval {
		g.limit = int64(burst) * g.interval
	}
}

// take takes a token now, on the clock that starts at start, or reserves
// one that becomes available within maxWait, and returns how long from now
// until it is available, and the tat it set, by which [gcra.cancel] knows
// the token. When no token is available within maxWait it takes nothing
// and returns the wait with ok false.
func (g *gcra) take(start time.Time, maxWait int64) (wait, next int64, ok bool) {
	t := int64(time.Since(start))
	tat := g.tat.Load()
	next = max(tat, t) + g.interval
	if wait = next - t - g.limit; wait <= maxWait && g.tat.CompareAndSwap(tat, next) {
		return max(wait, 0), next, true
	}
	if wait > maxWait {
		return wait, 0, false
	}
	return g.retake(start, t, maxWait)
}

// takeNow is take with no wait allowed, for the hot path of Allow: it
// reports whether it took a token.
func (g *gcra) takeNow(start time.Time) bool {
	t := int64(time.Since(start))
	tat := g.tat.Load()
	next := max(tat, t) + g.interval
	if next-t > g.limit {
		return false
	}
	if g.tat.CompareAndSwap(tat, next) {
		return true
	}
	_, _, ok := g.retake(start, t, 0)
	return ok
}

// retake is take's loop, for when another goroutine changed the bucket
// between a read of it, after the clock read t, and a swap. A token may
// still be taken at t: a change made at a later reading of the clock sets
// tat past that reading, so max(tat, t) is what it would be at that
// reading, a time within this call, and a change made at an earlier
// reading comes first in time as well. A refusal is decided on a fresh
// reading of the clock, so that the time lost to the race never counts
// against the caller.
func (g *gcra) retake(start time.Time, t, maxWait int64) (wait, next int64, ok bool) {
	for {
		tat := g.tat.Load()
		next = max(tat, t) + g.interval
		if wait = next - t - g.limit; wait > maxWait {
			if now := int64(time.Since(start)); now > t {
				t = now
				continue
			}
			return wait, 0, false
		}
		if g.tat.CompareAndSwap(tat, next) {
			return max(wait, 0), next, true
		}
	}
}

// wait returns how long from t until a token is available.
func (g *gcra) wait(t int64) int64 {
	return max(max(g.tat.Load(), t)+g.interval-t-g.limit, 0)
}

// cancel gives back, at t, the token whose take set tat to next, and
// reports whether it did. It does only while the token is not yet due (one
// that is due may have been used) and no token was taken after it (a later
// token keeps its time, so that giving this one back would let a call in
// ahead of it, and more than burst in a row): then the bucket holds what it
// would have held without the token, never more than full at t.
func (g *gcra) cancel(t, next int64) bool {
	if t >= next-g.limit {
		return false
	}
	return g.tat.CompareAndSwap(next, max(next-g.interval, t))
}

// full reports whether the bucket is full at t: it holds no trace of past
// calls, and can be forgotten.
func (g *gcra) full(t int64) bool { return g.tat.Load() <= t }
