package bulkhead

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// codel is the queue of an AdaptiveBulkhead made WithCoDel: calls that
// find the limit reached wait in it for a permit, first come first served
// while it drains, newest first (adaptive LIFO) once it has not been empty
// for an interval, when those who waited longest have likely given up.
type codel struct {
	target, interval time.Duration
	waiting          atomic.Int64 // len(waiters), read without the lock

	mu        sync.Mutex
	waiters   []chan struct{} // oldest first, each closed when handed a permit; guarded by mu
	lastEmpty int64           // when the queue was last seen empty, since epoch; guarded by mu
}

// WithCoDel makes calls that find the limit reached wait for a permit
// instead of being refused at once, in a queue run by controlled delay
// (CoDel) with adaptive LIFO, as Facebook's servers do ("Fail at Scale",
// ACM Queue 2015): while the queue has been empty at some time in the last
// interval, a call waits up to interval and permits go first come, first
// served; once it has not, the queue is standing, not absorbing a burst,
// and a call waits at most target and permits go to the newest call
// first, whose caller is the likeliest to be still waiting. A call whose
// wait runs out is refused with the [*FullError]; one whose ctx ends first
// gets ctx.Err(). Target 5ms and interval 100ms suit most servers. Default:
// no queue. target must be positive and interval at least target.
func WithCoDel(target, interval time.Duration) AdaptiveOption {
	if target <= 0 || interval < target {
		panic(fmt.Sprintf("bulkhead: WithCoDel(%v, %v): want 0 < target <= interval", target, interval))
	}
	return adaptiveOptionFunc(func(a *AdaptiveBulkhead) { a.q = &codel{target: target, interval: interval} })
}

// congested reports whether the queue has not been empty since an interval
// before now. q.mu is held.
func (q *codel) congested(now int64) bool {
	return len(q.waiters) > 0 && now-q.lastEmpty > int64(q.interval)
}

// wait queues the caller for a permit and waits for it; it returns nil
// once the caller holds a permit, the FullError if its wait ran out, or
// ctx.Err().
func (a *AdaptiveBulkhead) wait(ctx context.Context) error {
	q := a.q
	q.mu.Lock()
	q.waiting.Add(1)
	// Take a permit freed since acquire looked, if nobody is ahead: a
	// release that does not see this waiter frees its permit before this
	// looks, one that does dispatches it under the lock, after this
	// waiter has joined the queue.
	if len(q.waiters) == 0 && a.tryAcquire() {
		q.waiting.Add(-1)
		q.mu.Unlock()
		return nil
	}
	now := int64(time.Since(a.epoch))
	if len(q.waiters) == 0 {
		q.lastEmpty = now
	}
	d := q.interval
	if q.congested(now) {
		d = q.target
	}
	ready := make(chan struct{})
	q.waiters = append(q.waiters, ready)
	q.mu.Unlock()

	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case <-ready:
		return nil
	case <-t.C:
		err = a.full
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	select {
	case <-ready:
		// Handed a permit as the wait ended: keep it if only the wait
		// ran out, give it on otherwise.
		q.mu.Unlock()
		if err == error(a.full) {
			return nil
		}
		a.release()
		return err
	default:
	}
	q.waiters = slices.DeleteFunc(q.waiters, func(w chan struct{}) bool { return w == ready })
	q.waiting.Add(-1)
	if len(q.waiters) == 0 {
		q.lastEmpty = int64(time.Since(a.epoch))
	}
	q.mu.Unlock()
	if err == error(a.full) {
		a.rejected.Add(1)
	}
	return err
}

// dispatch hands permits to waiters while the limit leaves room: to the
// oldest, or, in a congested queue, to the newest.
func (a *AdaptiveBulkhead) dispatch() {
	q := a.q
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.waiters) > 0 && a.tryAcquire() {
		now := int64(time.Since(a.epoch))
		var ready chan struct{}
		if q.congested(now) {
			ready = q.waiters[len(q.waiters)-1]
			q.waiters = q.waiters[:len(q.waiters)-1]
		} else {
			ready = q.waiters[0]
			q.waiters = q.waiters[1:]
		}
		q.waiting.Add(-1)
		if len(q.waiters) == 0 {
			q.lastEmpty = now
		}
		close(ready)
	}
}
