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
//
// # Adaptive timeout
//
// A fixed timeout is a guess at the latency of a dependency, and goes
// stale as the dependency changes. [Adaptive] makes a timeout that follows
// the latencies it sees: by default p99.9 × 2 of the calls of the last 30
// seconds, within [1ms, 10s], and the upper bound until it has seen 100
// calls — a false-timeout rate under 0.1 %, the rate the Builders'
// Library suggests choosing a timeout from.
//
//	t := timeout.Adaptive(timeout.WithBounds(10*time.Millisecond, 5*time.Second))
//
// A call it times out counts as a latency of exactly its timeout, so when
// the dependency slows down the timeout grows with it instead of timing
// out every call; see [AdaptiveTimeout].
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, how each call ended (a
// [resilience.TimedOut] event when this timeout's deadline passed and op
// failed), how long it took, and, when the deadline passed before op
// returned, by how much it overran ([resilience.Overrun]). A timeout with no
// observer builds no event, and with one a call allocates nothing more. An
// [AdaptiveTimeout]'s events are of [resilience.PolicyAdaptiveTimeout], and
// the Duration of its Overrun events is the deadline that call got.
// [WithOnOverrun], which sees only the overruns, is deprecated.
package timeout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/keep"
)

// ErrExceeded is matched, through errors.Is, by the cause of the ctx a
// [Timeout] gives op once its deadline passes (context.Cause reports it),
// and by the error Do returns when op failed after that deadline. Both also
// match context.DeadlineExceeded.
var ErrExceeded = errors.New("timeout: exceeded")

// Overrun describes an op that returned after its deadline, to the function
// of the deprecated [WithOnOverrun]; the [resilience.Overrun] events of
// [WithObserver] carry the same.
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
// concurrent use and holds no state of a call. The zero value is not
// usable; use New: its methods panic.
type Timeout struct {
	d         time.Duration
	kind      resilience.PolicyKind // of its events
	name      string
	observer  resilience.Observer
	onOverrun func(Overrun)
	cause     error // this Timeout's own cause: it tells its deadline from any other
}

// exceeded is the cause a Timeout gives the ctx it makes; one per Timeout,
// so that a Timeout recognises its own deadline among nested ones.
type exceeded struct{ d time.Duration }

func (e *exceeded) Error() string      { return fmt.Sprintf("%v %v", ErrExceeded, e.d) }
func (*exceeded) Is(target error) bool { return target == ErrExceeded }
func (*exceeded) Unwrap() error        { return context.DeadlineExceeded }

var _ resilience.Policy = (*Timeout)(nil)

// An Option configures a [Timeout] made by [New], or an [AdaptiveTimeout]
// made by [Adaptive]: every Option is an [AdaptiveOption] too.
type Option interface {
	AdaptiveOption
	apply(*Timeout)
}

type optionFunc func(*Timeout)

func (f optionFunc) apply(t *Timeout)                 { f(t) }
func (f optionFunc) applyAdaptive(a *AdaptiveTimeout) { f(&a.t) }

// WithName names the timeout in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(t *Timeout) { t.name = name })
}

// WithObserver sends the timeout's events to o (see [resilience.Observer]),
// on the goroutine that called Do, before Do returns, with the caller's
// ctx. Each call ends with a [resilience.TimedOut] event when this
// timeout's deadline passed and op failed, and otherwise with a
// [resilience.Success], [resilience.Failure] or [resilience.Ignored] (an
// error once the caller's ctx was done) event, with how long the call took.
// Before it, a call whose deadline passed before op returned makes a
// [resilience.Overrun] event with how long after the deadline that was, in
// Delay, and the timeout's duration: a call that overruns by much more than
// the time its dependency takes to notice a cancelled ctx does not honour
// its ctx. A call whose ctx is done before it starts, or whose op panics,
// makes no event. Without an observer, the timeout builds no event.
// Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("timeout: WithObserver: nil Observer")
	}
	return optionFunc(func(t *Timeout) { t.observer = o })
}

// WithOnOverrun calls f, on the goroutine that called Do and before Do
// returns, for every call whose deadline passed before op returned, with how
// long after the deadline that was. A call that overruns by much more than
// the time its dependency takes to notice a cancelled ctx is a call that
// does not honour its ctx. Default: none. f must not be nil. Both it and
// [WithObserver] may be given.
//
// Deprecated: Use [WithObserver], whose [resilience.Overrun] events carry
// the same, beside the rest of the timeout's events.
func WithOnOverrun(f func(Overrun)) Option {
	if f == nil {
		panic("timeout: WithOnOverrun: nil f")
	}
	return optionFunc(func(t *Timeout) { t.onOverrun = f })
}

// New returns a Timeout that gives each call d. It panics if d is not
// positive or an option is nil.
func New(d time.Duration, opts ...Option) *Timeout {
	if d <= 0 {
		panic(fmt.Sprintf("timeout: New(%v): want d > 0", d))
	}
	t := &Timeout{d: d, kind: resilience.PolicyTimeout, cause: &exceeded{d: d}}
	for _, o := range opts {
		if o == nil {
			panic("timeout: New: nil Option")
		}
		o.apply(t)
	}
	return t
}

// Do calls op with a ctx that ends d from now, with a cause matching
// [ErrExceeded], and waits for op to return, however long it takes. If ctx
// already ends sooner, op gets ctx itself and no timer is made. If this
// deadline passed before the caller's ctx ended and op failed, the error
// matches both ErrExceeded and context.DeadlineExceeded and wraps op's
// error, or is op's error, if that wraps the cause already; if op
// succeeded, even late, Do returns nil. Either way an overrun
// is reported. If ctx is already done, Do returns ctx.Err() without calling
// op. Do panics if op is nil.
//
// The ctx op gets is keepable ([resilience.Keep]): an op whose result
// outlives it, such as an HTTP response whose body is read later, keeps it,
// and then Do does not cancel it when op returns; the result's release
// does, or the deadline, whichever comes first. The deadline's cause is the
// same, and it ends a kept ctx as it ends any other.
func (t *Timeout) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("timeout: Timeout.Do: nil Op")
	}
	if t.cause == nil {
		panic("timeout: zero Timeout; use New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := t.run(ctx, op, time.Now(), t.d)
	return err
}

// run is Do once its arguments are checked: it calls op with a deadline d
// after start, and reports whether that deadline passed before op
// returned.
func (t *Timeout) run(ctx context.Context, op resilience.Op, start time.Time, d time.Duration) (late bool, err error) {
	deadline := start.Add(d)
	if dl, ok := ctx.Deadline(); ok && !dl.After(deadline) {
		if t.observer == nil {
			return false, op(ctx) // the caller's deadline comes first
		}
		err := op(ctx)
		return false, t.end(ctx, start, event.Outcome(ctx, err), err)
	}
	tctx, cancel := context.WithDeadlineCause(ctx, deadline, t.cause)
	k := keep.For(ctx, tctx, cancel)
	defer k.End()
	err = op(k)
	if tctx.Err() == nil || context.Cause(tctx) != t.cause {
		// Within the deadline, or the caller's ctx ended first.
		if t.observer != nil {
			return false, t.end(ctx, start, event.Outcome(ctx, err), err)
		}
		return false, err
	}
	by := time.Since(deadline)
	if t.onOverrun != nil {
		t.onOverrun(Overrun{Timeout: d, By: by, Err: err})
	}
	if t.observer != nil {
		t.observer.Observe(ctx, resilience.Event{Time: deadline.Add(by), Policy: t.kind, Name: t.name,
			Kind: resilience.Overrun, Delay: by, Duration: d, Err: err})
	}
	if err != nil && !errors.Is(err, t.cause) { // an error that does not say it already
		err = &exceededError{d: d, err: err}
	}
	if t.observer == nil {
		return true, err
	}
	kind := resilience.Success // late, but a success
	if err != nil {
		kind = resilience.TimedOut
	}
	return true, t.end(ctx, start, kind, err)
}

// end returns err, what a call that started at start returns, once the
// observer has seen an event of kind that ends the call.
func (t *Timeout) end(ctx context.Context, start time.Time, kind resilience.EventKind, err error) error {
	now, took := event.End(start)
	t.observer.Observe(ctx, resilience.Event{Time: now, Policy: t.kind, Name: t.name, Kind: kind,
		Duration: took, Err: err})
	return err
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
