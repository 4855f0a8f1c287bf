package circuitbreaker

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/stripe"
)

// An outcome code as a window records it: a success is 0.
const (
	failBit uint32 = 1 << iota
	slowBit
)

// counts are a window's totals.
type counts struct {
	calls, failures, slow int64
}

// add counts one outcome with the given code.
func (c *counts) add(code uint32) {
	c.calls++
	if code&failBit != 0 {
		c.failures++
	}
	if code&slowBit != 0 {
		c.slow++
	}
}

// A window counts the outcomes recorded in a closed (or metrics-only) epoch:
// the last n calls ([countWindow]) or the calls of the last span of time
// ([timeWindow]). Both take the time of each outcome, on the breaker's
// monotonic clock; a count window does not use it. A success takes no lock
// unless success reports that the thresholds need a check; failures and slow
// calls are recorded under the window's lock.
type window interface {
	// success records a success at now and reports whether the caller
	// must check the thresholds, by calling add with code 0.
	success(now time.Duration) bool
	// add records an outcome with the given code at now (code 0 records
	// nothing more: the success was counted by success) and returns the
	// window's totals, which the caller checks against the thresholds.
	add(now time.Duration, code uint32) counts
	// counts returns the window's totals at now and records nothing.
	counts(now time.Duration) counts
}

// A windowKind makes the windows of one configuration, a new one for each
// closed epoch: [WithCountWindow] and [WithTimeWindow] set it.
type windowKind interface {
	// newWindow returns an empty window that starts at now and checks the
	// thresholds once it holds minCalls outcomes.
	newWindow(minCalls int64, now time.Duration) window
	// capacity is the most outcomes a window can hold.
	capacity() int64
	// clocked reports whether the window uses the time of its outcomes.
	clocked() bool
}

// countKind makes count windows of size calls.
type countKind struct{ size int64 }

func (k countKind) newWindow(minCalls int64, _ time.Duration) window {
	return newCountWindow(k.size, minCalls)
}
func (k countKind) capacity() int64 { return k.size }
func (countKind) clocked() bool     { return false }

// timeKind makes time windows of span split in buckets.
type timeKind struct {
	span    time.Duration
	buckets int64
}

func (k timeKind) newWindow(minCalls int64, now time.Duration) window {
	return newTimeWindow(k.span, k.buckets, minCalls, now)
}
func (timeKind) capacity() int64 { return math.MaxInt64 }
func (timeKind) clocked() bool   { return true }

// positions is a FIFO of the positions (outcome numbers) of the failures or
// slow calls in a count window.
type positions struct {
	buf     []int64
	head, n int
}

func (p *positions) push(pos int64, capacity int64) {
	if p.buf == nil {
		p.buf = make([]int64, capacity)
	}
	p.buf[(p.head+p.n)%len(p.buf)] = pos
	p.n++
}

// evict drops the positions at or before upTo.
func (p *positions) evict(upTo int64) {
	for p.n > 0 && p.buf[p.head] <= upTo {
		p.head = (p.head + 1) % len(p.buf)
		p.n--
	}
}

// countWindow holds the outcomes of the last size calls. A success that
// cannot trip the breaker costs one striped increment; failures and slow calls
// are recorded under a lock with their positions, and the window's totals are
// derived from them: the failures in the window are those whose position is
// within size of the number of outcomes so far.
type countWindow struct {
	size, minCalls int64
	reached        atomic.Bool    // at least minCalls outcomes: a success cannot trip
	hits           stripe.Counter // successes recorded without the lock, striped

	mu          sync.Mutex
	locked      int64 // outcomes recorded under mu
	fails, slow positions
}

// newCountWindow returns a window of the last size calls that evaluates the
// thresholds once it holds minCalls of them.
func newCountWindow(size, minCalls int64) *countWindow {
	w := &countWindow{size: size, minCalls: minCalls, hits: stripe.NewCounter()}
	w.reached.Store(minCalls == 0)
	return w
}

// success records a success and reports whether the thresholds need a check:
// only while the window has fewer than minCalls outcomes can a success
// complete the minimum and trip the breaker.
func (w *countWindow) success(time.Duration) bool {
	w.hits.Add(1)
	return !w.reached.Load()
}

// add records a failure or slow call (code != 0) under the lock, or nothing
// for code 0, and returns the window's totals, which the caller checks
// against the thresholds. now is not used: a count window's clock is the
// number of outcomes.
func (w *countWindow) add(_ time.Duration, code uint32) counts { return w.update(code, true) }

// counts returns the window's totals.
func (w *countWindow) counts(time.Duration) counts { return w.update(0, false) }

// update is add and counts: it records code under the lock and returns the
// window's totals. checking says the caller checks them against the
// thresholds: only such a caller may conclude that successes need no more
// checks, or a success racing with a reader of the metrics could miss the
// trip it should cause.
func (w *countWindow) update(code uint32, checking bool) counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	if code != 0 {
		w.locked++
	}
	total := w.hits.Sum() + w.locked
	// Evict first: the positions left are then within size-1 of total,
	// which leaves room for this one.
	w.fails.evict(total - w.size)
	w.slow.evict(total - w.size)
	if code&failBit != 0 {
		w.fails.push(total, w.size)
	}
	if code&slowBit != 0 {
		w.slow.push(total, w.size)
	}
	if checking && total >= w.minCalls {
		w.reached.Store(true)
	}
	return counts{calls: min(total, w.size), failures: int64(w.fails.n), slow: int64(w.slow.n)}
}

// timeWindow holds the outcomes recorded in the last n bucket widths of the
// monotonic clock. A success that cannot trip the breaker costs two striped
// increments (the stripe's total and its bucket) on one cache line; failures
// and slow calls are recorded under a lock. Moving to a new bucket takes the
// lock, once per bucket width, and subtracts the buckets it evicts.
//
// The totals never go negative: a success is added to its stripe's total
// before its bucket, and an evicted bucket is swapped to zero before its
// count is subtracted from the total.
type timeWindow struct {
	width       time.Duration
	n, minCalls int64
	head        atomic.Int64 // index of the newest bucket, in widths since the breaker's start
	// check is set when a success may trip the breaker: the window has
	// fewer than minCalls calls, or evicted outcomes since the thresholds
	// were last checked.
	check atomic.Bool

	// cells[s*stride] is stripe s's count of successes in the window, and
	// cells[s*stride+1+b] its count in bucket b.
	cells          []atomic.Int64
	stride, stripe int

	mu     sync.Mutex
	locked []counts // per bucket, outcomes recorded under mu
	sum    counts   // totals of locked
}

// newTimeWindow returns a window of span split in n buckets, starting at
// now, that checks the thresholds once it holds minCalls calls.
func newTimeWindow(span time.Duration, n, minCalls int64, now time.Duration) *timeWindow {
	stripes := stripe.Count()
	stride := int((n + 1 + 15) / 16 * 16) // whole 128-byte lines per stripe
	w := &timeWindow{
		width: span / time.Duration(n), n: n, minCalls: minCalls,
		cells: make([]atomic.Int64, stripes*stride), stride: stride, stripe: stripes - 1,
		locked: make([]counts, n),
	}
	w.head.Store(int64(now / w.width))
	w.check.Store(minCalls > 0)
	return w
}

// success records a success at now and reports whether the thresholds need
// a check.
func (w *timeWindow) success(now time.Duration) bool {
	idx := int64(now / w.width)
	if head := w.head.Load(); idx > head {
		w.mu.Lock()
		w.advanceLocked(idx)
		w.mu.Unlock()
	} else if idx <= head-w.n {
		return false // finished a whole window ago
	}
	base := stripe.Index(w.stripe) * w.stride
	w.cells[base].Add(1)
	w.cells[base+1+int(idx%w.n)].Add(1)
	return w.check.Load()
}

// add records a failure or slow call (code != 0) at now, or nothing for code
// 0, and returns the window's totals, which the caller checks against the
// thresholds.
func (w *timeWindow) add(now time.Duration, code uint32) counts {
	return w.update(now, code, true)
}

// counts returns the totals of the window that ends at now.
func (w *timeWindow) counts(now time.Duration) counts {
	return w.update(now, 0, false)
}

// update is add and counts: it takes w.mu, moves the window to now,
// records code, and, when checking, whether the window is below its
// minimum of calls.
func (w *timeWindow) update(now time.Duration, code uint32, checking bool) counts {
	idx := int64(now / w.width)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advanceLocked(idx)
	if code != 0 && idx > w.head.Load()-w.n {
		w.locked[idx%w.n].add(code)
		w.sum.add(code)
	}
	c := w.sum
	for s := 0; s <= w.stripe; s++ {
		c.calls += w.cells[s*w.stride].Load()
	}
	if checking {
		w.check.Store(c.calls < w.minCalls)
	}
	return c
}

// advanceLocked makes idx the newest bucket, emptying the buckets that fall
// out of the window.
func (w *timeWindow) advanceLocked(idx int64) {
	head := w.head.Load()
	if idx <= head {
		return
	}
	for i := max(head+1, idx-w.n+1); i <= idx; i++ {
		b := int(i % w.n)
		for s := 0; s <= w.stripe; s++ {
			base := s * w.stride
			w.cells[base].Add(-w.cells[base+1+b].Swap(0))
		}
		l := &w.locked[b]
		w.sum.calls -= l.calls
		w.sum.failures -= l.failures
		w.sum.slow -= l.slow
		*l = counts{}
	}
	w.head.Store(idx)
	w.check.Store(true)
}
