// Package timeout bounds the time an operation may take, cooperatively: the
// operation gets a ctx with a deadline, and Do waits for it to return. No
// goroutine is left running behind a timeout, and an operation that ignores
// its ctx is reported rather than abandoned.
//
//	t := timeout.New(2 * time.Second)
//	err := t.Do(ctx, func(ctx context.Context) error {
//		return client.Get(ctx, key)
//	})
//	if errors.Is(err, timeout.ErrExceeded) {
//		// The attempt ran out of time.
//	}
//
// Inside a retry, a timeout bounds each attempt; see the order in the
// resilience package documentation.
package timeout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
)

// ErrExceeded is matched, through errors.Is, by the cause of the ctx a
// [Timeout] gives op once its deadline passes (context.Cause reports it),
// and by the error Do returns when op failed after that deadline. Both also
// match context.DeadlineExceeded.
var ErrExceeded = errors.New("timeout: exceeded")

// Overrun describes an op that returned after its deadline; see
// [WithOnOverrun].
type Overrun struct {
	// Timeout is the Timeout's duration.
	Timeout time.Duration
	// By is how long after the deadline op returned: microseconds for an op
	// that honours its ctx, as long as it kept running for one that does
	// not.
	By time.Duration
	// Err is what op returned.
	Err error
}

// Timeout gives each call a deadline. Make one with [New]; it is safe for
// concurrent use and holds no state of a call. The zero value is not usable.
type Timeout struct {
	d         time.Duration
	onOverrun func(Overrun)
	cause     error // this Timeout's own cause: it tells its deadline from any other
}

// exceeded is the cause a Timeout gives the ctx it makes; one per Timeout,
// so that a Timeout recognises its own deadline among nested ones.
type exceeded struct{}

func (*exceeded) Error() string        { return ErrExceeded.Error() }
func (*exceeded) Is(target error) bool { return target == ErrExceeded }
func (*exceeded) Unwrap() error        { return context.DeadlineExceeded }

var _ resilience.Policy = (*Timeout)(nil)

// An Option configures a [Timeout] made by [New].
type Option interface{ apply(*Timeout) }

type optionFunc func(*Timeout)

func (f optionFunc) apply(t *Timeout) { f(t) }

// WithOnOverrun calls f, on the goroutine that called Do and before Do
// returns, for every call whose deadline passed before op returned, with how
// long after the deadline that was. A call that overruns by much more than
// the time its dependency takes to notice a cancelled ctx is a call that
// does not honour its ctx. Default: none.
func WithOnOverrun(f func(Overrun)) Option {
	return optionFunc(func(t *Timeout) { t.onOverrun = f })
}

// New returns a Timeout that gives each call d. It panics if d is not
// positive.
func New(d time.Duration, opts ...Option) *Timeout {
	if d <= 0 {
		panic(fmt.Sprintf("timeout: New(%v): want d > 0", d))
	}
	t := &Timeout{d: d, cause: new(exceeded)}
	for _, o := range opts {
		o.apply(t)
	}
	return t
}

// Do calls op with a ctx that ends d from now, with a cause matching
// [ErrExceeded], and waits for op to return, however long it takes. If ctx
// already ends sooner, op gets ctx itself and no timer is made. If this
// deadline passed before the caller's ctx ended and op failed, the error
// matches both ErrExceeded and context.DeadlineExceeded and wraps op's
// error; if op succeeded, even late, Do returns nil. Either way an overrun
// is reported. If ctx is already done, Do returns ctx.Err() without calling
// op.
func (t *Timeout) Do(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(t.d)
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		return op(ctx) // the caller's deadline comes first
	}
	tctx, cancel := context.WithDeadlineCause(ctx, deadline, t.cause)
	defer cancel()
	err := op(tctx)
	if tctx.Err() == nil || context.Cause(tctx) != t.cause {
		return err // within the deadline, or the caller's ctx ended first
	}
	if t.onOverrun != nil {
		t.onOverrun(Overrun{Timeout: t.d, By: time.Since(deadline), Err: err})
	}
	if err == nil {
		return nil
	}
	return &exceededError{d: t.d, err: err}
}

// exceededError is op's error after the deadline passed.
type exceededError struct {
	d   time.Duration
	err error
}

func (e *exceededError) Error() string {
	return fmt.Sprintf("timeout: exceeded %v: %v", e.d, e.err)
}

func (e *exceededError) Unwrap() error { return e.err }

func (e *exceededError) Is(target error) bool {
	return target == ErrExceeded || target == context.DeadlineExceeded
}
