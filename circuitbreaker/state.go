package circuitbreaker

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
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

// String returns the state's name in lower case, such as "half-open", or
// "State(n)" for a value that is not a state.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// The state machine
//
// Each stay in a state is an epoch, and the current one is b.cur. The
// methods in this file are the whole state machine: they take the time as
// now, on the breaker's monotonic clock, and read no clock, as
// rate.Limiter.AllowN takes its time; the one timer, which an open epoch
// starts, only tells the fast path that the break is nearly over, and the
// state machine does not look at it. The exported methods read the clock
// once and call them; the fast path of Do and Allow (circuitbreaker.go)
// admits calls in the closed state and rejects them in the open one from
// the current epoch alone, and reads the clock only when the time matters.
// The model test drives these methods beside its reference model.
//
// The methods queue transitions for the observer and never deliver them:
// their callers deliver once they hold nothing an observer's panic could
// leak.

// timerLead is how early, at most, the timer of an open breaker fires: long
// enough that a timer delayed by a loaded machine still fires before the
// break ends, so that a call after the end is admitted, while the calls of
// the lead alone pay for a look at the clock.
const timerLead = 100 * time.Millisecond

// epoch is one stay in one state.
type epoch struct {
	state State

	// Closed and MetricsOnly: the live window, and the done func that
	// Allow hands out.
	win  window
	done func(error)
	_    [64]byte // keeps consec, written on failures, off the line every call reads
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
	if ep.win != nil {
		return ep.win.counts(now)
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
	start  time.Duration // when the call was admitted, if slow calls are measured
}

// admit decides on a call at now, in any state: it returns a permit, or the
// rejection, which it counts. The fast path calls it when the current epoch
// alone cannot decide: the break may be over, the breaker may be half-open,
// or its state may have just changed.
func (b *Breaker) admit(now time.Duration) (permit, error) {
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

// advance moves an open breaker whose break is over at now to HalfOpen, and
// returns the current epoch.
func (b *Breaker) advance(now time.Duration) *epoch {
	b.mu.Lock()
	ep := b.advanceLocked(now)
	b.mu.Unlock()
	return ep
}

// advanceLocked is advance with b.mu held.
func (b *Breaker) advanceLocked(now time.Duration) *epoch {
	ep := b.cur.Load()
	if ep.state == Open && now >= time.Duration(ep.readyAt.Load()) {
		ep = b.setLocked(HalfOpen, ep.breakDur, now, resilience.BreakElapsed)
	}
	return ep
}

// record counts outcome o, at now, of the call that p admitted, in the epoch
// that admitted it: nothing happens in an epoch that is over.
func (b *Breaker) record(p permit, o Outcome, now time.Duration) {
	switch p.ep.state {
	case Closed, MetricsOnly:
		if cause := b.count(p, o, now); cause != 0 {
			b.trip(p.ep, now, cause)
		}
	case HalfOpen:
		b.recordProbe(p, o, now)
	}
}

// count records outcome o, at now, of a call that p admitted in a closed or
// metrics-only epoch, and returns the rule by which it trips the breaker:
// consecutive failures first, then the failure rate, then the slow-call
// rate; or 0 if it does not. now is used only when b.cfg.clocked. A success
// takes no lock unless the window asks for a check of the thresholds.
func (b *Breaker) count(p permit, o Outcome, now time.Duration) resilience.Cause {
	ep := p.ep
	var code uint32
	var cause resilience.Cause
	switch o {
	case Ignore:
		return 0
	case Failure:
		code = failBit
		if n := ep.consec.Add(1); b.cfg.consecutive > 0 && n >= b.cfg.consecutive {
			cause = resilience.ConsecutiveFailures
		}
	default:
		if ep.consec.Load() != 0 {
			ep.consec.Store(0)
		}
	}
	if b.cfg.slowAfter > 0 && now-p.start >= b.cfg.slowAfter {
		code |= slowBit
	}
	if code == 0 && !ep.win.success(now) {
		return 0 // a success that cannot trip the breaker
	}
	c := ep.win.add(now, code)
	if ep.state != Closed {
		return 0
	}
	if cause == 0 {
		cause = b.cfg.overThreshold(c)
	}
	return cause
}

// trip opens the breaker at now, by the rule cause, if ep is still the
// current epoch.
func (b *Breaker) trip(ep *epoch, now time.Duration, cause resilience.Cause) {
	b.mu.Lock()
	if b.cur.Load() == ep {
		b.reopens = 0
		b.setLocked(Open, b.breakDuration(), now, cause)
	}
	b.mu.Unlock()
}

// recordProbe counts outcome o, at now, of a half-open probe.
func (b *Breaker) recordProbe(p permit, o Outcome, now time.Duration) {
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
				b.setLocked(Open, b.breakDuration(), now, resilience.ProbeFailed)
			case Success:
				ep.successes++
				if ep.successes >= b.cfg.probes {
					b.reopens = 0
					b.setLocked(Closed, 0, now, resilience.ProbesSucceeded)
				}
			}
		}
	}
	b.mu.Unlock()
}

// breakDuration returns the next break.
func (b *Breaker) breakDuration() time.Duration {
	return b.cfg.breakDuration(b.reopens, b.jitter())
}

// setState moves the breaker to state s by hand, at now: Closed is a
// reset, the others are forced.
func (b *Breaker) setState(s State, now time.Duration) {
	cause := resilience.Forced
	if s == Closed {
		cause = resilience.Reset
	}
	b.mu.Lock()
	b.reopens = 0
	b.setLocked(s, 0, now, cause)
	b.mu.Unlock()
}

// openFor opens the breaker at now for exactly d; see [Breaker.OpenFor].
func (b *Breaker) openFor(d, now time.Duration) {
	if d <= 0 {
		return
	}
	b.mu.Lock()
	ep := b.advanceLocked(now)
	switch ep.state {
	case Closed, HalfOpen:
		b.setLocked(Open, d, now, resilience.OpenedFor)
	case Open:
		if time.Duration(ep.readyAt.Load()) < addSat(now, d) {
			b.setLocked(Open, d, now, resilience.OpenedFor)
		}
	}
	b.mu.Unlock()
}

// metrics returns the breaker's metrics at now, after moving an open breaker
// whose break is over to HalfOpen.
func (b *Breaker) metrics(now time.Duration) Metrics {
	return b.metricsOf(b.advance(now), now)
}

// metricsOf returns the metrics of epoch ep at now.
func (b *Breaker) metricsOf(ep *epoch, now time.Duration) Metrics {
	m := Metrics{State: ep.state, Rejections: b.rejections.Sum() - ep.rejBase}
	c := ep.counts(now)
	m.Calls, m.Failures, m.SlowCalls = c.calls, c.failures, c.slow
	m.ConsecutiveFailures = ep.consec.Load()
	return m
}

// setLocked starts a new epoch in state s at now, because of cause, and
// queues the transition. For Open, breakDur is the break; for HalfOpen, the
// break that preceded it.
func (b *Breaker) setLocked(s State, breakDur, now time.Duration, cause resilience.Cause) *epoch {
	old := b.cur.Load()
	ep := &epoch{state: s, breakDur: breakDur}
	switch s {
	case Closed, MetricsOnly:
		ep.win = b.cfg.window.newWindow(b.cfg.minCalls, now)
		ep.done = func(err error) {
			b.finish(permit{ep: ep}, b.classify(err))
			b.deliver(context.Background())
		}
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
	if b.cfg.onChange != nil || b.cfg.observer != nil {
		t := Transition{Name: b.cfg.name, From: old.state, To: s, Cause: cause, Generation: b.gen, Metrics: left}
		if s == Open {
			t.Break = breakDur
		}
		b.events = append(b.events, change{t, now})
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
