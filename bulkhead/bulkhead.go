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
	"github.com/resilience-go/resilience/internal/stripe"
)

// ErrFull is returned by a Bulkhead that refuses a call because every slot
// is taken (and, with waiting, the wait ran out or the queue is full). It
// matches [resilience.ErrRejected]. It carries no retry-after hint: when a
// slot frees depends on the calls running, which nobody can tell.
var ErrFull error = rejection("bulkhead: full")

type rejection string

func (r rejection) Error() string        { return string(r) }
func (r rejection) Is(target error) bool { return target == resilience.ErrRejected }

// Bulkhead admits at most a fixed number of calls at once. Make one with
// [New]; it is safe for concurrent use, and the zero value is not usable.
// Most callers want [Bulkhead.Do]; [Bulkhead.TryDo] never waits.
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

	mu      sync.Mutex
	waiters []chan struct{} // oldest first, each closed when handed a slot; guarded by mu
}

var _ resilience.Policy = (*Bulkhead)(nil)

const waitingOne = 1 << 32

func running(s uint64) int64 { return int64(s & (waitingOne - 1)) }
func waiting(s uint64) int64 { return int64(s >> 32) }

// An Option configures a [Bulkhead] made by [New].
type Option interface{ apply(*Bulkhead) }

type optionFunc func(*Bulkhead)

func (f optionFunc) apply(b *Bulkhead) { f(b) }

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

// New returns a Bulkhead of maxConcurrent slots, configured by opts. It
// panics if maxConcurrent is not in [1, 2³¹-1] or an option is out of range.
func New(maxConcurrent int, opts ...Option) *Bulkhead {
	if maxConcurrent < 1 || maxConcurrent > math.MaxInt32 {
		panic(fmt.Sprintf("bulkhead: New(%d): want 1 <= maxConcurrent <= %d", maxConcurrent, math.MaxInt32))
	}
	b := &Bulkhead{max: int64(maxConcurrent), maxQueue: math.MaxInt32, rejected: stripe.NewCounter()}
	for _, o := range opts {
		o.apply(b)
	}
	return b
}

// Do runs op in a slot, waiting for one as [WithMaxWait] allows, and frees
// the slot when op returns or panics. It returns op's error as is, [ErrFull]
// when no slot came in time, or ctx.Err() when ctx is done first.
func (b *Bulkhead) Do(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
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
// without waiting, whatever [WithMaxWait] says.
func (b *Bulkhead) TryDo(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !b.tryAcquire() {
		b.rejected.Add(1)
		return ErrFull
	}
	defer b.release()
	return op(ctx)
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
	s := b.state.Load()
	return Metrics{InFlight: running(s), Waiting: waiting(s), Rejected: b.rejected.Sum()}
}
