package saga

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/retry"
)

// engine runs saga instances: their forward steps, then their confirms or
// compensations, each call under its step's policy. It keeps nothing
// itself: what it does to an instance goes to the instance's journal,
// which an in-memory coordinator's instances have empty ([memory]) and a
// durable one's write to the database ([claim]). It never asks which.
type engine struct {
	settleTimeout time.Duration
	attempts      int
	// The waits between attempts of a round, and between rounds: a random
	// time between half and all of base·2^(n-1), at most max.
	attemptWait, roundWait retry.Backoff
	alertAfter             int
	// stuckAfter is how many failed rounds of compensation or confirmation
	// park an instance as Stuck.
	stuckAfter int
	name       string
	observer   resilience.Observer
	onEvent    func(Event)
	defs       sync.Map // defKey -> *Definition
	known      sync.Map // *Definition -> struct{}: registered
	stats      struct {
		started, succeeded, compensated atomic.Int64
	}
}

func newEngine(cfg *config) *engine {
	return &engine{
		settleTimeout: cfg.settleTimeout,
		attempts:      cfg.attempts,
		attemptWait:   retry.EqualJitter(cfg.attemptBase, cfg.attemptMax),
		roundWait:     retry.EqualJitter(cfg.roundBase, cfg.roundMax),
		alertAfter:    cfg.alertAfter,
		stuckAfter:    cfg.stuckAfter,
		name:          cfg.name,
		observer:      cfg.observer,
		onEvent:       cfg.onEvent,
	}
}

type defKey struct {
	name    string
	version int
}

// register makes d known to the engine, which refuses a second, different
// definition of the same name and version: which of the two would recovery
// resume an instance with?
func (e *engine) register(d *Definition) error {
	if d == nil {
		return errors.New("saga: nil Definition")
	}
	if _, ok := e.known.Load(d); ok {
		return nil
	}
	if old, loaded := e.defs.LoadOrStore(defKey{d.name, d.version}, d); loaded && old != d {
		return fmt.Errorf("saga: another definition %s version %d is registered; give a changed definition a new version", d.name, d.version)
	}
	e.known.Store(d, struct{}{})
	return nil
}

func (e *engine) definition(name string, version int) *Definition {
	d, _ := e.defs.Load(defKey{name, version})
	def, _ := d.(*Definition)
	return def
}

// emit reports ev, with ctx, to the function of WithOnEvent and, as the
// event of its kind in eventKinds, to the observer.
func (e *engine) emit(ctx context.Context, ev Event) {
	if e.onEvent != nil {
		e.onEvent(ev)
	}
	if e.observer != nil && int(ev.Kind) < len(eventKinds) {
		err := ev.Err
		if ev.Kind == Alert {
			err = fmt.Errorf("saga: %d rounds failed: %w", ev.Attempts, err)
		}
		e.observe(ctx, resilience.Event{Kind: eventKinds[ev.Kind], Attempt: ev.Attempts, Err: err, Subject: ev.SagaID})
	}
}

// eventKinds maps an EventKind to the event kind of the observer: an alert
// is an error of the coordinator's own work, and a stuck instance is dead.
var eventKinds = [...]resilience.EventKind{Alert: resilience.Error, StuckEvent: resilience.Dead,
	LeaseLost: resilience.Error, UnknownDefinition: resilience.Error, StoreError: resilience.Error}

// observe sends ev, of the coordinator, to the observer, with its time and
// the coordinator's name.
func (e *engine) observe(ctx context.Context, ev resilience.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Policy, ev.Name = resilience.PolicySaga, e.name
	e.observer.Observe(ctx, ev)
}

// start marks the given steps' actions as started, and appends to ws the
// writes that record their intents. Compensations and confirms need none
// (see settle).
func start(ws []write, in *instance, steps []int) []write {
	for _, i := range steps {
		in.steps[i].action = started
		ws = append(ws, write{step: i, phase: Action, status: started})
	}
	return ws
}

// drive takes an instance from where it stands to an end, or to a point
// where it must wait (a compensation round that failed), and returns its
// outcome: nil if it succeeded, an [*Error] if not, or the error of its
// journal.
func (e *engine) drive(ctx context.Context, in *instance) error {
	// The forward steps run under fctx: the caller's, cancelled too when a
	// durable coordinator loses the lease. The journal's writes and the
	// compensations run under lctx: detached from the caller's cancellation,
	// so that a failure is recorded and compensated whatever the caller
	// does, but cancelled when the lease is lost.
	fctx, lctx, stop := in.j.hold(ctx)
	defer stop()
	var start time.Time
	if e.observer != nil {
		start = time.Now()
	}
	var err error
	if in.status == Running {
		err = e.forward(fctx, lctx, in)
	}
	if err == nil && in.status == Confirming {
		err = e.settle(lctx, in, Confirm)
	}
	if err == nil && in.status == Compensating {
		err = e.settle(lctx, in, Compensate)
	}
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			e.emit(lctx, Event{Kind: LeaseLost, SagaID: in.id, Err: err})
		}
		return err
	}
	var kind resilience.EventKind
	switch in.status {
	case Succeeded:
		e.stats.succeeded.Add(1)
		kind = resilience.Success
	case Compensated:
		e.stats.compensated.Add(1)
		kind = resilience.Compensated
	}
	err = outcome(in)
	if e.observer != nil && kind != 0 {
		now, took := event.End(start)
		e.observe(lctx, resilience.Event{Time: now, Kind: kind, Duration: took, Err: err, Subject: in.id})
	}
	return err
}

// outcome is what Run returns for an instance that stands where it does:
// nil if it succeeded, and otherwise an [*Error].
func outcome(in *instance) error {
	if in.status == Succeeded {
		return nil
	}
	e := &Error{SagaID: in.id, Step: in.failed, Err: in.cause, Status: in.status, Compensation: in.compensationErr()}
	if e.Err == nil { // every try succeeded; confirms are owed
		e.Step, e.Err = in.settleStep, ErrNotConfirmed
	}
	return e
}

// forward runs the forward steps from the first group not done. It returns
// an error only for the journal; a step's failure moves the instance to
// compensation.
//
// Steps run under ctx; the journal's writes under jctx, which the caller's
// cancellation does not reach.
func (e *engine) forward(ctx, jctx context.Context, in *instance) error {
	sctx := ctx
	if !in.deadline.IsZero() {
		var cancel context.CancelFunc
		sctx, cancel = context.WithDeadlineCause(ctx, in.deadline, ErrDeadline)
		defer cancel()
	}
	phase := Action
	if in.def.tcc {
		phase = Try
	}
	var todo []int
	var results []result
	for g, steps := range in.def.groups {
		todo = todo[:0]
		for _, i := range steps {
			switch in.steps[i].action {
			case succeeded:
				continue
			case started, failed:
				// Started before a crash, with no result: run it again only
				// if it is idempotent; otherwise compensate.
				if in.unknown[i] && !in.def.steps[i].idempotent {
					return e.fail(jctx, in, in.def.steps[i].name, errOutcomeUnknown, nil)
				}
			}
			todo = append(todo, i)
		}
		if len(todo) == 0 {
			continue
		}
		if err := sctx.Err(); err != nil {
			return e.fail(jctx, in, "", context.Cause(sctx), nil)
		}
		results = e.runGroup(sctx, in, todo, phase, nil, results)
		if errors.Is(context.Cause(jctx), ErrLeaseLost) {
			return ErrLeaseLost // a call refused for it is no failure of its step
		}
		writes := in.writes[:0]
		var firstErr error
		failedStep := ""
		for k, i := range todo {
			r := results[k]
			if r.err != nil {
				in.steps[i].action, in.steps[i].output = failed, r.output
				writes = append(writes, write{step: i, phase: Action, status: failed, output: r.output, err: r.err.Error()})
				if firstErr == nil {
					firstErr, failedStep = r.err, in.def.steps[i].name
				}
				continue
			}
			in.steps[i].action, in.steps[i].output = succeeded, r.output
			writes = append(writes, write{step: i, phase: Action, status: succeeded, output: r.output})
		}
		if firstErr != nil {
			if cause := context.Cause(sctx); cause != nil && sctx.Err() != nil {
				firstErr = &withCause{err: firstErr, cause: cause}
			}
			return e.fail(jctx, in, failedStep, firstErr, writes)
		}
		if g+1 < len(in.def.groups) {
			writes = start(writes, in, in.def.groups[g+1])
		} else if in.def.tcc {
			in.status = Confirming
		} else {
			in.status = Succeeded
		}
		if err := in.j.commit(jctx, in, writes); err != nil {
			return err
		}
	}
	if in.status == Running { // every step was done before a restart
		in.status = Succeeded
		if in.def.tcc {
			in.status = Confirming
		}
		return in.j.commit(jctx, in, nil)
	}
	return nil
}

// errOutcomeUnknown fails a saga whose step, not idempotent, started
// before a crash and has no recorded result.
var errOutcomeUnknown = errors.New("outcome unknown after a restart")

// withCause is the error of a step whose ctx ended, with the cause of that
// end: the saga's deadline, say.
type withCause struct{ err, cause error }

func (e *withCause) Error() string   { return e.err.Error() + " (" + bare(e.cause) + ")" }
func (e *withCause) Unwrap() []error { return []error{e.err, e.cause} }

// fail records the failure of the forward steps and moves the instance to
// compensation: the results of the group that failed and the new status, in
// one write, before any compensation runs (after a crash, recovery must not
// take a failed step for one to run again).
func (e *engine) fail(ctx context.Context, in *instance, step string, cause error, writes []write) error {
	in.status, in.failed, in.cause = Compensating, step, cause
	return in.j.commit(ctx, in, writes)
}

type result struct {
	output []byte
	err    error
	// attempts counts the attempts of the phase of the step made so far:
	// those of the calls before this one, and this one's.
	attempts int
}

// runGroup runs phase of the given steps at once and returns their results.
// made, if not nil, holds for each step (by index in the definition) how
// many attempts of the phase were made before.
func (e *engine) runGroup(ctx context.Context, in *instance, steps []int, phase Phase, made []int, results []result) []result {
	results = append(results[:0], make([]result, len(steps))...)
	if len(steps) == 1 {
		results[0] = e.call(ctx, in, steps[0], phase, attemptsOf(made, steps[0]))
		return results
	}
	e.runParallel(ctx, in, steps, phase, made, results)
	return results
}

// attemptsOf returns made[i], or 0 for a nil made.
func attemptsOf(made []int, i int) int {
	if made == nil {
		return 0
	}
	return made[i]
}

// runParallel runs phase of the given steps at once, each in a goroutine,
// and puts their results in results. When one action (or try) fails, the
// others' ctx is cancelled; compensations, cancels and confirms are
// independent, and one that fails does not stop the others. Every call has
// returned when runParallel does.
func (e *engine) runParallel(ctx context.Context, in *instance, steps []int, phase Phase, made []int, results []result) {
	g, gctx := errgroup.WithContext(ctx)
	forward := phase == Action || phase == Try
	for k, i := range steps {
		g.Go(func() error {
			results[k] = e.call(gctx, in, i, phase, attemptsOf(made, i))
			if forward {
				return results[k].err
			}
			return nil
		})
	}
	_ = g.Wait() // results holds the errors, step by step
}

// callCtx is the ctx of a step call, which carries its key, and the call:
// one allocation for both.
type callCtx struct {
	context.Context
	call Call
	// attempts counts the attempts of the phase of the step: those made
	// before the call, and the call's own (atomic: a hedging policy makes
	// attempts at once).
	attempts atomic.Int32
}

// subject returns "sagaID/step", the Subject of the events of the call.
func (cc *callCtx) subject() string { return cc.call.SagaID + "/" + cc.call.Step }

func (cc *callCtx) Value(key any) any {
	if key == (keyCtx{}) {
		return cc.call.Key
	}
	return cc.Context.Value(key)
}

// call runs one phase of one step under its policy, with its key in ctx,
// after made attempts of the phase. A panic in the step, which goes through
// the policy as panics do, is an error of the step here, so that the saga
// compensates.
func (e *engine) call(ctx context.Context, in *instance, i int, phase Phase, made int) (res result) {
	def := &in.def.steps[i]
	cc := &callCtx{Context: ctx, call: Call{Key: Key{SagaID: in.id, Step: def.name, Phase: phase}, Input: in.input, in: in}}
	cc.attempts.Store(int32(made))
	if e.observer != nil {
		start := time.Now()
		defer func() { e.observeCall(cc, start, res) }()
	}
	f := def.action
	switch phase {
	case Compensate, Cancel:
		f = def.compensate
	case Confirm:
		f = def.confirm
	}
	if phase != Action && phase != Try {
		cc.call.Output = in.steps[i].output
	}
	defer func() {
		if v := recover(); v != nil {
			res = result{output: cc.call.out, err: &stepPanic{key: cc.call.Key, value: v}, attempts: int(cc.attempts.Load())}
		}
	}()
	// Each attempt starts only once the journal admits it (a durable
	// coordinator's, only while it holds the lease): each of the engine's
	// own, and each that the step's policy makes.
	var err error
	if def.policy != nil {
		err = def.policy.Do(cc, func(ctx context.Context) error {
			if err := cc.call.in.j.admit(ctx); err != nil {
				return err
			}
			e.started(ctx, cc)
			return f(ctx, &cc.call)
		})
	} else if err = in.j.admit(cc); err == nil {
		e.started(cc, cc)
		err = f(cc, &cc.call)
	}
	return result{output: cc.call.out, err: err, attempts: int(cc.attempts.Load())}
}

// started counts an attempt of the call cc, whose ctx is ctx, and tells
// the observer.
func (e *engine) started(ctx context.Context, cc *callCtx) {
	n := cc.attempts.Add(1)
	if e.observer != nil {
		e.observe(ctx, resilience.Event{Kind: resilience.Started, Attempt: int(n), Subject: cc.subject()})
	}
}

// observeCall tells the observer how the call cc that started at start
// ended: an action, try or confirm with Success, a compensation or cancel
// with Compensated, any of them with Failure, or Ignored for an error once
// its ctx was done (the caller cancelled, the saga's deadline passed, the
// lease was lost). The error of a call that is not an action or a try
// names the phase.
func (e *engine) observeCall(cc *callCtx, start time.Time, res result) {
	ev := resilience.Event{Attempt: res.attempts, Subject: cc.subject(), Err: res.err}
	ev.Time, ev.Duration = event.End(start)
	phase := cc.call.Phase
	switch {
	case res.err == nil && (phase == Compensate || phase == Cancel):
		ev.Kind = resilience.Compensated
	case res.err == nil:
		ev.Kind = resilience.Success
	case cc.Err() != nil:
		ev.Kind = resilience.Ignored
	default:
		ev.Kind = resilience.Failure
	}
	if res.err != nil && phase != Action && phase != Try {
		ev.Err = fmt.Errorf("%s: %w", phase, res.err)
	}
	e.observe(cc, ev)
}

// settle runs the compensations (phase Compensate) or the confirms (phase
// Confirm) still owed, retrying each round's failures in process, and then
// records the end, or a setback for recovery to retry later. Neither needs
// an intent: the instance's status says they are owed, and any without a
// recorded success runs again after a crash, as a retry would.
//
// ctx is detached from the caller's cancellation: compensations outlive it.
// A durable coordinator's ctx is cancelled when the lease is lost, and
// settle then stops at once.
func (e *engine) settle(ctx context.Context, in *instance, phase Phase) error {
	callPhase := phase
	if in.def.tcc && phase == Compensate {
		callPhase = Cancel
	}
	var rounds [][]int
	if phase == Confirm {
		rounds = [][]int{allSteps(in)} // confirms are independent: all at once
	} else {
		for g := len(in.def.groups) - 1; g >= 0; g-- {
			rounds = append(rounds, in.def.groups[g])
		}
	}
	writes := in.writes[:0]
	for _, steps := range rounds {
		var todo []int
		for _, i := range steps {
			st := &in.steps[i]
			switch {
			case phase == Confirm && st.confirm != succeeded:
				todo = append(todo, i)
			case phase == Compensate && st.action != notStarted && st.comp != succeeded && in.def.steps[i].compensate != nil:
				todo = append(todo, i)
			}
		}
		var errs []error
		var made []int // attempts of each step's phase, for the observer
		if e.observer != nil {
			made = make([]int, len(in.def.steps))
		}
		for attempt := 1; len(todo) > 0; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, e.settleTimeout)
			results := e.runGroup(cctx, in, todo, callPhase, made, nil)
			cancel()
			for k, i := range todo {
				if made != nil {
					made[i] = results[k].attempts
				}
			}
			if errors.Is(context.Cause(ctx), ErrLeaseLost) {
				return ErrLeaseLost
			}
			errs = nil
			var again []int
			for k, i := range todo {
				if results[k].err == nil {
					if phase == Confirm {
						in.steps[i].confirm = succeeded
					} else {
						in.steps[i].comp = succeeded
					}
					writes = append(writes, write{step: i, phase: phase, status: succeeded})
					continue
				}
				errs = append(errs, fmt.Errorf("%s %s: %w", in.def.steps[i].name, callPhase, results[k].err))
				again = append(again, i)
			}
			todo = again
			if len(todo) == 0 || attempt >= e.attempts || !wait.Sleep(ctx, e.attemptWait.Delay(attempt, 0)) {
				break
			}
		}
		if errors.Is(context.Cause(ctx), ErrLeaseLost) {
			return ErrLeaseLost
		}
		if len(errs) > 0 {
			in.settleErrs = errs
			in.settleStep = in.def.steps[todo[0]].name
			return e.setback(ctx, in, writes, errors.Join(errs...))
		}
	}
	if phase == Confirm {
		in.status = Succeeded
	} else {
		in.status = Compensated
	}
	in.settleErrs = nil
	return in.j.commit(ctx, in, writes)
}

func allSteps(in *instance) []int {
	s := make([]int, len(in.def.steps))
	for i := range s {
		s[i] = i
	}
	return s
}

// setback records a failed round: the attempt count, the time of the next
// round (persisted backoff), and the Stuck status after stuckAfter rounds;
// once it is recorded, it reports an alert after alertAfter rounds (or on
// becoming stuck, if that comes first) and the Stuck status.
func (e *engine) setback(ctx context.Context, in *instance, writes []write, err error) error {
	in.attempts++
	if in.attempts >= e.stuckAfter {
		in.resume = in.status
		in.status = Stuck
	}
	wait := e.roundWait.Delay(in.attempts, 0)
	if err := in.j.setback(ctx, in, writes, wait, err.Error()); err != nil {
		return err
	}
	if e.observer != nil && in.status != Stuck {
		e.observe(ctx, resilience.Event{Kind: resilience.Retry, Attempt: in.attempts, Delay: wait, Err: err, Subject: in.id})
	}
	if in.attempts == min(e.alertAfter, e.stuckAfter) {
		e.emit(ctx, Event{Kind: Alert, SagaID: in.id, Attempts: in.attempts, Err: err})
	}
	if in.status == Stuck {
		e.emit(ctx, Event{Kind: StuckEvent, SagaID: in.id, Attempts: in.attempts, Err: err})
	}
	return nil
}
