package circuitbreaker

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/stripe"
)

// Outcome is how a call's result counts; see [WithClassifier].
type Outcome int8

const (
	// Success counts toward closing and keeping closed.
	Success Outcome = iota
	// Failure counts toward tripping.
	Failure
	// Ignore is recorded nowhere: the call did not say anything about the
	// dependency's health.
	Ignore
)

// ErrOpen is matched by every rejection of a Breaker: errors.Is(err, ErrOpen)
// holds for an [*OpenError] and for [ErrForcedOpen]. ErrOpen and both of
// them also match [resilience.ErrRejected].
var ErrOpen error = resilience.Rejection("circuitbreaker: open")

// ErrForcedOpen is returned by a Breaker in the [ForcedOpen] state. It
// matches [ErrOpen] and [resilience.ErrRejected] and carries no retry-after
// hint, since nobody knows when the breaker will be reset.
var ErrForcedOpen error = forcedOpenError{}

type forcedOpenError struct{}

func (forcedOpenError) Error() string { return "circuitbreaker: forced open" }

func (forcedOpenError) Is(target error) bool {
	return target == ErrOpen || target == resilience.ErrRejected
}

// OpenError is returned by a Breaker that rejects a call because it is
// [Open], or [HalfOpen] with every probe slot taken. It matches [ErrOpen] and
// [resilience.ErrRejected], and its RetryAfter method, which
// [resilience.RetryAfter] finds, tells how long until the breaker admits a
// call again. One OpenError is made per state change and shared by the
// rejections it causes, so a rejection allocates nothing.
type OpenError struct {
	name  string
	state State
	b     *Breaker
	ep    *epoch
}

// Name returns the name of the breaker that rejected the call (see
// [WithName]).
func (e *OpenError) Name() string { return e.name }

// State returns the state the breaker rejected the call in: Open or
// HalfOpen.
func (e *OpenError) State() State { return e.state }

// Error returns "circuitbreaker: ", the breaker's name and ": " if it has
// one, and the state, such as "circuitbreaker: payments: open".
func (e *OpenError) Error() string {
	if e.name == "" {
		return "circuitbreaker: " + e.state.String()
	}
	return "circuitbreaker: " + e.name + ": " + e.state.String()
}

// Is reports whether target is [ErrOpen] or [resilience.ErrRejected].
func (e *OpenError) Is(target error) bool {
	return target == ErrOpen || target == resilience.ErrRejected
}

// RetryAfter returns how long from now until the breaker admits a call again:
// the rest of the break while Open, and until a silent probe's slot is given
// to another call while HalfOpen. It is zero once that time has passed.
// RetryAfter reads the clock and changes nothing.
func (e *OpenError) RetryAfter() time.Duration {
	if e.ep == nil {
		return 0
	}
	return e.retryAfter(e.b.now())
}

// retryAfter is RetryAfter at now, on the breaker's clock.
func (e *OpenError) retryAfter(now time.Duration) time.Duration {
	return max(time.Duration(e.ep.readyAt.Load())-now, 0)
}

// Transition describes a change of a Breaker's state; see [WithOnStateChange].
type Transition struct {
	// Name is the breaker's name (see [WithName]).
	Name string
	// From is the state the breaker left, To the one it entered.
	From, To State
	// Cause is why: the rule that tripped the breaker, the probes' outcome,
	// the end of the break, or the method an operator called.
	Cause resilience.Cause
	// Generation numbers the breaker's state changes from 1; observers see
	// them in increasing order.
	Generation uint64
	// Break is how long the breaker stays open, when To is Open.
	Break time.Duration
	// Metrics describes the window as the breaker left it: for a trip, the
	// calls that tripped it.
	Metrics Metrics
}

// Metrics is a snapshot of a Breaker; see [Breaker.Metrics].
type Metrics struct {
	// State is the breaker's state.
	State State
	// Calls, Failures and SlowCalls count the outcomes in the window: the
	// live window while Closed or MetricsOnly, the window that tripped the
	// breaker while Open, HalfOpen or ForcedOpen, and nothing while
	// Disabled. Ignored outcomes are not counted.
	Calls, Failures, SlowCalls int64
	// ConsecutiveFailures counts the failures since the last success, while
	// Closed or MetricsOnly.
	ConsecutiveFailures int64
	// Rejections counts the calls rejected in the window: since the breaker
	// last closed (or was reset, or made), across the open and half-open
	// states that followed.
	Rejections int64
}

// Breaker is a circuit breaker: it watches the outcomes of calls to one
// dependency and, when too many fail, rejects calls for a while so that the
// dependency can recover and callers fail fast. Make one with [New], one per
// dependency, and share it: a Breaker is safe for concurrent use. Most callers
// want [Breaker.Do]; [Breaker.Allow] serves code that cannot pass a closure.
// The zero value is not usable: its methods panic, saying to use New.
//
// In the closed state a success takes no lock: it loads the state and counts
// itself in a striped counter. Each state lives in an epoch of
// its own; a call records its outcome in the epoch that admitted it, so a
// result that arrives after the state has changed is never counted in the
// new state.
type Breaker struct {
	cfg        config
	start      time.Time // the origin of the breaker's monotonic clock
	cur        atomic.Pointer[epoch]
	rejections stripe.Counter
	jitter     func() float64

	pending atomic.Int32 // len(events), read without the lock

	mu sync.Mutex
	// Guarded by mu:
	gen        uint64
	reopens    int      // consecutive re-opens since the breaker last closed
	events     []change // changes not yet delivered to the observers
	delivering bool
}

// change is a transition queued for the observers, and when it happened.
type change struct {
	t  Transition
	at time.Duration // on the breaker's clock
}

var _ resilience.Policy = (*Breaker)(nil)

// New returns a closed Breaker configured by opts. With no options it trips
// when at least half of the last 100 calls failed, counting once 20 calls are
// recorded; stays open 5s, doubling on each re-open up to 60s; and closes
// after 3 successful probes. New panics if an option is nil or out of range,
// or if a WithFailureRate minimum exceeds the count window.
func New(opts ...Option) *Breaker {
	cfg := newConfig(opts)
	b := &Breaker{cfg: cfg, start: time.Now(), rejections: stripe.NewCounter(), jitter: rand.Float64}
	b.mu.Lock()
	b.setLocked(Closed, 0, 0, 0)
	b.mu.Unlock()
	return b
}

// discard is the done func that Allow returns while the breaker is
// Disabled: there is nothing to record.
func discard(error) {}

// Name returns the breaker's name.
func (b *Breaker) Name() string {
	b.load()
	return b.cfg.name
}

// load returns the current epoch, and panics on a zero Breaker, which has
// none.
func (b *Breaker) load() *epoch {
	ep := b.cur.Load()
	if ep == nil {
		panic("circuitbreaker: zero Breaker; use New")
	}
	return ep
}

// now reads the breaker's monotonic clock.
func (b *Breaker) now() time.Duration { return time.Since(b.start) }

// Do runs op if the breaker admits the call, records the outcome, and returns
// op's error as is. If the breaker rejects the call, Do returns an
// [*OpenError] or [ErrForcedOpen] without calling op. If ctx is already
// done, Do returns ctx.Err(). A panic in op counts as a failure and
// propagates. An error that op returns once the caller's ctx is done
// (cancelled, or past its deadline) is ignored, and its permit returned:
// the caller gave up, which says nothing sure of the dependency. A deadline
// of the breaker's own call, such as that of a timeout policy inside it, is the
// dependency not answering in time: a failure.
func (b *Breaker) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("circuitbreaker: Breaker.Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		b.load() // a zero Breaker panics all the same
		return err
	}
	p := permit{ep: b.load()}
	switch p.ep.state {
	case Closed, MetricsOnly:
		if b.cfg.timed {
			p.start = b.now()
		}
	case Disabled:
		if b.cfg.observer == nil {
			return op(ctx)
		}
		p.start = b.now()
	case ForcedOpen:
		b.rejections.Add(1)
		return b.rejected(ctx, ErrForcedOpen)
	case Open:
		if !p.ep.elapsed.Load() {
			b.rejections.Add(1)
			return b.rejected(ctx, p.ep.err)
		}
		fallthrough
	default:
		var err error
		if p, err = b.admit(b.now()); err != nil {
			b.deliver(ctx)
			return b.rejected(ctx, err)
		}
		b.deliverHolding(ctx, p)
		if p.ep.state == Disabled && b.cfg.observer == nil {
			return op(ctx)
		}
	}
	finished := false
	defer func() {
		if !finished { // op panicked: count it, and leave the delivery of
			b.finish(p, Failure) // any transition to a later call
		}
	}()
	err := op(ctx)
	finished = true
	o := Success
	if err != nil {
		o = Ignore
		if ctx.Err() == nil {
			o = b.classify(err)
		}
	}
	b.finish(p, o)
	if b.cfg.observer != nil {
		b.observeCall(ctx, o, err, p.start)
	}
	b.deliver(ctx)
	return err
}

// Allow asks the breaker to admit one call. If it does, the caller makes the
// call and then calls done exactly once with the call's error (nil for
// success); a second call of a closed-state done counts again. The error is
// classified as in Do, except that Allow cannot see the caller's ctx, so
// cancellation is recognised only by the classifier (the default ignores
// context.Canceled). If the breaker rejects the call, Allow returns the same
// error Do would. Allow allocates nothing in the closed state unless slow
// calls are measured or the breaker has an observer ([WithObserver]), which
// the events of Allow's calls reach with context.Background(): done then
// carries the call's start.
func (b *Breaker) Allow() (done func(error), err error) {
	p := permit{ep: b.load()}
	switch p.ep.state {
	case Closed, MetricsOnly:
		if !b.cfg.timed {
			return p.ep.done, nil
		}
		p.start = b.now()
	case Disabled:
		if b.cfg.observer == nil {
			return discard, nil
		}
		p.start = b.now()
	case ForcedOpen:
		b.rejections.Add(1)
		return nil, b.rejected(context.Background(), ErrForcedOpen)
	case Open:
		if !p.ep.elapsed.Load() {
			b.rejections.Add(1)
			return nil, b.rejected(context.Background(), p.ep.err)
		}
		fallthrough
	default:
		if p, err = b.admit(b.now()); err != nil {
			b.deliver(context.Background())
			return nil, b.rejected(context.Background(), err)
		}
		b.deliverHolding(context.Background(), p)
		if p.ep.state == Disabled && b.cfg.observer == nil {
			return discard, nil
		}
	}
	// A done of its own: it carries the start time or the probe's ticket,
	// and records only its first call.
	var once atomic.Bool
	return func(err error) {
		if once.CompareAndSwap(false, true) {
			o := b.classify(err)
			b.finish(p, o)
			if b.cfg.observer != nil {
				b.observeCall(context.Background(), o, err, p.start)
			}
			b.deliver(context.Background())
		}
	}, nil
}

// rejected returns err, the rejection of a call, once the observer, if
// any, has seen it.
func (b *Breaker) rejected(ctx context.Context, err error) error {
	if b.cfg.observer != nil {
		b.observeRejection(ctx, err)
	}
	return err
}

// observeRejection tells the observer of the rejection err, with its
// retry-after hint.
func (b *Breaker) observeRejection(ctx context.Context, err error) {
	now := b.now()
	var delay time.Duration
	if oe, ok := err.(*OpenError); ok {
		delay = oe.retryAfter(now)
	}
	b.cfg.observer.Observe(ctx, resilience.Event{Time: b.start.Add(now), Policy: resilience.PolicyCircuitBreaker,
		Name: b.cfg.name, Kind: resilience.Rejected, Delay: delay, Err: err})
}

// outcomeKinds maps an Outcome to the kind of the event that ends the call.
var outcomeKinds = [...]resilience.EventKind{Success: resilience.Success, Failure: resilience.Failure, Ignore: resilience.Ignored}

// observeCall tells the observer that a call admitted at start ended with
// err, which counted as o.
func (b *Breaker) observeCall(ctx context.Context, o Outcome, err error, start time.Duration) {
	now := b.now()
	b.cfg.observer.Observe(ctx, resilience.Event{Time: b.start.Add(now), Policy: resilience.PolicyCircuitBreaker,
		Name: b.cfg.name, Kind: outcomeKinds[o], Duration: now - start, Err: err})
}

// DefaultClassifier is the classification a Breaker uses unless
// [WithClassifier] replaces it: nil is a [Success]; an error matching
// [resilience.ErrRejected] (an inner bulkhead or rate limiter refused the
// call, the dependency did not fail) or context.Canceled is ignored; any
// other error is a [Failure].
func DefaultClassifier(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, resilience.ErrRejected), errors.Is(err, context.Canceled):
		return Ignore
	}
	return Failure
}

func (b *Breaker) classify(err error) Outcome {
	if err == nil {
		return Success
	}
	if b.cfg.classify == nil {
		return DefaultClassifier(err)
	}
	switch o := b.cfg.classify(err); o {
	case Success, Ignore:
		return o
	}
	return Failure
}

// finish records outcome o of the call that p admitted: it is record, on the
// fast path. In a closed epoch it reads the clock only if the window or the
// slow-call rule needs the time, or the outcome trips the breaker: a count
// window records without it.
func (b *Breaker) finish(p permit, o Outcome) {
	switch p.ep.state {
	case Closed, MetricsOnly:
		if o == Ignore {
			return
		}
		var now time.Duration
		if b.cfg.clocked {
			now = b.now()
		}
		if cause := b.count(p, o, now); cause != 0 {
			if !b.cfg.clocked {
				now = b.now()
			}
			b.trip(p.ep, now, cause)
		}
	case HalfOpen:
		b.recordProbe(p, o, b.now())
	}
}

// deliver hands queued transitions to the observers, in order, outside the
// lock, with ctx, the ctx of the call that delivers them. One goroutine
// delivers at a time; the others leave their transitions to it. If an
// observer panics, deliver hands them the rest of the queue and then
// panics with the first value; if one exits its goroutine, the rest stays
// queued for the next call.
func (b *Breaker) deliver(ctx context.Context) {
	if b.pending.Load() != 0 { // inlined: most calls have nothing to deliver
		b.deliverQueued(ctx)
	}
}

// deliverQueued is deliver once a transition is queued.
func (b *Breaker) deliverQueued(ctx context.Context) {
	b.mu.Lock()
	if b.delivering {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	locked := true
	defer func() { // also when the observer ends its goroutine
		if !locked {
			b.mu.Lock()
		}
		b.delivering = false
		b.mu.Unlock()
	}()
	var panicked any
	for len(b.events) > 0 {
		c := b.events[0]
		b.events = b.events[1:]
		b.pending.Store(int32(len(b.events)))
		b.mu.Unlock()
		locked = false
		if v := b.observe(ctx, c); v != nil && panicked == nil {
			panicked = v
		}
		b.mu.Lock()
		locked = true
	}
	b.events = nil
	if panicked != nil {
		panic(panicked)
	}
}

// deliverHolding delivers while the caller holds permit p: if an observer
// panics or exits, p is given back before the panic goes on.
func (b *Breaker) deliverHolding(ctx context.Context, p permit) {
	ok := false
	defer func() {
		if !ok {
			b.finish(p, Ignore)
		}
	}()
	b.deliver(ctx)
	ok = true
}

// observe hands c to the observers and returns what the first that
// panicked panicked with.
func (b *Breaker) observe(ctx context.Context, c change) (panicked any) {
	if f := b.cfg.onChange; f != nil {
		panicked = catch(func() { f(c.t) })
	}
	if o := b.cfg.observer; o != nil {
		e := resilience.Event{Time: b.start.Add(c.at), Policy: resilience.PolicyCircuitBreaker, Name: c.t.Name,
			Kind: resilience.StateChange, Delay: c.t.Break, From: c.t.From.String(), To: c.t.To.String(), Cause: c.t.Cause}
		if v := catch(func() { o.Observe(ctx, e) }); panicked == nil {
			panicked = v
		}
	}
	return panicked
}

// catch calls f and returns what it panicked with.
func catch(f func()) (panicked any) {
	defer func() { panicked = recover() }()
	f()
	return nil
}

// State returns the breaker's state. An Open breaker whose break is over
// becomes HalfOpen here.
func (b *Breaker) State() State {
	ep := b.load()
	if ep.state == Open {
		ep = b.advance(b.now())
		b.deliver(context.Background())
	}
	return ep.state
}

// Metrics returns a snapshot of the breaker's state and counts. An Open
// breaker whose break is over becomes HalfOpen here.
func (b *Breaker) Metrics() Metrics {
	b.load()
	m := b.metrics(b.now())
	b.deliver(context.Background())
	return m
}

// set moves the breaker to state s by hand.
func (b *Breaker) set(s State) {
	b.load()
	b.setState(s, b.now())
	b.deliver(context.Background())
}

// Reset closes the breaker with an empty window and the base break duration,
// from any state.
func (b *Breaker) Reset() { b.set(Closed) }

// ForceOpen holds the breaker open, rejecting every call with
// [ErrForcedOpen], until [Breaker.Reset].
func (b *Breaker) ForceOpen() { b.set(ForcedOpen) }

// Disable makes the breaker admit every call and record nothing, until
// [Breaker.Reset]: a kill switch.
func (b *Breaker) Disable() { b.set(Disabled) }

// MetricsOnly makes the breaker admit every call and record its outcome
// without ever tripping, until [Breaker.Reset]: [Breaker.Metrics] shows what
// the configuration would do, before it is enforced.
func (b *Breaker) MetricsOnly() { b.set(MetricsOnly) }

// OpenFor opens the breaker for exactly d, without jitter, for example for
// the Retry-After of an HTTP 429 or 503 response. It has no effect when d is
// not positive, when the breaker is already open for longer, or in a state
// set by hand (ForcedOpen, Disabled, MetricsOnly). When d has passed the
// breaker turns half-open as after any break, and the next break duration is
// unchanged.
func (b *Breaker) OpenFor(d time.Duration) {
	b.load()
	b.openFor(d, b.now())
	b.deliver(context.Background())
}
