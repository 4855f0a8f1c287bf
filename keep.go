package resilience

import (
	"context"
	"sync/atomic"

	"github.com/resilience-go/resilience/internal/keep"
)

// Keep is called by an op whose result outlives its return, such as an HTTP
// response whose body the caller reads after the op returned, or a stream:
// it asks every policy between the caller and the op that made a ctx for
// the op (a timeout) not to cancel that ctx when the op returns, but when
// release is called. The ctx still ends at its deadline, with the policy's
// cause, so a kept ctx bounds the reading of the result as it bounded the
// op.
//
// Keep reports false when no policy made a keepable ctx (there is then
// nothing to keep: the ctx is the caller's own, or one that no policy
// cancels at the op's return), or when the op that received ctx has already
// returned; release does nothing then. Call Keep before the op returns, and
// call release exactly when the result is done with, such as from the
// body's Close: until then the ctx and its timer stay alive, up to its
// deadline. release is never nil and may be called more than once, from any
// goroutine; calls after the first do nothing. Each Keep takes a hold of
// its own, which its own release gives back.
//
// A policy makes its ctx keepable with [Keepable]; the timeout policy of
// this module does.
func Keep(ctx context.Context) (release func(), ok bool) {
	k := keep.Find(ctx)
	if k == nil || !k.Keep() {
		return func() {}, false
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			k.Release()
		}
	}, true
}

// Keepable is called by a policy that makes a ctx for the op it runs, with
// that ctx and its cancel func, and passes the ctx it returns to the op in
// place of its own. Once the op has returned, the policy calls end in place
// of cancel: end calls cancel at once, unless the op called [Keep], and then
// the last release of the holds taken calls it. end may be called more than
// once; calls after the first do nothing. The returned ctx has the deadline,
// Done channel, error, values and cause (context.Cause) of ctx.
//
//	tctx, cancel := context.WithTimeout(ctx, d)
//	kctx, end := resilience.Keepable(tctx, cancel)
//	defer end()
//	return op(kctx)
//
// Keepable panics if ctx or cancel is nil.
func Keepable(ctx context.Context, cancel context.CancelFunc) (kctx context.Context, end context.CancelFunc) {
	if ctx == nil {
		panic("resilience: Keepable: nil ctx")
	}
	if cancel == nil {
		panic("resilience: Keepable: nil cancel")
	}
	k := keep.New(ctx, cancel)
	return k, k.End
}
