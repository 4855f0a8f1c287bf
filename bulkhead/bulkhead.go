// Package bulkhead bounds how many calls to a dependency run at once, so
// that a slow dependency ties up a few goroutines and connections rather
// than all of them.
//
//	b := bulkhead.New(10) // ten calls at once; the eleventh is refused
//	err := b.Do(ctx, func(ctx context.Context) error {
//		return reports.Generate(ctx, req)
//	})
//	if errors.Is(err, bulkhead.ErrFull) {
//		// Refused without calling reports.
//	}
//
// By default a call that finds every slot taken is refused at once with
// [ErrFull], which matches [resilience.ErrRejected]. With [WithMaxWait] it
// waits for a slot, in arrival order, for as long as that and its ctx allow;
// [WithMaxQueue] bounds how many wait.
//
// # Adaptive limit
//
// A fixed number of slots is a guess at what the dependency can take, and
// the right number moves with its capacity. [Adaptive] makes a bulkhead
// whose limit follows the dependency's latency: it grows while latency
// stays at its baseline and shrinks as calls queue up in the dependency or
// time out, within 1 to 200 calls at once, from 20:
//
//	b := bulkhead.Adaptive()
//	err := b.Do(ctx, func(ctx context.Context) error {
//		return reports.Generate(ctx, req)
//	})
//
// Put a timeout inside it, so that a dependency that stops answering
// lowers the limit. Its refusals carry a retry-after hint, which
// resiliencehttp.WithLoadShedding sends as Retry-After. A server that
// would rather queue a burst than refuse it gives it [WithCoDel]: a queue
// by controlled delay with adaptive LIFO, bounded in time rather than
// length. See
// [AdaptiveBulkhead] for the algorithm and its guards against a baseline
// that drifts under sustained overload.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, how each call ended: a
// [resilience.Rejected] event for a call refused with ErrFull, or the
// outcome of op, with how long the call took, the wait for a slot
// included. A bulkhead with no observer builds no event, and with one a
// call allocates nothing more. An [AdaptiveBulkhead]'s events are of
// [resilience.PolicyAdaptiveLimiter], and its Rejected events carry the
// retry-after hint in Delay.
package bulkhead

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/stripe"
)

// ErrFull is returned by a Bulkhead that refuses a call because every slot
// is taken (and, with waiting, the wait ran out or the queue is full). It
// matches [resilience.ErrRejected]. It carries no retry-after hint: when a
// slot frees depends on the calls running, which nobody can tell.
var ErrFull error = resilience.Rejection("bulkhead: full")

// Bulkhead admits at most a fixed number of calls at once. Make one with
// [New]; it is safe for concurrent use. The zero value is not usable; use
// New: its methods panic. Most callers want [Bulkhead.Do]; [Bulkhead.TryDo]
// never waits.
//
// Taking a free slot is one compare-and-swap on a word that counts the calls
// running and the calls waiting; a lock is taken only to queue a waiter or to
// hand a slot to one. While anyone waits, a slot that frees goes to the first
// waiter, never to a newcomer.
type Bulkhead struct {
	max      int64
	maxWait  time.Duration
	maxQueue int
	state    atomic.Uint64 // running in the low 32 bits, waiting in the high 32
	rejected stripe.Counter
	name     string
	observer resilience.Observer

	mu      sync.Mutex
	waiters []chan struct{} // oldest first, each closed when handed a slot; guarded by mu
}

var _ resilience.Policy = (*Bulkhead)(nil)

const waitingOne = 1 << 32

func running(s uint64) int64 { return int64(s & (waitingOne - 1)) }
func waiting(s uint64) int64 { return int64(s >> 32) }

// An Option configures a [Bulkhead] made by [New]. [WithName] and
// [WithObserver] configure an [AdaptiveBulkhead] made by [Adaptive] too:
// every Option is an [AdaptiveOption].
type Option interface {
	AdaptiveOption
	apply(*Bulkhead)
}

type optionFunc func(*Bulkhead)

func (f optionFunc) apply(b *Bulkhead) { f(b) }

// applyAdaptive applies f to the Bulkhead that holds a's name and
// observer; Adaptive refuses the options that set anything else.
func (f optionFunc) applyAdaptive(a *AdaptiveBulkhead) { f(&a.b) }

// WithMaxWait lets a call wait up to d for a slot when every slot is taken,
// or until its ctx is done if that comes first. Waiters get slots in the
// order they came. Default: 0, refuse at once. d must not be negative.
func WithMaxWait(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("bulkhead: WithMaxWait(%v): want d >= 0", d))
	}
	return optionFunc(func(b *Bulkhead) { b.maxWait = d })
}

// WithMaxQueue bounds how many calls wait for a slot at once; a call that
// would be one more is refused at once. It matters only with WithMaxWait.
// Default: no bound. n must not be negative.
func WithMaxQueue(n int) Option {
	if n < 0 {
		panic(fmt.Sprintf("bulkhead: WithMaxQueue(%d): want n >= 0", n))
	}
	return optionFunc(func(b *Bulkhead) { b.maxQueue = n })
}

// WithName names the bulkhead in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(b *Bulkhead) { b.name = name })
}

// WithObserver sends the bulkhead's events to o (see
// [resilience.Observer]), on the goroutine that called Do or TryDo, with
// its ctx, once the call's slot is free again: each call ends with a
// [resilience.Rejected] event when the bulkhead refused it with [ErrFull],
// and otherwise with a [resilience.Success], [resilience.Failure] or
// [resilience.Ignored] event (an error once the caller's ctx was done, the
// wait for a slot cut short included), with how long the call took, the
// wait included. A call whose ctx is done before it starts, or whose op
// panics, makes no event. Without an observer, the bulkhead builds no
// event. Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("bulkhead: WithObserver: nil Observer")
	}
	return optionFunc(func(b *Bulkhead) { b.observer = o })
}

// New returns a Bulkhead of maxConcurrent slots, configured by opts. It
// panics if maxConcurrent is not in [1, 2³¹-1] or an option is nil or out of
// range.
func New(maxConcurrent int, opts ...Option) *Bulkhead {
	if maxConcurrent < 1 || maxConcurrent > math.MaxInt32 {
		panic(fmt.Sprintf("bulkhead: New(%d): want 1 <= maxConcurrent <= %d", maxConcurrent, math.MaxInt32))
	}
	b := &Bulkhead{max: int64(maxConcurrent), maxQueue: math.MaxInt32, rejected: stripe.NewCounter()}
	for _, o := range opts {
		if o == nil {
			panic("bulkhead: New: nil Option")
		}
		o.apply(b)
	}
	return b
}

// Do runs op in a slot, waiting for one as [WithMaxWait] allows, and frees
// the slot when op returns or panics. It returns op's error as is, [ErrFull]
// when no slot came in time, or ctx.Err() when ctx is done first. Do panics
// if op is nil.
func (b *Bulkhead) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("bulkhead: Bulkhead.Do: nil Op")
	}
	b.mustBeMade()
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.observer != nil {
		return b.doObserved(ctx, op, true)
	}
	if !b.tryAcquire() {
		if err := b.wait(ctx); err != nil {
			return err
		}
	}
	defer b.release()
	return op(ctx)
}

// TryDo runs op if a slot is free now, and otherwise returns [ErrFull]
// without waiting, whatever [WithMaxWait] says. TryDo panics if op is nil.
func (b *Bulkhead) TryDo(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("bulkhead: Bulkhead.TryDo: nil Op")
	}
	b.mustBeMade()
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.observer != nil {
		return b.doObserved(ctx, op, false)
	}
	if !b.tryAcquire() {
		b.rejected.Add(1)
		return ErrFull
	}
	defer b.release()
	return op(ctx)
}

// doObserved is Do, or TryDo if it may not wait, with an observer, which it
// tells how the call ended once the call's slot is free again.
func (b *Bulkhead) doObserved(ctx context.Context, op resilience.Op, mayWait bool) error {
	start := time.Now()
	if !b.tryAcquire() {
		err := error(ErrFull)
		if mayWait {
			err = b.wait(ctx)
		} else {
			b.rejected.Add(1)
		}
		if err != nil {
			kind := resilience.Rejected
			if err != ErrFull {
				kind = event.Outcome(ctx, err) // the caller gave up waiting
			}
			b.observe(ctx, start, kind, err)
			return err
		}
	}
	err := b.run(ctx, op)
	b.observe(ctx, start, event.Outcome(ctx, err), err)
	return err
}

// run runs op in the slot the caller holds, and frees the slot.
func (b *Bulkhead) run(ctx context.Context, op resilience.Op) error {
	defer b.release()
	return op(ctx)
}

// observe tells the observer that the call that started at start ended
// with an event of kind, and err.
func (b *Bulkhead) observe(ctx context.Context, start time.Time, kind resilience.EventKind, err error) {
	now, took := event.End(start)
	b.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyBulkhead, Name: b.name, Kind: kind,
		Duration: took, Err: err})
}

// mustBeMade panics if b is the zero Bulkhead, which has no slot.
func (b *Bulkhead) mustBeMade() {
	if b.max == 0 {
		panic("bulkhead: zero Bulkhead; use New")
	}
}

// tryAcquire takes a free slot if there is one and nobody waits for it.
func (b *Bulkhead) tryAcquire() bool {
	for {
		s := b.state.Load()
		if waiting(s) > 0 || running(s) >= b.max {
			return false
		}
		if b.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// wait queues the caller for a slot and waits for it; it returns nil once
// the caller holds a slot.
func (b *Bulkhead) wait(ctx context.Context) error {
	if b.maxWait == 0 {
		b.rejected.Add(1)
		return ErrFull
	}
	b.mu.Lock()
	// Under the lock, either take a slot freed since tryAcquire or join
	// the queue, atomically: a release that sees no waiter frees its slot
	// to tryAcquire, one that sees a waiter hands the slot over under the
	// lock.
	for {
		s := b.state.Load()
		if waiting(s) == 0 && running(s) < b.max {
			if b.state.CompareAndSwap(s, s+1) {
				b.mu.Unlock()
				return nil
			}
			continue
		}
		if waiting(s) >= int64(b.maxQueue) {
			b.mu.Unlock()
			b.rejected.Add(1)
			return ErrFull
		}
		if b.state.CompareAndSwap(s, s+waitingOne) {
			break
		}
	}
	ready := make(chan struct{})
	b.waiters = append(b.waiters, ready)
	b.mu.Unlock()

	t := time.NewTimer(b.maxWait)
	defer t.Stop()
	var err error
	select {
	case <-ready:
		return nil
	case <-t.C:
		err = ErrFull
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	select {
	case <-ready:
		// Handed a slot as the wait ended: keep it if only the timer
		// ran out, give it on otherwise.
		b.mu.Unlock()
		if err == ErrFull {
			return nil
		}
		b.release()
		return err
	default:
	}
	b.waiters = slices.DeleteFunc(b.waiters, func(x chan struct{}) bool { return x == ready })
	b.state.Add(^uint64(waitingOne - 1)) // minus one waiting
	b.mu.Unlock()
	if err == ErrFull {
		b.rejected.Add(1)
	}
	return err
}

// release frees a slot, or hands it to the first waiter.
func (b *Bulkhead) release() {
	for {
		s := b.state.Load()
		if waiting(s) > 0 {
			b.handOff()
			return
		}
		if b.state.CompareAndSwap(s, s-1) {
			return
		}
	}
}

// handOff gives the caller's slot to the first waiter. The slot stays
// counted as running; the waiter stops being counted as waiting.
func (b *Bulkhead) handOff() {
	b.mu.Lock()
	if len(b.waiters) == 0 {
		// The waiters left (timed out) since release looked: free the
		// slot normally.
		b.mu.Unlock()
		b.release()
		return
	}
	ready := b.waiters[0]
	b.waiters = b.waiters[1:]
	b.state.Add(^uint64(waitingOne - 1)) // minus one waiting
	close(ready)
	b.mu.Unlock()
}

// Metrics is a snapshot of a Bulkhead.
type Metrics struct {
	// InFlight counts the calls running.
	InFlight int64
	// Waiting counts the calls waiting for a slot.
	Waiting int64
	// Rejected counts the calls refused since the bulkhead was made.
	Rejected int64
}

// Metrics returns the bulkhead's counts.
func (b *Bulkhead) Metrics() Metrics {
	b.mustBeMade()
	s := b.state.Load()
	return Metrics{InFlight: running(s), Waiting: waiting(s), Rejected: b.rejected.Sum()}
}
