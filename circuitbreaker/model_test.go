package circuitbreaker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience"
)

// refModel is a plain, sequential statement of the breaker's rules: the
// window is the list of outcomes, and every decision is recomputed from it.
// The model test runs it beside a Breaker and requires that they agree. It
// shares with the Breaker only the configuration (normalized as New
// normalizes it) and the configuration's rules: the thresholds and the break
// durations.
type refModel struct {
	cfg     config
	jitter  float64
	inView  func(e refEntry, i, n int, now time.Duration) bool // the window's rule
	state   State
	gen     int
	reopens int

	// Closed and MetricsOnly.
	entries []refEntry
	consec  int64
	// Open, HalfOpen and ForcedOpen: the counts of the epoch left behind.
	frozen counts

	// Open and HalfOpen.
	readyAt, breakDur time.Duration
	probes            []probe
	tickets           uint64
	successes         int

	rejections int64

	// changes lists the transitions, as the breaker's observer sees them.
	changes []resilience.Event
}

type refEntry struct {
	at   time.Duration
	code uint32
}

type refPermit struct {
	gen    int
	state  State
	ticket uint64
	start  time.Duration
}

func newRefModel(cfg config, jitter float64) *refModel {
	m := &refModel{cfg: cfg, jitter: jitter, state: Closed}
	// The window's rule, stated for each kind of window: entry e, the i-th
	// of n recorded, is in the window at now.
	switch w := cfg.window.(type) {
	case countKind:
		m.inView = func(_ refEntry, i, n int, _ time.Duration) bool { return i >= n-int(w.size) }
	case timeKind:
		width := w.span / time.Duration(w.buckets)
		m.inView = func(e refEntry, _, _ int, now time.Duration) bool {
			return int64(e.at/width) > int64(now/width)-w.buckets
		}
	}
	return m
}

// window returns the counts of the outcomes in the window at now.
func (m *refModel) window(now time.Duration) counts {
	var c counts
	for i, e := range m.entries {
		if m.inView(e, i, len(m.entries), now) {
			c.add(e.code)
		}
	}
	return c
}

func (m *refModel) counts(now time.Duration) counts {
	switch m.state {
	case Closed, MetricsOnly:
		return m.window(now)
	case Disabled:
		return counts{}
	}
	return m.frozen
}

func (m *refModel) set(s State, breakDur, now time.Duration, cause resilience.Cause) {
	e := resilience.Event{Policy: resilience.PolicyCircuitBreaker, Kind: resilience.StateChange,
		From: m.state.String(), To: s.String(), Cause: cause}
	if s == Open {
		e.Delay = breakDur
	}
	m.changes = append(m.changes, e)
	m.frozen = m.counts(now)
	m.state = s
	m.gen++
	m.entries, m.consec = nil, 0
	m.probes, m.tickets, m.successes = nil, 0, 0
	m.breakDur = breakDur
	if s == Open {
		m.readyAt = now + breakDur
	}
	if s == Closed || s == MetricsOnly || s == Disabled {
		m.rejections = 0 // a new window
	}
}

func (m *refModel) advance(now time.Duration) {
	if m.state == Open && now >= m.readyAt {
		m.set(HalfOpen, m.breakDur, now, resilience.BreakElapsed)
	}
}

// allow returns the permit, or the state whose rejection the call gets.
func (m *refModel) allow(now time.Duration) (*refPermit, State) {
	m.advance(now)
	p := &refPermit{gen: m.gen, state: m.state, start: now}
	switch m.state {
	case Closed, MetricsOnly, Disabled:
		return p, 0
	case HalfOpen:
		if len(m.probes) == m.cfg.probes {
			if now < m.probes[0].at+m.breakDur {
				m.rejections++
				return nil, HalfOpen
			}
			m.probes = m.probes[1:]
		}
		m.tickets++
		p.ticket = m.tickets
		m.probes = append(m.probes, probe{ticket: m.tickets, at: now})
		return p, 0
	}
	m.rejections++
	return nil, m.state
}

// retryAfter is what the rejection's RetryAfter reports at now.
func (m *refModel) retryAfter(now time.Duration) time.Duration {
	ready := m.readyAt
	if m.state == HalfOpen {
		ready = m.probes[0].at + m.breakDur
	}
	return max(ready-now, 0)
}

func (m *refModel) done(p *refPermit, o Outcome, now time.Duration) {
	if p.gen != m.gen || p.state == Disabled {
		return
	}
	slow := m.cfg.slowAfter > 0 && now-p.start >= m.cfg.slowAfter
	switch p.state {
	case Closed, MetricsOnly:
		if o == Ignore {
			return
		}
		var code uint32
		if o == Failure {
			code = failBit
			m.consec++
		} else {
			m.consec = 0
		}
		if slow {
			code |= slowBit
		}
		m.entries = append(m.entries, refEntry{at: now, code: code})
		cause := m.cfg.overThreshold(m.window(now))
		if m.cfg.consecutive > 0 && m.consec >= m.cfg.consecutive {
			cause = resilience.ConsecutiveFailures
		}
		if cause != 0 && m.state == Closed {
			m.reopens = 0
			m.set(Open, m.cfg.breakDuration(m.reopens, m.jitter), now, cause)
		}
	case HalfOpen:
		i := -1
		for j, pr := range m.probes {
			if pr.ticket == p.ticket {
				i = j
			}
		}
		if i < 0 {
			return
		}
		m.probes = append(m.probes[:i:i], m.probes[i+1:]...)
		if o == Success && slow {
			o = Failure
		}
		switch o {
		case Failure:
			m.reopens++
			m.set(Open, m.cfg.breakDuration(m.reopens, m.jitter), now, resilience.ProbeFailed)
		case Success:
			m.successes++
			if m.successes >= m.cfg.probes {
				m.reopens = 0
				m.set(Closed, 0, now, resilience.ProbesSucceeded)
			}
		}
	}
}

func (m *refModel) manual(s State, now time.Duration) {
	m.reopens = 0
	cause := resilience.Forced
	if s == Closed {
		cause = resilience.Reset
	}
	m.set(s, 0, now, cause)
}

func (m *refModel) openFor(d, now time.Duration) {
	if d <= 0 {
		return
	}
	m.advance(now)
	switch m.state {
	case Closed, HalfOpen:
		m.set(Open, d, now, resilience.OpenedFor)
	case Open:
		if m.readyAt < now+d {
			m.set(Open, d, now, resilience.OpenedFor)
		}
	}
}

func (m *refModel) metrics(now time.Duration) Metrics {
	c := m.counts(now)
	return Metrics{State: m.state, Calls: c.calls, Failures: c.failures, SlowCalls: c.slow,
		ConsecutiveFailures: m.consec, Rejections: m.rejections}
}

// drawConfig draws the options of a small configuration, so that trips,
// breaks and probes all happen within a few dozen actions, and returns them
// with the configuration they make, as New makes it.
func drawConfig(t *rapid.T) ([]Option, config) {
	var opts []Option
	rate := rapid.Bool().Draw(t, "failureRate")
	if rapid.Bool().Draw(t, "countWindow") {
		size := rapid.IntRange(1, 8).Draw(t, "size")
		opts = append(opts, WithCountWindow(size))
		if rate {
			opts = append(opts, WithFailureRate(rapid.SampledFrom([]float64{0.2, 0.5, 1}).Draw(t, "ratio"), rapid.IntRange(1, size).Draw(t, "minCalls")))
		}
	} else {
		buckets := rapid.IntRange(1, 5).Draw(t, "buckets")
		width := time.Duration(rapid.IntRange(1, 2).Draw(t, "width")) * time.Second
		opts = append(opts, WithTimeWindow(width*time.Duration(buckets), buckets))
		if rate {
			opts = append(opts, WithFailureRate(rapid.SampledFrom([]float64{0.2, 0.5, 1}).Draw(t, "ratio"), rapid.IntRange(1, 8).Draw(t, "minCalls")))
		}
	}
	if n := rapid.IntRange(0, 4).Draw(t, "consecutive"); n > 0 {
		opts = append(opts, WithConsecutiveFailures(n))
	}
	if rapid.Bool().Draw(t, "slow") {
		opts = append(opts, WithSlowCalls(time.Duration(rapid.IntRange(1, 3).Draw(t, "slowAfter"))*time.Second,
			rapid.SampledFrom([]float64{0.5, 1}).Draw(t, "slowRatio")))
	}
	base := time.Duration(rapid.IntRange(1, 5).Draw(t, "base")) * time.Second
	opts = append(opts, WithBreakDuration(base, base*time.Duration(rapid.IntRange(1, 4).Draw(t, "maxFactor"))),
		WithHalfOpenProbes(rapid.IntRange(1, 3).Draw(t, "probes")))
	return opts, newConfig(opts)
}

var outcomes = []Outcome{Success, Failure, Ignore}

func errorFor(o Outcome) error {
	switch o {
	case Failure:
		return errors.New("failed")
	case Ignore:
		return context.Canceled
	}
	return nil
}

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

type modelPermit struct {
	ref  *refPermit
	done func(error)
}

// The Breaker and the model agree on every decision, state and count, over
// random sequences of calls, outcomes, concurrent permits, clock advances
// and manual transitions. The calls go through the state machine's methods
// (admit, record, setState, openFor, advance, metrics), given the time, and
// through the exported methods and their fast path, which read the clock:
// in the synctest bubble both see the same time.
func TestModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			opts, cfg := drawConfig(rt)
			jitter := rapid.Float64Range(0, 1).Draw(rt, "jitter")
			// The observer keeps the state changes, without their times,
			// to compare with the model's.
			var changes []resilience.Event
			observer := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
				if e.Kind == resilience.StateChange {
					e.Time = time.Time{}
					changes = append(changes, e)
				}
			})
			b := New(append(opts, WithObserver(observer))...)
			b.jitter = func() float64 { return jitter }
			m := newRefModel(cfg, jitter)
			var permits []modelPermit

			// checkRejection compares a rejection with the model's.
			checkRejection := func(err error, want State) {
				if want == ForcedOpen {
					if err != ErrForcedOpen {
						rt.Fatalf("rejection %v, want ErrForcedOpen", err)
					}
					return
				}
				var oe *OpenError
				if !errors.As(err, &oe) || oe.State() != want {
					rt.Fatalf("rejection %v, want an OpenError in state %v", err, want)
				}
				now := b.now()
				if got, wantAfter := oe.retryAfter(now), m.retryAfter(now); got != wantAfter || oe.RetryAfter() != got {
					rt.Fatalf("RetryAfter %v (%v at the clock's now), model %v", got, oe.RetryAfter(), wantAfter)
				}
			}
			actions := map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					now := b.now()
					ep := b.cur.Load()
					if ep.state != m.state {
						rt.Fatalf("state %v, model %v", ep.state, m.state)
					}
					if got, want := b.metricsOf(ep, now), m.metrics(now); got != want {
						rt.Fatalf("metrics %+v, model %+v", got, want)
					}
					// The state machine's methods queue changes; deliver
					// those the exported methods have not.
					b.deliver(context.Background())
					if !slices.Equal(changes, m.changes) {
						rt.Fatalf("state changes\n%+v\nmodel\n%+v", changes, m.changes)
					}
				},
				"admit": func(rt *rapid.T) {
					now := b.now()
					p, err := b.admit(now)
					ref, rejected := m.allow(now)
					if (err == nil) != (ref != nil) {
						rt.Fatalf("admit: err %v, model admits %v (state %v)", err, ref != nil, m.state)
					}
					if err != nil {
						checkRejection(err, rejected)
						return
					}
					done := func(err error) { b.record(p, b.classify(err), b.now()) }
					permits = append(permits, modelPermit{ref, done})
				},
				"allow": func(rt *rapid.T) {
					now := b.now()
					done, err := b.Allow()
					ref, rejected := m.allow(now)
					if (err == nil) != (ref != nil) {
						rt.Fatalf("Allow: err %v, model admits %v (state %v)", err, ref != nil, m.state)
					}
					if err != nil {
						checkRejection(err, rejected)
						return
					}
					permits = append(permits, modelPermit{ref, done})
				},
				"finish": func(rt *rapid.T) {
					if len(permits) == 0 {
						rt.Skip("no permit out")
					}
					i := rapid.IntRange(0, len(permits)-1).Draw(rt, "permit")
					o := rapid.SampledFrom(outcomes).Draw(rt, "outcome")
					p := permits[i]
					permits = append(permits[:i], permits[i+1:]...)
					p.done(errorFor(o))
					m.done(p.ref, o, b.now())
				},
				"do": func(rt *rapid.T) {
					o := rapid.SampledFrom(outcomes).Draw(rt, "outcome")
					d := time.Duration(rapid.IntRange(0, 4).Draw(rt, "seconds")) * time.Second
					ref, rejected := m.allow(b.now())
					called := false
					err := b.Do(context.Background(), func(context.Context) error {
						called = true
						time.Sleep(d)
						return errorFor(o)
					})
					if called != (ref != nil) {
						rt.Fatalf("Do: called %v, model admits %v (err %v)", called, ref != nil, err)
					}
					if !called {
						checkRejection(err, rejected)
						return
					}
					m.done(ref, o, b.now())
				},
				"sleep": func(rt *rapid.T) {
					time.Sleep(time.Duration(rapid.IntRange(1, 6000).Draw(rt, "ms")) * time.Millisecond)
					synctest.Wait() // let a break's timer set its flag
				},
				"manual": func(rt *rapid.T) {
					core := rapid.Bool().Draw(rt, "core")
					now := b.now()
					switch s := rapid.SampledFrom([]State{Closed, ForcedOpen, Disabled, MetricsOnly, Open}).Draw(rt, "to"); {
					case s == Open && core:
						d := time.Duration(rapid.IntRange(-1, 5).Draw(rt, "openFor")) * time.Second
						b.openFor(d, now)
						m.openFor(d, now)
					case s == Open:
						d := time.Duration(rapid.IntRange(-1, 5).Draw(rt, "openFor")) * time.Second
						b.OpenFor(d)
						m.openFor(d, now)
					case core:
						b.setState(s, now)
						m.manual(s, now)
					default:
						map[State]func(){Closed: b.Reset, ForcedOpen: b.ForceOpen, Disabled: b.Disable, MetricsOnly: b.MetricsOnly}[s]()
						m.manual(s, now)
					}
				},
				"state": func(rt *rapid.T) {
					now := b.now()
					var got State
					if rapid.Bool().Draw(rt, "core") {
						got = b.advance(now).state
					} else {
						got = b.State()
					}
					m.advance(now)
					if got != m.state {
						rt.Fatalf("State() %v, model %v", got, m.state)
					}
				},
				"metrics": func(rt *rapid.T) {
					now := b.now()
					var got Metrics
					if rapid.Bool().Draw(rt, "core") {
						got = b.metrics(now)
					} else {
						got = b.Metrics()
					}
					m.advance(now)
					if want := m.metrics(now); got != want {
						rt.Fatalf("Metrics() %+v, model %+v", got, want)
					}
				},
			}
			// Calls, outcomes and sleeps are three times as likely as the
			// rest, so that sequences reach the half-open state often.
			for _, name := range []string{"admit", "allow", "finish", "do", "sleep"} {
				actions[name+" again"], actions[name+" once more"] = actions[name], actions[name]
			}
			rt.Repeat(actions)
		})
	})
}
