package circuitbreaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/stripe"
)

// State is the state of a [Breaker].
type State int32

// The states of a Breaker. Closed, Open and HalfOpen follow from the calls'
// outcomes; ForcedOpen, Disabled and MetricsOnly are set by hand and stay
// until [Breaker.Reset].
const (
	// Closed admits every call and records its outcome in the window.
	Closed State = iota
	// Open rejects every call until the break duration has passed.
	Open
	// HalfOpen admits a few probe calls, whose outcomes decide between
	// Closed and Open, and rejects the rest.
	HalfOpen
	// ForcedOpen rejects every call, with [ErrForcedOpen].
	ForcedOpen
	// Disabled admits every call and records nothing.
	Disabled
	// MetricsOnly admits every call and records its outcome, but never
	// trips: a shadow roll-out of a new configuration.
	MetricsOnly
)

var stateNames = [...]string{"closed", "open", "half-open", "forced-open", "disabled", "metrics-only"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

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
var ErrOpen error = rejection("circuitbreaker: open")

// rejection is a sentinel error that matches resilience.ErrRejected.
type rejection string

func (r rejection) Error() string { return string(r) }

func (r rejection) Is(target error) bool { return target == resilience.ErrRejected }

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
func (e *OpenError) RetryAfter() time.Duration {
	if e.ep == nil {
		return 0
	}
	d := time.Duration(e.ep.readyAt.Load()) - e.b.now()
	if d > 0 {
		return d
	}
	if e.ep.elapsed != nil {
		// The break is over: let the next call check the clock even if
		// the break's timer has not fired yet.
		e.ep.elapsed.Store(true)
	}
	return 0
}

// Transition describes a change of a Breaker's state; see [WithOnStateChange].
type Transition struct {
	Name     string
	From, To State
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
// The zero value is not usable.
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
	reopens    int          // consecutive re-opens since the breaker last closed
	events     []Transition // changes not yet delivered to cfg.observe
	delivering bool
}

var _ resilience.Policy = (*Breaker)(nil)

// timerLead is how early, at most, the timer of an open breaker fires.
const timerLead = 10 * time.Millisecond

// epoch is one stay in one state.
type epoch struct {
	state State

	// Closed and MetricsOnly: the live window (exactly one is set).
	cw   *countWindow
	tw   *timeWindow
	done func(error) // the done func that Allow hands out
	_    [64]byte    // keeps consec, written on failures, off the line every call reads
	// consec counts failures since the last success.
	consec atomic.Int64
	_      [56]byte

	// Open, HalfOpen and ForcedOpen: the window that tripped the breaker.
	frozen counts
	// rejBase is what b.rejections held when the epoch's window began.
	rejBase int64

	// Open and HalfOpen.
	err      error         // the rejection
	breakDur time.Duration // the break that led here
	readyAt  atomic.Int64  // when a call may be admitted again, on b.now()
	elapsed  *atomic.Bool  // Open: the break is (nearly) over; check the clock
	timer    *time.Timer   // Open: sets elapsed, and holds nothing else

	// HalfOpen, guarded by b.mu: the probes out, oldest first, and the
	// successes so far.
	probes    []probe
	tickets   uint64
	successes int
}

// counts returns the epoch's window totals at now: the live window's, or the
// frozen ones of the window that tripped the breaker.
func (ep *epoch) counts(now time.Duration) counts {
	switch {
	case ep.cw != nil:
		return ep.cw.counts()
	case ep.tw != nil:
		return ep.tw.countsAt(now)
	}
	return ep.frozen
}

// probe is a half-open probe that has not reported yet.
type probe struct {
	ticket uint64
	at     time.Duration // when it was admitted
}

// permit is a call the breaker admitted, to be recorded in its epoch.
type permit struct {
	ep     *epoch
	ticket uint64        // HalfOpen: the probe's ticket
	start  time.Duration // when slow calls are measured
}

// New returns a closed Breaker configured by opts. With no options it trips
// when at least half of the last 100 calls failed, counting once 20 calls are
// recorded; stays open 5s, doubling on each re-open up to 60s; and closes
// after 3 successful probes. New panics if an option is out of range.
func New(opts ...Option) *Breaker {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.consecutive > 0 && !cfg.rateSet {
		cfg.ratePPM = 0 // consecutive failures replace the failure-rate rule
	}
	if cfg.countSize > 0 && cfg.minCalls > cfg.countSize && !cfg.rateSet {
		cfg.minCalls = cfg.countSize // the default minimum, in a smaller window
	}
	if cfg.countSize > 0 && cfg.minCalls > cfg.countSize && (cfg.ratePPM > 0 || cfg.slowPPM > 0) {
		panic(fmt.Sprintf("circuitbreaker: WithFailureRate minimum of %d calls exceeds WithCountWindow(%d): the breaker could never trip",
			cfg.minCalls, cfg.countSize))
	}
	b := &Breaker{cfg: cfg, start: time.Now(), rejections: stripe.NewCounter(), jitter: rand.Float64}
	b.mu.Lock()
	b.setLocked(Closed, 0, 0)
	b.mu.Unlock()
	return b
}

// discard is the done func that Allow returns while the breaker is
// Disabled: there is nothing to record.
func discard(error) {}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.cfg.name }

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
	if err := ctx.Err(); err != nil {
		return err
	}
	p := permit{ep: b.cur.Load()}
	switch p.ep.state {
	case Closed, MetricsOnly:
		if b.cfg.slowAfter > 0 {
			p.start = b.now()
		}
	case Disabled:
		return op(ctx)
	case ForcedOpen:
		b.rejections.Add(1)
		return ErrForcedOpen
	case Open:
		if !p.ep.elapsed.Load() {
			b.rejections.Add(1)
			return p.ep.err
		}
		fallthrough
	default:
		var err error
		if p, err = b.admit(); err != nil {
			b.deliver()
			return err
		}
		if p.ep.state == Disabled {
			b.deliver()
			return op(ctx)
		}
	}
	finished := false
	defer func() {
		if !finished { // op panicked: count it, and leave the delivery of
			b.record(p, Failure) // any transition to a later call
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
	b.record(p, o)
	b.deliver()
	return err
}

// Allow asks the breaker to admit one call. If it does, the caller makes the
// call and then calls done exactly once with the call's error (nil for
// success); a second call of a closed-state done counts again. The error is
// classified as in Do, except that Allow cannot see the caller's ctx, so
// cancellation is recognised only by the classifier (the default ignores
// context.Canceled). If the breaker rejects the call, Allow returns the same
// error Do would. Allow allocates nothing in the closed state unless slow
// calls are measured.
func (b *Breaker) Allow() (done func(error), err error) {
	p := permit{ep: b.cur.Load()}
	switch p.ep.state {
	case Closed, MetricsOnly:
		if b.cfg.slowAfter == 0 {
			return p.ep.done, nil
		}
		p.start = b.now()
	case Disabled:
		return discard, nil
	case ForcedOpen:
		b.rejections.Add(1)
		return nil, ErrForcedOpen
	case Open:
		if !p.ep.elapsed.Load() {
			b.rejections.Add(1)
			return nil, p.ep.err
		}
		fallthrough
	default:
		if p, err = b.admit(); err != nil {
			b.deliver()
			return nil, err
		}
		b.deliverHolding(p)
		if p.ep.state == Disabled {
			return discard, nil
		}
	}
	// A done of its own: it carries the start time or the probe's ticket,
	// and records only its first call.
	var once atomic.Bool
	return func(err error) {
		if once.CompareAndSwap(false, true) {
			b.record(p, b.classify(err))
			b.deliver()
		}
	}, nil
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

// admit decides, under the lock, on a call that the fast path could not
// admit: the break may be over, the breaker may be half-open, or its state
// may have just changed. It queues transitions without delivering them: the
// caller delivers once it holds nothing an observer's panic could leak.
func (b *Breaker) admit() (permit, error) {
	now := b.now()
	b.mu.Lock()
	ep := b.advanceLocked(now)
	p := permit{ep: ep, start: now}
	var err error
	switch ep.state {
	case Closed, MetricsOnly, Disabled:
	case HalfOpen:
		if len(ep.probes) == b.cfg.probes {
			if now < time.Duration(ep.readyAt.Load()) {
				err = ep.err
				break
			}
			// The oldest probe has been silent for a whole break: count it
			// as lost and give its slot to this call, so that a hung probe
			// cannot keep the breaker half-open for ever.
			ep.probes = append(ep.probes[:0], ep.probes[1:]...)
		}
		ep.tickets++
		p.ticket = ep.tickets
		ep.probes = append(ep.probes, probe{ticket: ep.tickets, at: now})
		ep.readyAt.Store(int64(ep.probes[0].at + ep.breakDur))
	default:
		err = ep.err
	}
	if err != nil {
		b.rejections.Add(1)
	}
	b.mu.Unlock()
	return p, err
}

// advanceLocked moves an open breaker whose break is over to HalfOpen, and
// returns the current epoch.
func (b *Breaker) advanceLocked(now time.Duration) *epoch {
	ep := b.cur.Load()
	if ep.state == Open && now >= time.Duration(ep.readyAt.Load()) {
		ep = b.setLocked(HalfOpen, ep.breakDur, now)
	}
	return ep
}

// record counts the outcome of an admitted call.
func (b *Breaker) record(p permit, o Outcome) {
	switch p.ep.state {
	case Closed, MetricsOnly:
		b.recordClosed(p, o)
	case HalfOpen:
		b.recordProbe(p, o)
	}
}

func (b *Breaker) recordClosed(p permit, o Outcome) {
	if o == Ignore {
		return
	}
	ep := p.ep
	var code uint32
	if o == Failure {
		code = failBit
	}
	var now time.Duration
	if b.cfg.slowAfter > 0 || ep.tw != nil {
		now = b.now()
		if b.cfg.slowAfter > 0 && now-p.start >= b.cfg.slowAfter {
			code |= slowBit
		}
	}
	trip := false
	if o == Failure {
		n := ep.consec.Add(1)
		trip = b.cfg.consecutive > 0 && n >= b.cfg.consecutive
	} else if ep.consec.Load() != 0 {
		ep.consec.Store(0)
	}
	var c counts
	switch {
	case code == 0 && ep.cw != nil:
		if ep.cw.success() {
			c = ep.cw.add(0, true)
		}
	case code == 0:
		if ep.tw.success(now) {
			c = ep.tw.add(now, 0)
		}
	case ep.cw != nil:
		c = ep.cw.add(code, true)
	default:
		c = ep.tw.add(now, code)
	}
	if (trip || b.overThreshold(c)) && ep.state == Closed {
		b.trip(ep)
	}
}

// overThreshold reports whether the window's counts trip the breaker.
func (b *Breaker) overThreshold(c counts) bool {
	if c.calls == 0 || c.calls < b.cfg.minCalls {
		return false
	}
	return (b.cfg.ratePPM > 0 && c.failures*1e6 >= b.cfg.ratePPM*c.calls) ||
		(b.cfg.slowPPM > 0 && c.slow*1e6 >= b.cfg.slowPPM*c.calls)
}

// trip opens the breaker if ep is still the current epoch.
func (b *Breaker) trip(ep *epoch) {
	b.mu.Lock()
	if b.cur.Load() == ep {
		b.reopens = 0
		b.setLocked(Open, b.breakDuration(), b.now())
	}
	b.mu.Unlock()
}

func (b *Breaker) recordProbe(p permit, o Outcome) {
	now := b.now()
	if b.cfg.slowAfter > 0 && o == Success && now-p.start >= b.cfg.slowAfter {
		o = Failure
	}
	b.mu.Lock()
	if ep := p.ep; b.cur.Load() == ep {
		i := slices.IndexFunc(ep.probes, func(pr probe) bool { return pr.ticket == p.ticket })
		if i >= 0 { // not a lost probe
			ep.probes = slices.Delete(ep.probes, i, i+1)
			if len(ep.probes) > 0 {
				ep.readyAt.Store(int64(ep.probes[0].at + ep.breakDur))
			}
			switch o {
			case Failure:
				b.reopens++
				b.setLocked(Open, b.breakDuration(), now)
			case Success:
				ep.successes++
				if ep.successes >= b.cfg.probes {
					b.reopens = 0
					b.setLocked(Closed, 0, now)
				}
			}
		}
	}
	b.mu.Unlock()
}

// windowMin is the number of calls from which a window's ratios are checked:
// none when no ratio rule is on.
func (b *Breaker) windowMin() int64 {
	if b.cfg.ratePPM == 0 && b.cfg.slowPPM == 0 {
		return 0
	}
	return b.cfg.minCalls
}

// breakDuration returns the next break: the base doubled once per
// consecutive re-open, capped at the maximum, then spread by ±20% without
// passing the maximum (the spread stays below it, so that breakers at the
// maximum do not all end together).
func (b *Breaker) breakDuration() time.Duration {
	d := b.cfg.baseBreak
	for i := 0; i < b.reopens && d < b.cfg.maxBreak; i++ {
		if d > b.cfg.maxBreak/2 {
			d = b.cfg.maxBreak
			break
		}
		d *= 2
	}
	d = min(d, b.cfg.maxBreak)
	lo := float64(d) * 0.8
	hi := min(float64(d)*1.2, float64(b.cfg.maxBreak))
	return time.Duration(lo + (hi-lo)*b.jitter())
}

// setLocked starts a new epoch in state s and queues the transition. For
// Open, breakDur is the break; for HalfOpen, the break that preceded it.
func (b *Breaker) setLocked(s State, breakDur, now time.Duration) *epoch {
	old := b.cur.Load()
	ep := &epoch{state: s, breakDur: breakDur}
	switch s {
	case Closed, MetricsOnly:
		if b.cfg.countSize > 0 {
			ep.cw = newCountWindow(b.cfg.countSize, b.windowMin())
		} else {
			ep.tw = newTimeWindow(b.cfg.span, b.cfg.buckets, b.windowMin(), now)
		}
		ep.done = func(err error) { b.record(permit{ep: ep}, b.classify(err)) }
	case Open:
		ep.err = &OpenError{name: b.cfg.name, state: Open, b: b, ep: ep}
		ep.readyAt.Store(int64(addSat(now, breakDur)))
		// The timer fires a little early, so that the flag is surely set
		// when the break ends; from then on calls take the slow path,
		// which compares the clock with readyAt exactly. It holds the flag
		// alone, so that a long break keeps no breaker alive.
		elapsed := new(atomic.Bool)
		ep.elapsed = elapsed
		ep.timer = time.AfterFunc(breakDur-min(breakDur/2, timerLead), func() { elapsed.Store(true) })
	case HalfOpen:
		ep.err = &OpenError{name: b.cfg.name, state: HalfOpen, b: b, ep: ep}
		ep.probes = make([]probe, 0, b.cfg.probes)
	case ForcedOpen:
		ep.err = ErrForcedOpen
	}
	switch {
	case old == nil, s == Closed, s == MetricsOnly, s == Disabled:
		ep.rejBase = b.rejections.Sum() // a new window
	default:
		ep.rejBase = old.rejBase // the window that tripped goes on
	}
	if old == nil { // New
		b.cur.Store(ep)
		return ep
	}
	if old.timer != nil {
		old.timer.Stop()
	}
	left := b.metricsOf(old, now)
	if s == Open || s == HalfOpen || s == ForcedOpen {
		ep.frozen = counts{calls: left.Calls, failures: left.Failures, slow: left.SlowCalls}
	}
	b.gen++
	b.cur.Store(ep)
	if b.cfg.observe != nil {
		t := Transition{Name: b.cfg.name, From: old.state, To: s, Generation: b.gen, Metrics: left}
		if s == Open {
			t.Break = breakDur
		}
		b.events = append(b.events, t)
		b.pending.Store(int32(len(b.events)))
	}
	return ep
}

// addSat returns a+b, or the largest duration if that overflows.
func addSat(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// deliver hands queued transitions to the observer, in order, outside the
// lock. One goroutine delivers at a time; the others leave their transitions
// to it. If the observer panics, deliver hands it the rest of the queue and
// then panics with the first value; if it exits its goroutine, the rest
// stays queued for the next call.
func (b *Breaker) deliver() {
	if b.pending.Load() == 0 {
		return
	}
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
		t := b.events[0]
		b.events = b.events[1:]
		b.pending.Store(int32(len(b.events)))
		b.mu.Unlock()
		locked = false
		if v := b.observe(t); v != nil && panicked == nil {
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

// deliverHolding delivers while the caller holds permit p: if the observer
// panics or exits, p is given back before the panic goes on.
func (b *Breaker) deliverHolding(p permit) {
	ok := false
	defer func() {
		if !ok {
			b.record(p, Ignore)
		}
	}()
	b.deliver()
	ok = true
}

// observe calls the observer and returns what it panicked with.
func (b *Breaker) observe(t Transition) (panicked any) {
	defer func() { panicked = recover() }()
	b.cfg.observe(t)
	return nil
}

// State returns the breaker's state. An Open breaker whose break is over
// becomes HalfOpen here.
func (b *Breaker) State() State {
	ep := b.cur.Load()
	if ep.state == Open {
		ep, _ = b.current()
	}
	return ep.state
}

// current returns the current epoch, moving an Open breaker whose break is
// over to HalfOpen, and the time it read.
func (b *Breaker) current() (*epoch, time.Duration) {
	now := b.now()
	b.mu.Lock()
	ep := b.advanceLocked(now)
	b.mu.Unlock()
	b.deliver()
	return ep, now
}

// Metrics returns a snapshot of the breaker's state and counts.
func (b *Breaker) Metrics() Metrics {
	return b.metricsOf(b.current())
}

func (b *Breaker) metricsOf(ep *epoch, now time.Duration) Metrics {
	m := Metrics{State: ep.state, Rejections: b.rejections.Sum() - ep.rejBase}
	c := ep.counts(now)
	m.Calls, m.Failures, m.SlowCalls = c.calls, c.failures, c.slow
	m.ConsecutiveFailures = ep.consec.Load()
	return m
}

// set moves the breaker to state s by hand.
func (b *Breaker) set(s State) {
	b.mu.Lock()
	b.reopens = 0
	b.setLocked(s, 0, b.now())
	b.mu.Unlock()
	b.deliver()
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
	if d <= 0 {
		return
	}
	now := b.now()
	b.mu.Lock()
	ep := b.advanceLocked(now)
	switch ep.state {
	case Closed, HalfOpen:
		b.setLocked(Open, d, now)
	case Open:
		if time.Duration(ep.readyAt.Load()) < addSat(now, d) {
			b.setLocked(Open, d, now)
		}
	}
	b.mu.Unlock()
	b.deliver()
}
