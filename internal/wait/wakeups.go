package wait

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Wakeups is how a store's writers wake its readers in the same process (an
// outbox's Enqueue its relays, an event store's Append its subscriptions):
// a set of channels with room for one signal each. Wake never blocks and
// costs one atomic load when nobody listens. The zero value is ready to
// use; it is safe for concurrent use.
type Wakeups struct {
	mu   sync.Mutex // held by subscribers as they change subs
	subs atomic.Pointer[[]chan struct{}]
}

// Wake signals every subscriber that has no signal pending.
func (w *Wakeups) Wake() {
	if subs := w.subs.Load(); subs != nil {
		for _, c := range *subs {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// Subscribe returns a channel that receives a signal after Wake, and a func
// that stops the signals.
func (w *Wakeups) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	w.mu.Lock()
	var subs []chan struct{}
	if old := w.subs.Load(); old != nil {
		subs = append(subs, *old...)
	}
	subs = append(subs, c)
	w.subs.Store(&subs)
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		old := *w.subs.Load()
		subs := make([]chan struct{}, 0, len(old))
		for _, s := range old {
			if s != c {
				subs = append(subs, s)
			}
		}
		w.subs.Store(&subs)
	}
}

// Forward calls wait in a loop on a goroutine of its own, until ctx is done
// or stop is called, and passes each return without error to c as a
// signal (one held at most): how a store's readers take wakeups from
// outside the process, such as a PostgreSQL LISTEN. An error of wait goes
// to report, and the loop pauses a second. stop returns once the goroutine
// has ended.
func Forward(ctx context.Context, wait func(context.Context) error, report func(error)) (c <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	signals := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := wait(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				report(err)
				if !Sleep(ctx, time.Second) {
					return
				}
				continue
			}
			select {
			case signals <- struct{}{}:
			default:
			}
		}
	})
	return signals, func() { cancel(); wg.Wait() }
}

// quickLooks are the waits of Idle after a wakeup: a writer wakes its
// readers before it commits, and the commit usually follows within
// milliseconds.
var quickLooks = [...]time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond, 64 * time.Millisecond}

// Idle is how a store's reader (an outbox relay, a subscription) waits
// when it found nothing to do: until a wakeup, or for the poll interval;
// after a wakeup, it takes a few quick looks before it waits the poll
// interval again. The zero value has taken its quick looks. Not safe for
// concurrent use: one per reader.
type Idle struct {
	looks int // quick looks taken since the last wakeup
}

// Worked tells i that the reader found work: the quick looks are over.
func (i *Idle) Worked() { i.looks = len(quickLooks) }

// Wait waits for a signal on wakeups or external (either may be nil), for
// the next quick look, or for poll, and reports whether ctx is still not
// done.
func (i *Idle) Wait(ctx context.Context, poll time.Duration, wakeups, external <-chan struct{}) bool {
	d := poll
	if i.looks < len(quickLooks) {
		d = min(quickLooks[i.looks], d)
		i.looks++
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wakeups:
		i.looks = 0
	case <-external:
		i.looks = 0
	case <-t.C:
	}
	return true
}
