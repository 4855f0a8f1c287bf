package throttle

import (
	"sync"
	"sync/atomic"
	"time"
)

// window counts requests and accepts over a span of time cut into buckets,
// in fixed memory: a bucket that falls out of the span is emptied and reused
// for the newest tick. Counting is lock-free: a request adds to the newest
// bucket, and reads the totals of the others, which are summed once per
// tick, under mu, when the window moves on. Used from one goroutine it is
// exact; under concurrency a count that races with a move may land one
// bucket late, or be missing from the totals until the next move.
type window struct {
	epoch   time.Time // tick 0 starts here
	width   int64     // of one bucket, in nanoseconds
	n       int64     // buckets
	recent  int64     // buckets of the recent span, the newest included; 0 for none
	buckets []bucket  // bucket of tick t at t % n

	tick   atomic.Int64           // the newest tick the window has seen
	newest atomic.Pointer[bucket] // its bucket
	// The totals of the buckets in the window but the newest, and of
	// those in the recent span but the newest.
	pastRequests, pastAccepts             atomic.Int64
	pastRecentRequests, pastRecentAccepts atomic.Int64

	mu sync.Mutex // held to move the window on
}

type bucket struct {
	tick              atomic.Int64
	requests, accepts atomic.Int64
}

// counts are the requests and accepts over the window and over its recent
// span.
type counts struct {
	requests, accepts             int64
	recentRequests, recentAccepts int64
}

// newWindow returns a window of span in n buckets, whose recent span is
// recovery, rounded up to whole buckets (none for 0).
func newWindow(epoch time.Time, span time.Duration, n int, recovery time.Duration) *window {
	w := &window{epoch: epoch, width: int64(span) / int64(n), n: int64(n), buckets: make([]bucket, n)}
	if recovery > 0 {
		w.recent = min((int64(recovery)+w.width-1)/w.width, w.n)
	}
	for i := range w.buckets {
		w.buckets[i].tick.Store(-int64(n)) // out of the window
	}
	w.buckets[0].tick.Store(0)
	w.newest.Store(&w.buckets[0])
	return w
}

// at returns the tick of now, which is elapsed since the epoch.
func (w *window) at(elapsed time.Duration) int64 { return int64(elapsed) / w.width }

// now moves the window on to the tick of now, which is elapsed since the
// epoch, if it is not there yet: within the newest tick, as nearly every
// call is, without a division.
func (w *window) now(elapsed time.Duration) {
	if t := w.tick.Load(); int64(elapsed) >= (t+1)*w.width {
		w.advance(w.at(elapsed))
	}
}

// advance moves the window on to tick t, if it is not there or past it
// yet, and returns the newest tick.
func (w *window) advance(t int64) int64 {
	if cur := w.tick.Load(); t <= cur {
		return cur
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.tick.Load()
	if t <= cur {
		return cur
	}
	for i := max(cur+1, t-w.n+1); i <= t; i++ {
		b := &w.buckets[i%w.n]
		b.requests.Store(0)
		b.accepts.Store(0)
		b.tick.Store(i)
	}
	var c counts
	for i := range w.buckets {
		b := &w.buckets[i]
		if bt := b.tick.Load(); bt > t-w.n && bt < t {
			r, a := b.requests.Load(), b.accepts.Load()
			c.requests += r
			c.accepts += a
			if bt > t-w.recent {
				c.recentRequests += r
				c.recentAccepts += a
			}
		}
	}
	w.pastRequests.Store(c.requests)
	w.pastAccepts.Store(c.accepts)
	w.pastRecentRequests.Store(c.recentRequests)
	w.pastRecentAccepts.Store(c.recentAccepts)
	w.newest.Store(&w.buckets[t%w.n])
	w.tick.Store(t)
	return t
}

// request counts a request in the newest bucket, and returns that bucket
// and its tick, for the request's accept, and the counts from before the
// request.
func (w *window) request() (b *bucket, tick int64, c counts) {
	b = w.newest.Load()
	tick = b.tick.Load()
	r, a := b.requests.Add(1)-1, b.accepts.Load()
	c.requests, c.accepts = r+w.pastRequests.Load(), a+w.pastAccepts.Load()
	if w.recent > 0 {
		c.recentRequests, c.recentAccepts = r+w.pastRecentRequests.Load(), a+w.pastRecentAccepts.Load()
	}
	return b, tick, c
}

// accept counts an accept for a request counted in bucket b at tick t, in
// b, so that a request and its accept leave the window together; an accept
// whose request has left the window is not counted.
func (w *window) accept(b *bucket, t int64) {
	if b.tick.Load() != t {
		return
	}
	b.accepts.Add(1)
	if cur := w.tick.Load(); t != cur {
		w.pastAccepts.Add(1)
		if t > cur-w.recent {
			w.pastRecentAccepts.Add(1)
		}
	}
}

// counts returns the counts over the window and its recent span.
func (w *window) counts() counts {
	b := &w.buckets[w.tick.Load()%w.n]
	r, a := b.requests.Load(), b.accepts.Load()
	c := counts{requests: r + w.pastRequests.Load(), accepts: a + w.pastAccepts.Load()}
	if w.recent > 0 {
		c.recentRequests, c.recentAccepts = r+w.pastRecentRequests.Load(), a+w.pastRecentAccepts.Load()
	}
	return c
}

// rejection returns the probability with which a request is rejected
// after requests and accepts: max(0, (requests - k·accepts) / (requests +
// 1)), capped at ceiling.
func rejection(requests, accepts int64, k, ceiling float64) float64 {
	p := (float64(requests) - k*float64(accepts)) / float64(requests+1)
	return min(max(p, 0), ceiling)
}
