package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/hist"
	"github.com/resilience-go/resilience/internal/stripe"
)

// AdaptiveBulkhead admits at most a number of calls at once that it
// adapts to the latency of the dependency: it raises its limit while
// latency stays at its baseline and lowers it as calls queue up in the
// dependency (latency grows) or are dropped (time out). Make one with
// [Adaptive]; it is safe for concurrent use. The zero value is not usable;
// use Adaptive: its methods panic. Most callers want [AdaptiveBulkhead.Do].
//
// # The limit
//
// The limit is a TCP Vegas estimate on a windowed p90 latency, as in
// Netflix's concurrency-limits and failsafe-go. Every window (250ms by
// default, and at least 50 successful calls), it takes p90, the 90th
// percentile of the latencies of the calls that succeeded in the window,
// and the baseline, the lowest p90 seen; the calls queued in the
// dependency are then about queue = ⌈limit · (1 − baseline/p90)⌉. With
// log = max(1, log10(limit)), alpha = 3·log and beta = 6·log, in this
// order:
//
//   - A window with a dropped call (an error that matches
//     context.DeadlineExceeded, such as that of a timeout that ran out, or
//     [resilience.ErrRejected]; see [WithDropOn]) multiplies the limit by
//     0.9. Drops take no latency: a dropped call is quick and says nothing
//     of the dependency's latency, but much of its health.
//   - A window in which the limit was never half used holds it: the
//     traffic, not the limit, bounded the calls, and their latency says
//     nothing of a higher limit.
//   - A window whose p90 is above [WithMaxHealthyLatency] lowers the limit
//     by log.
//   - queue ≤ log raises the limit by beta, queue < alpha by log; queue >
//     beta lowers it by log; between alpha and beta it holds.
//
// A window whose calls gave 8 times the successes it needs times only
// every other call from then on, and so on down to one call in 16, so that
// under heavy traffic most calls read no clock; a window with fewer than
// twice the successes it needs times twice as many calls again, and one
// that runs a whole window late for want of successes times every call.
// Drops are always counted.
//
// The limit stays within [WithLimits] (1 to 200, from 20) and at most 5×
// the most calls that were in flight at once in the window, so that a
// quiet spell does not leave room for a burst far beyond what was tried.
//
// # Baseline drift
//
// A baseline that follows the latency while the dependency is overloaded
// comes to take the overload for normal: the limit stops falling, or
// rises, while the dependency is still unhealthy (failsafe-go #127,
// Netflix concurrency-limits #134). Here the baseline falls at once to a
// lower p90, but rises (a fifth of the way to p90 per window) only in a
// window in which the limit was never half used: a dependency that got
// slower for good is learnt as soon as the load leaves it room, and
// sustained overload never is. No probe windows pin the concurrency to
// measure the baseline (Envoy #8337 saw those shed healthy traffic).
// [WithMaxHealthyLatency] bounds the latency the limit may grow at, as a
// second guard.
//
// # Refusals
//
// A call beyond the limit is refused at once (or, [WithCoDel], after a
// wait in a queue) with a [*FullError], which matches [ErrFull] and
// [resilience.ErrRejected] and carries a retry-after hint
// ([resilience.RetryAfter]): the last window's p90 latency, about when the
// calls in flight will have left room. Behind
// resiliencehttp.WithLoadShedding, a refused request is answered 503 with
// that hint, rounded up to whole seconds, in Retry-After.
type AdaptiveBulkhead struct {
	inflight  atomic.Int64
	limit     atomic.Int64 // the limit in force: ⌊lim⌋
	peak      atomic.Int64 // the most calls in flight at once in this window
	drops     atomic.Int64 // calls dropped in this window
	windowEnd atomic.Int64 // when the window may end, since epoch
	cur       atomic.Uint32
	lat       [2]hist.Hist  // the latencies of this window's successes in lat[cur]; the other is empty
	p90       atomic.Int64  // the last window's p90 latency, in nanoseconds
	shift     atomic.Uint32 // one call in 2^shift is timed
	rejected  stripe.Counter
	epoch     time.Time
	full      *FullError

	b          Bulkhead // name and observer
	q          *codel   // nil: no queue
	window     time.Duration
	minSamples uint64
	dropOn     func(error) bool

	mu sync.Mutex
	v  vegas // guarded by mu
}

var _ resilience.Policy = (*AdaptiveBulkhead)(nil)

// vegas is the limit's state machine: the limit, its bounds and the
// baseline latency, changed once a window by adjust.
type vegas struct {
	lim, min, max float64
	maxHealthy    time.Duration
	baseline      time.Duration
}

const (
	// dropRatio is what a window with a dropped call multiplies the limit
	// by.
	dropRatio = 0.9
	// maxShift bounds the sampling of latencies: at least one call in
	// 2^maxShift is timed.
	maxShift = 4
)

// adjust changes the limit after a window of samples successes, whose p90
// latency was p90 (if samples > 0), drops dropped calls, and at most peak
// calls in flight at once.
func (v *vegas) adjust(samples uint64, p90 time.Duration, drops, peak int64) {
	lim := v.lim
	appLimited := float64(2*peak) < lim
	if samples > 0 {
		switch {
		case v.baseline == 0 || p90 < v.baseline:
			v.baseline = p90
		case appLimited:
			v.baseline += (p90 - v.baseline) / 5
		}
	}
	log := max(1, math.Log10(lim))
	switch {
	case drops > 0:
		lim *= dropRatio
	case samples == 0 || appLimited: // nothing to go by, or the traffic bounded the calls
	case v.maxHealthy > 0 && p90 > v.maxHealthy:
		lim -= log
	default:
		queue := 0.0 // calls that take no time queue nowhere
		if p90 > 0 {
			queue = math.Ceil(lim * (1 - float64(v.baseline)/float64(p90)))
		}
		switch {
		case queue <= log:
			lim += 6 * log
		case queue < 3*log:
			lim += log
		case queue > 6*log:
			lim -= log
		}
	}
	lim = min(lim, max(5*float64(peak), v.min))
	v.lim = min(max(lim, v.min), v.max)
}

// FullError is returned by an [AdaptiveBulkhead] that refuses a call
// because its limit of calls in flight is reached. It matches [ErrFull] and
// [resilience.ErrRejected]. One FullError is made per AdaptiveBulkhead and
// shared by its refusals, so a refusal allocates nothing.
type FullError struct{ a *AdaptiveBulkhead }

func (*FullError) Error() string { return "bulkhead: full (adaptive limit)" }

// Is reports whether target is [ErrFull] or [resilience.ErrRejected].
func (*FullError) Is(target error) bool { return target == ErrFull || target == resilience.ErrRejected }

// RetryAfter returns the p90 latency of the bulkhead's last window: about
// how long until the calls in flight leave room. It is 0, no hint, before
// the first window ends.
func (e *FullError) RetryAfter() time.Duration { return time.Duration(e.a.p90.Load()) }

// An AdaptiveOption configures an [AdaptiveBulkhead] made by [Adaptive].
// [WithName] and [WithObserver] are AdaptiveOptions too.
type AdaptiveOption interface{ applyAdaptive(*AdaptiveBulkhead) }

type adaptiveOptionFunc func(*AdaptiveBulkhead)

func (f adaptiveOptionFunc) applyAdaptive(a *AdaptiveBulkhead) { f(a) }

// WithLimits bounds the limit to [min, max] and starts it at initial.
// Default: 1, 20, 200. They must satisfy 1 <= min <= initial <= max <=
// 2³¹-1.
func WithLimits(min, initial, max int) AdaptiveOption {
	if min < 1 || initial < min || max < initial || max > math.MaxInt32 {
		panic(fmt.Sprintf("bulkhead: WithLimits(%d, %d, %d): want 1 <= min <= initial <= max <= %d",
			min, initial, max, math.MaxInt32))
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) {
		a.v.min, a.v.lim, a.v.max = float64(min), float64(initial), float64(max)
	})
}

// WithWindow sets how long a window lasts at least: the limit changes at
// most once a window, once the window holds [WithAdaptiveMinSamples]
// successes or a drop. Default: 250ms. d must be positive.
func WithWindow(d time.Duration) AdaptiveOption {
	if d <= 0 {
		panic(fmt.Sprintf("bulkhead: WithWindow(%v): want d > 0", d))
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) { a.window = d })
}

// WithAdaptiveMinSamples sets how many successes a window holds at least
// before its p90 latency changes the limit; a window with a drop ends
// without them. Default: 50. n must be at least 1.
func WithAdaptiveMinSamples(n int) AdaptiveOption {
	if n < 1 {
		panic(fmt.Sprintf("bulkhead: WithAdaptiveMinSamples(%d): want n >= 1", n))
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) { a.minSamples = uint64(n) })
}

// WithMaxHealthyLatency lowers the limit after every window whose p90
// latency is above d while the limit is at least half used, whatever the
// baseline says. Default: 0, none. d must not be negative.
func WithMaxHealthyLatency(d time.Duration) AdaptiveOption {
	if d < 0 {
		panic(fmt.Sprintf("bulkhead: WithMaxHealthyLatency(%v): want d >= 0", d))
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) { a.v.maxHealthy = d })
}

// WithDropOn sets which errors of op are drops, which lower the limit.
// Other errors neither lower it nor count as latencies, and neither does
// an error once the caller's ctx is done: the caller's own deadline or
// cancel is not the dependency's failure. Default: errors that match
// context.DeadlineExceeded (a timeout further in that ran out) or
// [resilience.ErrRejected] (a policy further in refused the call). f must
// not be nil.
func WithDropOn(f func(err error) bool) AdaptiveOption {
	if f == nil {
		panic("bulkhead: WithDropOn: nil f")
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) { a.dropOn = f })
}

// isDrop is the default of WithDropOn.
func isDrop(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, resilience.ErrRejected)
}

// Adaptive returns an AdaptiveBulkhead configured by opts. It panics if an
// option is nil, out of range, or an option of [New] only ([WithMaxWait],
// [WithMaxQueue]).
func Adaptive(opts ...AdaptiveOption) *AdaptiveBulkhead {
	a := &AdaptiveBulkhead{window: 250 * time.Millisecond, minSamples: 50, dropOn: isDrop,
		rejected: stripe.NewCounter(), epoch: time.Now(), v: vegas{lim: 20, min: 1, max: 200}}
	a.b.maxQueue = math.MaxInt32
	for _, o := range opts {
		if o == nil {
			panic("bulkhead: Adaptive: nil Option")
		}
		o.applyAdaptive(a)
	}
	if a.b.maxWait != 0 || a.b.maxQueue != math.MaxInt32 {
		panic("bulkhead: Adaptive: WithMaxWait and WithMaxQueue are options of New; an AdaptiveBulkhead refuses at once")
	}
	a.full = &FullError{a}
	a.limit.Store(int64(a.v.lim))
	a.windowEnd.Store(int64(a.window))
	return a
}

// outcome is what a call that ran tells the limit.
type outcome uint8

const (
	success outcome = iota // a latency
	dropped                // a drop
	ignored                // nothing
)

// Do runs op if fewer calls than the limit are in flight and nobody waits,
// and otherwise returns a [*FullError] at once, without calling op, or,
// [WithCoDel], waits for a permit in the queue. It returns op's error as
// is, the FullError if the wait ran out, or ctx.Err() if ctx is done
// before op is called. Do panics if op is nil.
func (a *AdaptiveBulkhead) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("bulkhead: AdaptiveBulkhead.Do: nil Op")
	}
	if a.full == nil {
		panic("bulkhead: zero AdaptiveBulkhead; use Adaptive")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.b.observer != nil {
		return a.doObserved(ctx, op)
	}
	if !a.acquire() {
		if err := a.queue(ctx); err != nil {
			return err
		}
	}
	if rand.Uint32()&(1<<a.shift.Load()-1) != 0 {
		return a.run(ctx, op, false, 0)
	}
	return a.run(ctx, op, true, time.Since(a.epoch))
}

// doObserved is Do with an observer, which it tells how the call ended
// once the call's permit is free again. It times every call.
func (a *AdaptiveBulkhead) doObserved(ctx context.Context, op resilience.Op) error {
	start := time.Now()
	if !a.acquire() {
		if err := a.queue(ctx); err != nil {
			now, took := event.End(start)
			e := resilience.Event{Time: now, Policy: resilience.PolicyAdaptiveLimiter, Name: a.b.name,
				Kind: resilience.Rejected, Duration: took, Err: err}
			if err == error(a.full) {
				e.Delay = a.full.RetryAfter()
			} else {
				e.Kind = event.Outcome(ctx, err) // the caller gave up waiting
			}
			a.b.observer.Observe(ctx, e)
			return err
		}
	}
	err := a.run(ctx, op, true, start.Sub(a.epoch))
	now, took := event.End(start)
	a.b.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyAdaptiveLimiter, Name: a.b.name,
		Kind: event.Outcome(ctx, err), Duration: took, Err: err})
	return err
}

// run runs op in the permit the caller holds and frees the permit,
// telling the limit how op did: if timed, its latency since start (since
// epoch), and, timed or not, a drop, for which it reads the clock to see
// whether the window is over. If op panics, it frees the permit and tells
// nothing.
func (a *AdaptiveBulkhead) run(ctx context.Context, op resilience.Op, timed bool, start time.Duration) (err error) {
	done := false
	defer func() {
		if !done {
			a.release()
		}
	}()
	err = op(ctx)
	done = true
	o := a.outcome(ctx, err)
	if !timed && o != dropped {
		a.release()
		return err
	}
	end := time.Since(a.epoch)
	a.complete(int64(end), end-start, o)
	return err
}

// outcome classifies what op returned.
func (a *AdaptiveBulkhead) outcome(ctx context.Context, err error) outcome {
	switch {
	case err == nil:
		return success
	case ctx.Err() != nil:
		return ignored
	case a.dropOn(err):
		return dropped
	}
	return ignored
}

// acquire takes a permit if fewer calls than the limit are in flight and
// nobody waits for one.
func (a *AdaptiveBulkhead) acquire() bool {
	if a.q != nil && a.q.waiting.Load() > 0 {
		return false
	}
	return a.tryAcquire()
}

// tryAcquire takes a permit if fewer calls than the limit are in flight.
func (a *AdaptiveBulkhead) tryAcquire() bool {
	for {
		n := a.inflight.Load()
		if n >= a.limit.Load() {
			return false
		}
		if a.inflight.CompareAndSwap(n, n+1) {
			for p := a.peak.Load(); n+1 > p && !a.peak.CompareAndSwap(p, n+1); p = a.peak.Load() {
			}
			return true
		}
	}
}

// queue waits for a permit in the CoDel queue, if there is one, or
// refuses the call.
func (a *AdaptiveBulkhead) queue(ctx context.Context) error {
	if a.q == nil {
		a.rejected.Add(1)
		return a.full
	}
	return a.wait(ctx)
}

// release frees a permit, and hands it to a waiter if any.
func (a *AdaptiveBulkhead) release() {
	a.inflight.Add(-1)
	if a.q != nil && a.q.waiting.Load() > 0 {
		a.dispatch()
	}
}

// complete frees a permit of a call that ended at now (since epoch) after
// lat, and ends the window if it is over.
func (a *AdaptiveBulkhead) complete(now int64, lat time.Duration, o outcome) {
	switch o {
	case success:
		a.lat[a.cur.Load()&1].Add(lat)
	case dropped:
		a.drops.Add(1)
	}
	a.release()
	end := a.windowEnd.Load()
	if now < end {
		return
	}
	if a.lat[a.cur.Load()&1].Count() >= a.minSamples || a.drops.Load() > 0 {
		if a.mu.TryLock() {
			a.endWindow(now)
			a.mu.Unlock()
		}
		return
	}
	if now >= end+int64(a.window) && a.shift.Load() != 0 {
		a.shift.Store(0) // a window late for want of samples: time every call
	}
}

// endWindow changes the limit by the window that ends at now, and starts
// the next. a.mu is held.
func (a *AdaptiveBulkhead) endWindow(now int64) {
	if now < a.windowEnd.Load() { // another goroutine ended it
		return
	}
	i := a.cur.Load() & 1
	a.cur.Store(i ^ 1) // latencies from now on go to the other, empty, histogram
	h := &a.lat[i]
	samples := h.Count()
	var p90 time.Duration
	if samples > 0 {
		p90 = h.Quantile(0.9)
		a.p90.Store(int64(p90))
	}
	h.Reset()
	drops := a.drops.Swap(0)
	peak := a.peak.Swap(a.inflight.Load())
	switch sh := a.shift.Load(); {
	case samples >= 8*a.minSamples && sh < maxShift:
		a.shift.Store(sh + 1)
	case samples < 2*a.minSamples && sh > 0:
		a.shift.Store(sh - 1)
	}
	if samples < a.minSamples {
		samples = 0 // too few to tell the latency: only the drops count
	}
	a.v.adjust(samples, p90, drops, peak)
	a.limit.Store(int64(a.v.lim))
	if a.q != nil && a.q.waiting.Load() > 0 {
		a.dispatch() // the limit may have grown
	}
	a.windowEnd.Store(now + int64(a.window))
}

// AdaptiveMetrics is a snapshot of an [AdaptiveBulkhead].
type AdaptiveMetrics struct {
	// Limit is how many calls may be in flight at once now.
	Limit int64
	// InFlight counts the calls running.
	InFlight int64
	// Waiting counts the calls waiting for a permit, [WithCoDel].
	Waiting int64
	// Rejected counts the calls refused since the bulkhead was made.
	Rejected int64
	// Latency is the p90 latency of the last window, 0 before the first
	// window ends.
	Latency time.Duration
	// Baseline is the latency the bulkhead takes for the dependency's
	// without load, 0 before the first window ends.
	Baseline time.Duration
}

// Metrics returns the bulkhead's limit, counts and latencies.
func (a *AdaptiveBulkhead) Metrics() AdaptiveMetrics {
	if a.full == nil {
		panic("bulkhead: zero AdaptiveBulkhead; use Adaptive")
	}
	a.mu.Lock()
	baseline := a.v.baseline
	a.mu.Unlock()
	var waiting int64
	if a.q != nil {
		waiting = a.q.waiting.Load()
	}
	return AdaptiveMetrics{Limit: a.limit.Load(), InFlight: a.inflight.Load(), Waiting: waiting, Rejected: a.rejected.Sum(),
		Latency: time.Duration(a.p90.Load()), Baseline: baseline}
}
