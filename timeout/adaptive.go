package timeout

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/hist"
)

// AdaptiveTimeout gives each call a deadline that follows the latencies of
// the calls before it: a quantile of the latencies of the last window,
// times a multiplier (by default p99.9 × 2, for a false-timeout rate under
// 0.1 %), within bounds. Make one with [Adaptive]; it is safe for
// concurrent use. The zero value is not usable; use Adaptive: its methods
// panic. Most callers want [AdaptiveTimeout.Do].
//
// The latencies it learns from are those of the calls that succeeded, and
// of the calls it timed out, each counted as taking exactly its timeout:
// a call cut short says only that it would have taken at least that long.
// So when a dependency slows down past the timeout, the timed-out calls
// raise the quantile, and the timeout grows (doubling, with the default
// multiplier) until it covers the new latency or reaches the upper bound;
// learning from successes alone would keep the old, short timeout and
// time out every call. Calls that fail fast are not counted, so that a
// burst of refused connections does not shorten the timeout; neither are
// calls whose caller's ctx ended first.
//
// Until the window holds [WithMinSamples] latencies (100 by default), the
// timeout is the upper bound of [WithBounds].
type AdaptiveTimeout struct {
	t          Timeout // name, observer and cause
	q, mult    float64
	min, max   time.Duration
	minSamples uint64
	window     time.Duration
	epoch      time.Time // the origin of the window's clock

	cur     atomic.Int64 // the timeout, in nanoseconds
	stale   atomic.Int64 // when cur must be worked out again, since epoch: when the window's next slot begins
	pending atomic.Int64 // latencies counted since cur was worked out

	mu sync.Mutex
	w  *hist.Window // rotated and read under mu; added to without it within a slot
}

var _ resilience.Policy = (*AdaptiveTimeout)(nil)

// An AdaptiveOption configures an [AdaptiveTimeout] made by [Adaptive].
// Every [Option] is one too.
type AdaptiveOption interface{ applyAdaptive(*AdaptiveTimeout) }

type adaptiveOptionFunc func(*AdaptiveTimeout)

func (f adaptiveOptionFunc) applyAdaptive(a *AdaptiveTimeout) { f(a) }

// WithQuantile sets the quantile of recent latencies that the timeout is a
// multiple of. Default: 0.999 (p99.9). q must be in (0, 1].
func WithQuantile(q float64) AdaptiveOption {
	if !(q > 0 && q <= 1) {
		panic(fmt.Sprintf("timeout: WithQuantile(%v): want 0 < q <= 1", q))
	}
	return adaptiveOptionFunc(func(a *AdaptiveTimeout) { a.q = q })
}

// WithMultiplier sets what the quantile is multiplied by. Default: 2. m
// must be at least 1 and finite.
func WithMultiplier(m float64) AdaptiveOption {
	if !(m >= 1) || math.IsInf(m, 1) {
		panic(fmt.Sprintf("timeout: WithMultiplier(%v): want 1 <= m < +Inf", m))
	}
	return adaptiveOptionFunc(func(a *AdaptiveTimeout) { a.mult = m })
}

// WithBounds keeps the timeout within [min, max]; max is also the timeout
// while too few latencies are known. Default: [1ms, 10s]. min must be
// positive and max at least min.
func WithBounds(min, max time.Duration) AdaptiveOption {
	if min <= 0 || max < min {
		panic(fmt.Sprintf("timeout: WithBounds(%v, %v): want 0 < min <= max", min, max))
	}
	return adaptiveOptionFunc(func(a *AdaptiveTimeout) { a.min, a.max = min, max })
}

// WithWindow sets how far back the latencies go: the window is six slots
// of window/6, the oldest dropped as a new one begins, so that a change of
// latency is followed within one window. Default: 30s. window must be at
// least 6ns.
func WithWindow(window time.Duration) AdaptiveOption {
	if window < windowSlots {
		panic(fmt.Sprintf("timeout: WithWindow(%v): want window >= %dns", window, windowSlots))
	}
	return adaptiveOptionFunc(func(a *AdaptiveTimeout) { a.window = window })
}

// WithMinSamples sets how many latencies the window must hold before the
// timeout follows them; with fewer, it is the upper bound. Default: 100.
// n must be at least 1.
func WithMinSamples(n int) AdaptiveOption {
	if n < 1 {
		panic(fmt.Sprintf("timeout: WithMinSamples(%d): want n >= 1", n))
	}
	return adaptiveOptionFunc(func(a *AdaptiveTimeout) { a.minSamples = uint64(n) })
}

const (
	windowSlots = 6
	// recalcEvery is how many latencies are counted between two
	// workings-out of the timeout, besides one per new slot, one per
	// timed-out call, and one per latency until the window holds enough.
	recalcEvery = 32
)

// Adaptive returns an AdaptiveTimeout configured by opts. It panics if an
// option is nil.
func Adaptive(opts ...AdaptiveOption) *AdaptiveTimeout {
	a := &AdaptiveTimeout{q: 0.999, mult: 2, min: time.Millisecond, max: 10 * time.Second, minSamples: 100,
		window: 30 * time.Second, epoch: time.Now()}
	a.t.kind = resilience.PolicyAdaptiveTimeout
	a.t.cause = &adaptiveExceeded{a}
	for _, o := range opts {
		if o == nil {
			panic("timeout: Adaptive: nil Option")
		}
		o.applyAdaptive(a)
	}
	a.w = hist.NewWindow(a.window, windowSlots)
	a.cur.Store(int64(a.max))
	a.stale.Store(a.w.Next())
	return a
}

// adaptiveExceeded is the cause an AdaptiveTimeout gives the ctx it makes.
type adaptiveExceeded struct{ a *AdaptiveTimeout }

func (*adaptiveExceeded) Error() string        { return ErrExceeded.Error() + " (adaptive)" }
func (*adaptiveExceeded) Is(target error) bool { return target == ErrExceeded }
func (*adaptiveExceeded) Unwrap() error        { return context.DeadlineExceeded }

// Do calls op as [Timeout.Do] does, with a deadline of the current
// timeout ([AdaptiveTimeout.Timeout]), and learns from how long op took.
// The errors are those of Timeout.Do. Do panics if op is nil.
func (a *AdaptiveTimeout) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("timeout: AdaptiveTimeout.Do: nil Op")
	}
	if a.w == nil {
		panic("timeout: zero AdaptiveTimeout; use Adaptive")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The monotonic clock alone, which is cheaper to read than the wall
	// clock too, unless an observer wants the wall time of its events.
	began := time.Since(a.epoch)
	start := a.epoch.Add(began)
	if a.t.observer != nil {
		start = time.Now()
		began = start.Sub(a.epoch)
	}
	d := a.timeout(int64(began))
	late, err := a.t.run(ctx, op, start, d)
	switch {
	case late && err != nil: // timed out: at least d
		a.record(time.Since(a.epoch).Nanoseconds(), d, true)
	case err == nil:
		end := time.Since(a.epoch)
		a.record(int64(end), end-began, false)
	}
	return err
}

// Timeout returns the deadline a call that starts now gets, unless its
// ctx ends sooner.
func (a *AdaptiveTimeout) Timeout() time.Duration {
	if a.w == nil {
		panic("timeout: zero AdaptiveTimeout; use Adaptive")
	}
	return a.timeout(time.Since(a.epoch).Nanoseconds())
}

// timeout returns the timeout at now, in nanoseconds since epoch, worked
// out again if a slot of the window began since it last was.
func (a *AdaptiveTimeout) timeout(now int64) time.Duration {
	if now >= a.stale.Load() {
		a.mu.Lock()
		if a.w.Rotate(now) {
			a.recalc()
		}
		a.mu.Unlock()
	}
	return time.Duration(a.cur.Load())
}

// record counts a latency d of a call that ended at now; timedOut says
// that the call was cut short at d. Within the window's current slot, a
// latency is counted without the lock, and the lock is taken only to work
// the timeout out again.
func (a *AdaptiveTimeout) record(now int64, d time.Duration, timedOut bool) {
	if now < a.stale.Load() {
		a.w.AddNow(d)
		if a.pending.Add(1) < recalcEvery && !timedOut && a.w.Count() > a.minSamples {
			return
		}
		a.mu.Lock()
		a.recalc()
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	a.w.Add(now, d)
	a.recalc() // a slot began
	a.mu.Unlock()
}

// recalc works the timeout out from the window. a.mu is held.
func (a *AdaptiveTimeout) recalc() {
	a.pending.Store(0)
	a.stale.Store(a.w.Next())
	d := a.max
	if a.w.Count() >= a.minSamples {
		d = min(max(time.Duration(float64(a.w.Quantile(a.q))*a.mult), a.min), a.max)
	}
	a.cur.Store(int64(d))
}
