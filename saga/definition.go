package saga

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/resilience-go/resilience"
)

// StepFunc is an action, compensation, try, confirm or cancel. It receives
// the step's [Call]; a compensation reads the output its action recorded
// from call.Output. ctx carries the call's idempotency key
// ([IdempotencyKey]), and must be honoured.
type StepFunc func(ctx context.Context, call *Call) error

// Definition is a saga's steps, defined once and run many times by a
// [Coordinator]: a name and a version, which a durable coordinator records
// with every instance so that it never resumes an instance with steps it
// does not know. Make one with [Define] or [DefineTCC]; it is immutable and
// safe for concurrent use.
type Definition struct {
	name    string
	version int
	tcc     bool
	steps   []stepDef // in order; a group's steps are next to each other
	groups  [][]int   // step indexes per group, in order
	timeout time.Duration
}

// Name returns the definition's name.
func (d *Definition) Name() string { return d.name }

// Version returns the definition's version.
func (d *Definition) Version() int { return d.version }

type stepDef struct {
	name       string
	action     StepFunc // the try, for TCC
	compensate StepFunc // the cancel, for TCC; may be nil in a saga
	confirm    StepFunc // TCC only
	policy     resilience.Policy
	idempotent bool
}

// Item is a part of a [Definition]: a [Step], a [Parallel] group of steps,
// a [Participant], or an [Option] of the definition.
type Item interface{ item() }

// step is an Item made by Step.
type step struct{ def stepDef }

func (step) item() {}

// A StepOption configures a [Step] or a [Participant].
type StepOption interface{ applyStep(*stepDef) }

type stepOptionFunc func(*stepDef)

func (f stepOptionFunc) applyStep(s *stepDef) { f(s) }

// WithPolicy runs the step's every call (action and compensation) under p:
// a timeout, a retry, a circuit breaker, a chain of them. Default: none.
func WithPolicy(p resilience.Policy) StepOption {
	if p == nil {
		panic("saga: WithPolicy(nil)")
	}
	return stepOptionFunc(func(s *stepDef) { s.policy = p })
}

// Idempotent marks a step whose action may run twice with the same effect.
// When a durable coordinator resumes an instance whose step started but has
// no recorded result, it runs an idempotent step's action again; for any
// other step it compensates instead. An action that a [Barrier] skips, as a
// call that ran before, records no output: a participant whose
// compensation needs data from its action keeps that data itself, under the
// call's key. Default: not idempotent.
func Idempotent() StepOption {
	return stepOptionFunc(func(s *stepDef) { s.idempotent = true })
}

// Step returns a saga step named name: an action, and the compensation that
// undoes it, which gets the output the action recorded, if the saga fails.
// compensate may be nil, for a step with nothing to undo (a last
// notification, say). A compensation may run more than once (a retry, a
// recovery after a crash), and for an action that failed or never took
// effect: it must be idempotent, and do nothing when there is nothing to
// undo; a [Barrier] makes it so.
func Step(name string, action, compensate StepFunc, opts ...StepOption) Item {
	if action == nil {
		panic(fmt.Sprintf("saga: Step(%q): nil action", name))
	}
	s := step{def: stepDef{name: name, action: action, compensate: compensate}}
	for _, o := range opts {
		o.applyStep(&s.def)
	}
	return s
}

// Parallel returns a group of steps that run at once, after the items
// before it and before those after it. If one fails, the others are
// cancelled, and every step of the group is compensated, at once, before
// the groups before it.
func Parallel(steps ...Item) Item {
	g := group{}
	for _, it := range steps {
		s, ok := it.(step)
		if !ok {
			panic("saga: Parallel: only steps")
		}
		g.steps = append(g.steps, s.def)
	}
	if len(g.steps) == 0 {
		panic("saga: Parallel(): no step")
	}
	return g
}

type group struct{ steps []stepDef }

func (group) item() {}

// Participant returns a participant of a TCC saga: try reserves, confirm
// makes the reservation final, cancel releases it. confirm and cancel are
// retried until they succeed.
func Participant(name string, try, confirm, cancel StepFunc, opts ...StepOption) Item {
	if try == nil || confirm == nil || cancel == nil {
		panic(fmt.Sprintf("saga: Participant(%q): try, confirm and cancel are required", name))
	}
	p := participant{def: stepDef{name: name, action: try, confirm: confirm, compensate: cancel}}
	for _, o := range opts {
		o.applyStep(&p.def)
	}
	return p
}

type participant struct{ def stepDef }

func (participant) item() {}

// Timeout bounds a whole saga: when d has passed since the saga began and it
// has not finished its forward steps, the running step's ctx is cancelled
// and the saga compensates. A durable coordinator records the deadline, so
// it holds across crashes. Default: none.
func Timeout(d time.Duration) Item {
	if d <= 0 {
		panic(fmt.Sprintf("saga: Timeout(%v): want d > 0", d))
	}
	return timeoutItem(d)
}

type timeoutItem time.Duration

func (timeoutItem) item() {}

// Define returns a saga of steps that run in order (a [Parallel] group's
// steps at once) and are compensated in reverse when one fails. name and
// version identify it in the durable log. Define panics on a definition it
// cannot run: no step, a step name used twice, a participant, a version
// below 1.
func Define(name string, version int, items ...Item) *Definition {
	return define(name, version, false, items)
}

// DefineTCC returns a try-confirm-cancel saga of [Participant]s: every
// participant's try runs, in order; if all succeed, each participant is
// confirmed, and otherwise each participant that was tried, or may have
// been, is cancelled. Confirms and cancels are retried until they succeed.
func DefineTCC(name string, version int, items ...Item) *Definition {
	return define(name, version, true, items)
}

func define(name string, version int, tcc bool, items []Item) *Definition {
	if name == "" || len(name) > 128 || !utf8.ValidString(name) {
		panic(fmt.Sprintf("saga: Define(%q): want a name of 1 to 128 bytes", name))
	}
	if version < 1 {
		panic(fmt.Sprintf("saga: Define(%q, %d): want version >= 1", name, version))
	}
	d := &Definition{name: name, version: version, tcc: tcc}
	seen := map[string]bool{}
	add := func(s stepDef) {
		if s.name == "" || len(s.name) > 64 || !utf8.ValidString(s.name) || seen[s.name] {
			panic(fmt.Sprintf("saga: Define(%q): step name %q empty, longer than 64 bytes, or used twice", name, s.name))
		}
		seen[s.name] = true
		d.groups[len(d.groups)-1] = append(d.groups[len(d.groups)-1], len(d.steps))
		d.steps = append(d.steps, s)
	}
	for _, it := range items {
		switch it := it.(type) {
		case step:
			if tcc {
				panic(fmt.Sprintf("saga: DefineTCC(%q): a TCC saga has participants, not steps", name))
			}
			d.groups = append(d.groups, nil)
			add(it.def)
		case group:
			if tcc {
				panic(fmt.Sprintf("saga: DefineTCC(%q): a TCC saga has participants, not steps", name))
			}
			d.groups = append(d.groups, nil)
			for _, s := range it.steps {
				add(s)
			}
		case participant:
			if !tcc {
				panic(fmt.Sprintf("saga: Define(%q): participants belong to DefineTCC", name))
			}
			d.groups = append(d.groups, nil)
			add(it.def)
		case timeoutItem:
			d.timeout = time.Duration(it)
		default:
			panic(fmt.Sprintf("saga: Define(%q): unknown item %T", name, it))
		}
	}
	if len(d.steps) == 0 {
		panic(fmt.Sprintf("saga: Define(%q): no step", name))
	}
	return d
}
