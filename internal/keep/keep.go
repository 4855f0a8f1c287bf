// Package keep holds what lies behind resilience.Keep and
// resilience.Keepable: a ctx that a policy makes for an op, which the op can
// keep past its return so that a result it hands back (a stream, an HTTP
// response body) stays usable until its reader releases it. The timeout
// policy and the HTTP transport use it directly, so that a call that keeps
// nothing costs one small allocation and a call that keeps costs no more.
package keep

import (
	"context"
	"sync/atomic"
	"time"
)

// key is the ctx key under which a Keeper answers for itself.
type key struct{}

// ended is the low bit of Keeper.state, set once the op has returned;
// the bits above count the holds that Keep took and Release has not given
// back.
const (
	ended = 1
	hold  = 2
)

// Keeper is a ctx that a policy made for an op, with the cancel func that
// ends it. The policy calls End once the op has returned, in place of
// cancel; the op may call Keep before it returns, and then cancel waits for
// the matching Release. A Keeper is safe for concurrent use.
type Keeper struct {
	ctx    context.Context
	cancel context.CancelFunc
	state  atomic.Int64
}

// New returns a Keeper for ctx, which cancel ends.
func New(ctx context.Context, cancel context.CancelFunc) *Keeper {
	return &Keeper{ctx: ctx, cancel: cancel}
}

// Init sets k, which nothing uses any longer, to a Keeper for ctx, which
// cancel ends: for a policy that holds a Keeper in a struct of its own,
// and reuses it.
func (k *Keeper) Init(ctx context.Context, cancel context.CancelFunc) {
	k.ctx, k.cancel = ctx, cancel
	k.state.Store(0)
}

// Held reports whether a Keep holds k after its End: the op handed back
// something that still uses k, and k must not be reused until it is
// released.
func (k *Keeper) Held() bool { return k.state.Load() > ended }

// Spare is implemented by a ctx that holds a Keeper of its own for the
// first policy that makes one directly beneath it, so that a caller that
// allocates its state anyway saves the policy an allocation.
type Spare interface {
	// SpareKeeper returns the spare Keeper the first time it is called,
	// and nil after that. It is safe for concurrent use.
	SpareKeeper() *Keeper
}

// For returns a Keeper for ctx, which cancel ends, made for an op that
// runs under parent: parent's spare if parent is a [Spare] with its spare
// unused, and otherwise a new one.
func For(parent, ctx context.Context, cancel context.CancelFunc) *Keeper {
	if s, ok := parent.(Spare); ok {
		if k := s.SpareKeeper(); k != nil {
			k.ctx, k.cancel = ctx, cancel
			return k
		}
	}
	return New(ctx, cancel)
}

// Deadline returns the deadline of the ctx k was made with.
func (k *Keeper) Deadline() (time.Time, bool) { return k.ctx.Deadline() }

// Done returns the Done channel of the ctx k was made with.
func (k *Keeper) Done() <-chan struct{} { return k.ctx.Done() }

// Err returns the error of the ctx k was made with.
func (k *Keeper) Err() error { return k.ctx.Err() }

// Value returns k itself for the keeper's key, and otherwise the value of
// the ctx k was made with: context.Cause, and the children that package
// context makes, see the ctx beneath as they would without k.
func (k *Keeper) Value(v any) any {
	if v == (key{}) {
		return k
	}
	return k.ctx.Value(v)
}

// String names k and the ctx beneath, as package context names its own.
func (k *Keeper) String() string {
	if s, ok := k.ctx.(interface{ String() string }); ok {
		return s.String() + ".Keepable"
	}
	return "context.Keepable"
}

// Find returns the innermost Keeper of ctx, or nil if ctx has none.
func Find(ctx context.Context) *Keeper {
	k, _ := ctx.Value(key{}).(*Keeper)
	return k
}

// outer returns the Keeper around k, or nil.
func (k *Keeper) outer() *Keeper { return Find(k.ctx) }

// Keep takes a hold on k and on every Keeper around it, so that their End
// does not cancel, and reports whether it could: false, holding nothing, if
// the op of k or of one around it had returned. Each Keep that reports true
// must be matched by exactly one Release.
func (k *Keeper) Keep() bool {
	for p := k; p != nil; p = p.outer() {
		if !p.keep() {
			for q := k; q != p; q = q.outer() {
				q.release()
			}
			return false
		}
	}
	return true
}

// keep takes a hold on k unless its op has returned, and reports whether it
// did.
func (k *Keeper) keep() bool {
	for {
		s := k.state.Load()
		if s&ended != 0 {
			return false
		}
		if k.state.CompareAndSwap(s, s+hold) {
			return true
		}
	}
}

// Release gives back the holds of one Keep: each Keeper whose op has
// returned and that nothing else holds is cancelled now, and the others when
// that comes true.
func (k *Keeper) Release() {
	for p := k; p != nil; p = p.outer() {
		p.release()
	}
}

// release gives back one hold on k.
func (k *Keeper) release() {
	if k.state.Add(-hold) == ended {
		k.cancel()
	}
}

// End is called by the policy that made k once the op has returned: it
// cancels k's ctx now, unless a Keep holds it, and then at the last Release.
// Calls after the first do nothing.
func (k *Keeper) End() {
	if k.state.Or(ended) == 0 {
		k.cancel()
	}
}
