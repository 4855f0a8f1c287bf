package hedge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/hist"
)

const (
	parts    = 4   // rotating parts of the window
	every    = 64  // latencies recorded between recomputations of the quantile
	minCount = 100 // latencies in the window before the quantile is used
)

// latencies keeps the latencies of recent first attempts in a windowed
// histogram of fixed memory, and a cached quantile of them. Recording is an
// atomic add, but once every 64 latencies and once a part of the window,
// when the quantile is recomputed under the lock; reading the quantile is an
// atomic load. Times are since the hedger's epoch.
type latencies struct {
	q    float64
	span int64 // of the window, in nanoseconds
	last int64 // of the window's last part, span less a part

	records atomic.Int64
	delay   atomic.Int64 // the cached quantile, or -1 while too few are kept
	next    atomic.Int64 // when the window's next part begins

	mu sync.Mutex // held to rotate the window and read its quantile
	w  *hist.Window
}

func newLatencies(q float64, window time.Duration) *latencies {
	l := &latencies{q: q, span: int64(window), last: int64(window) - int64(window)/parts,
		w: hist.NewWindow(window, parts)}
	l.delay.Store(-1)
	l.next.Store(l.w.Next())
	return l
}

// record keeps a latency of d, at now.
func (l *latencies) record(now, d time.Duration) {
	if int64(now) >= l.next.Load() {
		l.mu.Lock()
		l.w.Rotate(int64(now))
		l.next.Store(l.w.Next())
		l.compute()
		l.mu.Unlock()
	}
	l.w.AddNow(d)
	if l.records.Add(1)%every == 0 {
		l.mu.Lock()
		l.compute()
		l.mu.Unlock()
	}
}

// compute recomputes the cached quantile. l.mu must be held.
func (l *latencies) compute() {
	if l.w.Count() < minCount {
		l.delay.Store(-1)
		return
	}
	l.delay.Store(int64(l.w.Quantile(l.q)))
}

// quantile returns the cached quantile at now, and false while the window
// holds too few latencies or has been left without one for so long that
// every latency it held has aged out.
func (l *latencies) quantile(now time.Duration) (time.Duration, bool) {
	if int64(now) >= l.next.Load()+l.last {
		return 0, false
	}
	d := l.delay.Load()
	return time.Duration(d), d >= 0
}
