// Package stripe counts in striped atomic counters, so that goroutines
// running at once on different processors mostly write different cache
// lines. A goroutine picks its stripe by the address of its stack: free to
// compute, stable while the goroutine runs, and different for goroutines
// that run side by side. Goroutines that share a stripe still count
// correctly; they only contend.
package stripe

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Count returns the number of stripes to use: a power of two, at least four
// times GOMAXPROCS and at least 16, so that goroutines running side by side
// seldom share one, and at most 64.
func Count() int {
	return 1 << bits.Len(uint(min(max(4*runtime.GOMAXPROCS(0), 16), 64)-1))
}

// Index returns the calling goroutine's stripe in [0, mask], where mask is
// a power of two minus one.
func Index(mask int) int {
	var onStack byte
	h := (uint64(uintptr(unsafe.Pointer(&onStack))) >> 11) * 0x9E3779B97F4A7C15
	return int(h>>40) & mask
}

// cell is an atomic counter alone on its cache lines (two, for processors
// that fetch lines in pairs).
type cell struct {
	n atomic.Int64
	_ [120]byte
}

// Counter is a striped int64 counter. Make one with NewCounter; it is safe
// for concurrent use.
type Counter []cell

// NewCounter returns a Counter of Count() stripes.
func NewCounter() Counter { return make(Counter, Count()) }

// Add adds d to the calling goroutine's stripe.
func (c Counter) Add(d int64) { c[Index(len(c)-1)].n.Add(d) }

// Sum returns the total over all stripes. Adds that run at the same time may
// or may not be counted.
func (c Counter) Sum() int64 {
	var t int64
	for i := range c {
		t += c[i].n.Load()
	}
	return t
}
