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
	// maxWrites is the most journal writes one write of an instance
	// carries: a group's results with the next group's intents, or every
	// step's compensation or confirm.
	maxWrites int
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

// Item is a part of a saga's [Definition], as [Define] takes them: a
// [Step], a [Parallel] group of steps, or a [Timeout]. The types keep the
// parts of a TCC saga ([TCCItem]) out.
type Item interface{ sagaItem() }

// TCCItem is a part of a try-confirm-cancel [Definition], as [DefineTCC]
// takes them: a [Participant] or a [Timeout].
type TCCItem interface{ tccItem() }

// StepItem is a saga step, made by [Step]: an [Item] of [Define], and what
// [Parallel] groups. Its zero value is no step: Define panics on it.
type StepItem struct{ def stepDef }

func (StepItem) sagaItem() {}

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

// checkStepName panics unless name fits the log: 1 to 64 bytes of UTF-8.
func checkStepName(f, name string) {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		panic(fmt.Sprintf("saga: %s(%q): want a name of 1 to 64 bytes of UTF-8", f, name))
	}
}

// Step returns a saga step named name (1 to 64 bytes of UTF-8): an action,
// and the compensation that undoes it, which gets the output the action
// recorded, if the saga fails. compensate may be nil, for a step with
// nothing to undo (a last notification, say). A compensation may run more
// than once (a retry, a recovery after a crash), and for an action that
// failed or never took effect: it must be idempotent, and do nothing when
// there is nothing to undo; a [Barrier] makes it so. Step panics on a bad
// name, a nil action or a nil option.
func Step(name string, action, compensate StepFunc, opts ...StepOption) StepItem {
	checkStepName("Step", name)
	if action == nil {
		panic(fmt.Sprintf("saga: Step(%q): nil action", name))
	}
	s := StepItem{def: stepDef{name: name, action: action, compensate: compensate}}
	applySteps("Step", &s.def, opts)
	return s
}

func applySteps(f string, s *stepDef, opts []StepOption) {
	for _, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("saga: %s(%q): nil StepOption", f, s.name))
		}
		o.applyStep(s)
	}
}

// Parallel returns a group of steps that run at once, after the items
// before it and before those after it. If one fails, the others are
// cancelled, and every step of the group is compensated, at once, before
// the groups before it. It panics without a step.
func Parallel(steps ...StepItem) Item {
	if len(steps) == 0 {
		panic("saga: Parallel(): no step")
	}
	return group{steps: steps}
}

type group struct{ steps []StepItem }

func (group) sagaItem() {}

// Participant returns a participant of a TCC saga, named name (1 to 64
// bytes of UTF-8): try reserves, confirm makes the reservation final,
// cancel releases it. confirm and cancel are retried until they succeed.
func Participant(name string, try, confirm, cancel StepFunc, opts ...StepOption) TCCItem {
	checkStepName("Participant", name)
	if try == nil || confirm == nil || cancel == nil {
		panic(fmt.Sprintf("saga: Participant(%q): try, confirm and cancel are required", name))
	}
	p := participant{def: stepDef{name: name, action: try, confirm: confirm, compensate: cancel}}
	applySteps("Participant", &p.def, opts)
	return p
}

type participant struct{ def stepDef }

func (participant) tccItem() {}

// TimeoutItem bounds a whole saga, made by [Timeout]: an item of both
// [Define] and [DefineTCC]. Its zero value bounds nothing: Define panics on
// it.
type TimeoutItem struct{ d time.Duration }

func (TimeoutItem) sagaItem() {}
func (TimeoutItem) tccItem()  {}

// Timeout bounds a whole saga: when d has passed since the saga began and it
// has not finished its forward steps, the running step's ctx is cancelled
// and the saga compensates. A durable coordinator records the deadline, so
// it holds across crashes. Default: none. d must be positive.
func Timeout(d time.Duration) TimeoutItem {
	if d <= 0 {
		panic(fmt.Sprintf("saga: Timeout(%v): want d > 0", d))
	}
	return TimeoutItem{d: d}
}

// Define returns a saga of steps that run in order (a [Parallel] group's
// steps at once) and are compensated in reverse when one fails. name (1 to
// 128 bytes of UTF-8) and version (at least 1) identify it in the durable
// log. Define panics, naming the item, on a definition it cannot run: no
// step, a step name used twice, a nil or zero item, a second Timeout.
func Define(name string, version int, items ...Item) *Definition {
	b := newBuilder("Define", name, version, false)
	for k, it := range items {
		switch it := it.(type) {
		case StepItem:
			b.group(k, it)
		case group:
			b.group(k, it.steps...)
		case TimeoutItem:
			b.timeout(k, it)
		case nil:
			b.fail(k, "is nil")
		default: // a pointer to an item, say
			b.fail(k, fmt.Sprintf("is a %T", it))
		}
	}
	return b.done()
}

// DefineTCC returns a try-confirm-cancel saga of [Participant]s: every
// participant's try runs, in order; if all succeed, each participant is
// confirmed, and otherwise each participant that was tried, or may have
// been, is cancelled. Confirms and cancels are retried until they succeed.
// It panics as [Define] does.
func DefineTCC(name string, version int, items ...TCCItem) *Definition {
	b := newBuilder("DefineTCC", name, version, true)
	for k, it := range items {
		switch it := it.(type) {
		case participant:
			b.add(k, -1, it.def)
		case TimeoutItem:
			b.timeout(k, it)
		case nil:
			b.fail(k, "is nil")
		default: // a pointer to an item, say
			b.fail(k, fmt.Sprintf("is a %T", it))
		}
	}
	return b.done()
}

// builder checks and assembles a Definition, item by item.
type builder struct {
	f    string // "Define" or "DefineTCC", for messages
	d    *Definition
	seen map[string]int // step name -> the item that names it, from 1
	// timeoutAt is the number of the item that set the timeout, from 1.
	timeoutAt int
}

func newBuilder(f, name string, version int, tcc bool) *builder {
	if name == "" || len(name) > 128 || !utf8.ValidString(name) {
		panic(fmt.Sprintf("saga: %s(%q): want a name of 1 to 128 bytes of UTF-8", f, name))
	}
	if version < 1 {
		panic(fmt.Sprintf("saga: %s(%q, %d): want version >= 1", f, name, version))
	}
	return &builder{f: f, d: &Definition{name: name, version: version, tcc: tcc}, seen: map[string]int{}}
}

// fail panics naming item k (from 0) of the definition.
func (b *builder) fail(k int, what string) {
	panic(fmt.Sprintf("saga: %s(%q): item %d %s", b.f, b.d.name, k+1, what))
}

// group adds a group of steps, item k.
func (b *builder) group(k int, steps ...StepItem) {
	b.d.groups = append(b.d.groups, nil)
	for i, s := range steps {
		if s.def.action == nil {
			if len(steps) == 1 {
				b.fail(k, "is a zero StepItem; use Step")
			}
			b.fail(k, fmt.Sprintf("(Parallel), step %d, is a zero StepItem; use Step", i+1))
		}
		b.add(k, i, s.def)
	}
}

// add adds step s, the i-th (from 0) of item k's group, or a participant
// (i < 0), which is a group of its own.
func (b *builder) add(k, i int, s stepDef) {
	switch first := b.seen[s.name]; {
	case first == k+1:
		b.fail(k, fmt.Sprintf("names step %q twice", s.name))
	case first > 0:
		b.fail(k, fmt.Sprintf("names step %q, as item %d does", s.name, first))
	}
	b.seen[s.name] = k + 1
	if i < 0 {
		b.d.groups = append(b.d.groups, nil)
	}
	g := len(b.d.groups) - 1
	b.d.groups[g] = append(b.d.groups[g], len(b.d.steps))
	b.d.steps = append(b.d.steps, s)
}

func (b *builder) timeout(k int, t TimeoutItem) {
	switch {
	case t.d <= 0:
		b.fail(k, "is a zero TimeoutItem; use Timeout")
	case b.timeoutAt > 0:
		b.fail(k, fmt.Sprintf("is a second Timeout; item %d is the first", b.timeoutAt))
	}
	b.timeoutAt = k + 1
	b.d.timeout = t.d
}

func (b *builder) done() *Definition {
	d := b.d
	if len(d.steps) == 0 {
		panic(fmt.Sprintf("saga: %s(%q): no step", b.f, d.name))
	}
	d.maxWrites = len(d.steps)
	for g := range d.groups {
		n := len(d.groups[g])
		if g+1 < len(d.groups) {
			n += len(d.groups[g+1])
		}
		d.maxWrites = max(d.maxWrites, n)
	}
	return d
}
