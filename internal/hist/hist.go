// Package hist counts durations in a fixed-memory histogram of logarithmic
// buckets, for the policies that adapt to the latencies they see: the
// adaptive timeout's quantile and the adaptive bulkhead's windowed p90.
//
// A bucket spans at most 1/16 of its lower bound (16 buckets per power of
// two), so a quantile read from the histogram is at most 6.25 % above the
// sample it stands for, and never below it. Durations from 0 to 2⁴⁰ ns
// (about 18 minutes) have buckets of their own; longer ones share the last.
package hist

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits = 4
	sub     = 1 << subBits // buckets per power of two
	topBits = 40           // durations of 2^topBits ns or more share the last bucket

	// Buckets is the number of buckets of a [Hist].
	Buckets = sub + (topBits-subBits)*sub
)

// Bucket returns the index of the bucket that counts d; a negative d
// counts as 0.
func Bucket(d time.Duration) int {
	if d < sub {
		return int(max(d, 0))
	}
	e := bits.Len64(uint64(d)) - 1 // 2^e <= d < 2^(e+1), e >= subBits
	if e >= topBits {
		return Buckets - 1
	}
	m := int(uint64(d)>>(e-subBits)) & (sub - 1)
	return sub + (e-subBits)*sub + m
}

// Upper returns the largest duration bucket b counts (for the last bucket,
// the largest it counts apart from the durations too long for any bucket).
func Upper(b int) time.Duration {
	if b < sub {
		return time.Duration(b)
	}
	e := (b-sub)/sub + subBits
	m := (b - sub) % sub
	return time.Duration((uint64(sub+m+1) << (e - subBits)) - 1)
}

// Hist counts durations by bucket. Its zero value is empty and ready to
// use. Its methods are safe for concurrent use, but a Reset, Merge, Sub or
// Quantile at the same time as an Add may count that Add in part (in the
// total but not in its bucket, or the other way round), or lose it.
type Hist struct {
	n      atomic.Uint64
	counts [Buckets]atomic.Uint32
}

// Add counts d.
func (h *Hist) Add(d time.Duration) {
	h.counts[Bucket(d)].Add(1)
	h.n.Add(1)
}

// Count returns how many durations h counts.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Reset empties h.
func (h *Hist) Reset() {
	if h.n.Load() == 0 {
		return
	}
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
}

// Merge adds the counts of o to h.
func (h *Hist) Merge(o *Hist) {
	if o.n.Load() == 0 {
		return
	}
	for i := range h.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
}

// Sub takes the counts of o, which h holds, out of h.
func (h *Hist) Sub(o *Hist) {
	if o.n.Load() == 0 {
		return
	}
	for i := range h.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(-c)
		}
	}
	h.n.Add(-o.n.Load())
}

// Quantile returns the upper bound of the bucket that holds the q-quantile
// of the durations h counts: the ⌈q·n⌉-th smallest of n, or the smallest for
// q = 0. It returns 0 for an empty h. q must be in [0, 1].
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1) // 1-based rank of the sample
	// Walk down from the top while the samples above the bucket are fewer
	// than n-rank+1: the high quantiles the policies read are found in a
	// few steps.
	above := n - rank // samples allowed above the one we want
	var seen uint64
	lowest := -1
	for b := Buckets - 1; b >= 0; b-- {
		c := h.counts[b].Load()
		seen += uint64(c)
		if seen > above {
			return Upper(b)
		}
		if c != 0 {
			lowest = b
		}
	}
	// The buckets hold fewer than the total, which an Add under way has
	// counted and its bucket not yet: the lowest duration counted.
	if lowest < 0 {
		return 0
	}
	return Upper(lowest)
}

// Window counts the durations of the last span of time, in slots that it
// drops one at a time as they age: a read covers between span·(slots-1)/slots
// and span of the past. Its memory is fixed. Times are in nanoseconds from
// any origin, and never go back.
//
// Rotate, Add and Quantile must be called under the caller's lock. AddNow
// may be called without it, at the same time as any of them, at the cost of
// rare inaccuracy: a duration added as its slot is dropped (which takes a
// whole span without a Rotate) may be counted in the total though no slot
// holds it, until the window is made again.
type Window struct {
	slots []Hist
	total Hist
	width int64        // nanoseconds per slot
	epoch atomic.Int64 // index of the current slot since the origin
}

// NewWindow returns a Window of span in slots slots. span/slots must be at
// least a nanosecond.
func NewWindow(span time.Duration, slots int) *Window {
	return &Window{slots: make([]Hist, slots), width: int64(span) / int64(slots)}
}

// Add counts d at now.
func (w *Window) Add(now int64, d time.Duration) {
	w.Rotate(now)
	w.AddNow(d)
}

// AddNow counts d in the current slot, for a now before [Window.Next].
func (w *Window) AddNow(d time.Duration) {
	w.slots[w.epoch.Load()%int64(len(w.slots))].Add(d) // the slot first, then the total: see Rotate
	w.total.Add(d)
}

// Rotate drops the slots that aged out of the window at now, and reports
// whether a slot began since the last Add or Rotate.
func (w *Window) Rotate(now int64) bool {
	e, epoch := now/w.width, w.epoch.Load()
	if e <= epoch {
		return false
	}
	// Each dropped slot is taken out of the total, then emptied. The
	// counts wrap, so an AddNow that counts into the slot before the Sub
	// and into the total after it leaves both right once it is done; one
	// that counts into the slot between the Sub and the Reset is lost from
	// the slot but kept in the total.
	n := int64(len(w.slots))
	for i := epoch + 1; i <= e && i <= epoch+n; i++ {
		s := &w.slots[i%n]
		w.total.Sub(s)
		s.Reset()
	}
	w.epoch.Store(e)
	return true
}

// Next returns the time at which the next slot begins.
func (w *Window) Next() int64 { return (w.epoch.Load() + 1) * w.width }

// Count returns how many durations the window counts.
func (w *Window) Count() uint64 { return w.total.Count() }

// Quantile returns the q-quantile of the window's durations as
// [Hist.Quantile] does.
func (w *Window) Quantile(q float64) time.Duration { return w.total.Quantile(q) }
