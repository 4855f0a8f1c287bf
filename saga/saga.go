package saga

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/retry"
)

// Phase is the part of a step a call runs.
type Phase uint8

// The phases. A saga step has an action and a compensation; a TCC
// participant a try, a confirm and a cancel.
const (
	Action Phase = iota + 1
	Compensate
	Try
	Confirm
	Cancel
)

var phaseNames = [...]string{"", "action", "compensate", "try", "confirm", "cancel"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) && p > 0 {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Status is where a saga instance stands.
type Status uint8

// The statuses.
const (
	// Running: forward steps (or tries) are running.
	Running Status = iota + 1
	// Compensating: a step failed; its compensations (or cancels) are
	// running, or are to be retried.
	Compensating
	// Confirming: every try succeeded; the confirms are running, or are to
	// be retried.
	Confirming
	// Succeeded: every step (or confirm) succeeded.
	Succeeded
	// Compensated: every step that started was compensated.
	Compensated
	// Stuck: a compensation or confirm kept failing past the ceiling; an
	// operator must act (see [Coordinator.ListStuck]).
	Stuck
	// Resolved: an operator marked a stuck instance as dealt with.
	Resolved
)

var statusNames = [...]string{"", "running", "compensating", "confirming", "succeeded", "compensated", "stuck", "resolved"}

func (s Status) String() string {
	if int(s) < len(statusNames) && s > 0 {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Key identifies one call of one phase of one step of one saga instance:
// what a participant de-duplicates by (see [Barrier]).
type Key struct {
	SagaID string
	Step   string
	Phase  Phase
}

// String returns "sagaID/step/phase".
func (k Key) String() string { return k.SagaID + "/" + k.Step + "/" + k.Phase.String() }

type keyCtx struct{}

// IdempotencyKey returns the key of the step call whose ctx this is.
func IdempotencyKey(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(keyCtx{}).(Key)
	return k, ok
}

// Call is what a [StepFunc] receives.
type Call struct {
	Key
	// Input is the saga's input, as given to Run.
	Input []byte
	// Output is, for a compensation, confirm or cancel, the output the
	// step's action (or try) recorded; nil for an action.
	Output []byte

	in  *instance
	out []byte
}

// StepOutput returns the output recorded by the action of an earlier step.
func (c *Call) StepOutput(step string) []byte { return c.in.output(step) }

// SetOutput records out as the action's output, to be handed to its
// compensation (a payment ID to refund, say) and to later steps. A durable
// coordinator stores it with the step's result.
func (c *Call) SetOutput(out []byte) { c.out = out }

// ErrDeadline is the cause of a saga that ran out of its [Timeout]: matched
// by the Error that Run returns and by context.Cause of the steps' ctx.
var ErrDeadline = errors.New("saga: deadline passed")

// Error is returned by Run for a saga that did not succeed. errors.Is finds
// the failed step's error (or [ErrDeadline], or the caller's ctx error) and
// the compensations' errors.
type Error struct {
	SagaID string
	// Step is the step that failed, or "" when the saga ran out of time
	// between steps or was cancelled.
	Step string
	// Err is why the saga stopped going forward.
	Err error
	// Compensation joins the errors of compensations (or confirms) that
	// have not succeeded yet; nil once every one has.
	Compensation error
	// Status is Compensated, or Compensating or Confirming (retries are
	// left to recovery), or Stuck.
	Status Status
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "saga %s: ", e.SagaID)
	if e.Step != "" {
		fmt.Fprintf(&b, "step %s: ", e.Step)
	}
	fmt.Fprintf(&b, "%v; %s", e.Err, e.Status)
	if e.Compensation != nil {
		fmt.Fprintf(&b, ": %v", e.Compensation)
	}
	return b.String()
}

// Unwrap returns Err and Compensation.
func (e *Error) Unwrap() []error {
	if e.Compensation == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Compensation}
}

// phaseStatus is where one phase of one step stands.
type phaseStatus uint8

const (
	notStarted phaseStatus = iota
	started
	succeeded
	failed
)

type stepState struct {
	action, comp, confirm phaseStatus
	output                []byte
}

// instance is one run of a definition, as the coordinator drives it.
type instance struct {
	id       string
	token    string // fences the durable writes of this claim of the instance
	def      *Definition
	input    []byte
	status   Status
	deadline time.Time // zero: none
	steps    []stepState
	attempts int // failed rounds of compensation or confirmation
	cause    error
	failed   string // the step that failed
	// unknown marks steps found started, without a result, by recovery.
	unknown map[int]bool
	// settleErrs are the errors of the last round of compensation or
	// confirmation; resume is the status a Stuck instance was in.
	settleErrs []error
	settleStep string // the first step of the last round that failed
	resume     Status
	released   bool // the journal gave up the lease
}

func (in *instance) compensationErr() error { return errors.Join(in.settleErrs...) }

func (in *instance) output(step string) []byte {
	for i, s := range in.def.steps {
		if s.name == step {
			return in.steps[i].output
		}
	}
	return nil
}

// write is one phase result or intent, for the journal.
type write struct {
	step   int
	phase  Phase
	status phaseStatus
	output []byte
	err    string
}

// journal is where a coordinator records what it does: nothing for an
// in-memory coordinator, the database for a durable one.
type journal interface {
	// begin records a new instance and the intents of its first group.
	begin(ctx context.Context, in *instance, intents []write) error
	// commit records writes and the instance's status in one transaction,
	// if the coordinator still holds the instance's lease.
	commit(ctx context.Context, in *instance, writes []write) error
	// setback records, in one transaction, the calls of a failed round of
	// compensation or confirmation that succeeded, and the round's failure,
	// and gives up the lease until next.
	setback(ctx context.Context, in *instance, writes []write, wait time.Duration, lastErr string) error
	// release gives up the lease of an instance the coordinator stops
	// driving.
	release(ctx context.Context, in *instance)
}

// memory is the journal of an in-memory coordinator.
type memory struct{}

func (memory) begin(context.Context, *instance, []write) error                          { return nil }
func (memory) commit(context.Context, *instance, []write) error                         { return nil }
func (memory) setback(context.Context, *instance, []write, time.Duration, string) error { return nil }
func (memory) release(context.Context, *instance)                                       {}

// ErrLeaseLost is returned by Run when another coordinator took over the
// instance: this one stopped driving it.
var ErrLeaseLost = errors.New("saga: lease lost to another coordinator")

// Coordinator runs sagas. Make one with [New]; it is safe for concurrent
// use, and the zero value is not usable. Without [WithStore] it keeps
// nothing and a saga lives as long as its Run call; with it, every step's
// intent and result go to the database first, and [Coordinator.Recover]
// finishes the instances a crashed process left.
type Coordinator struct {
	cfg     config
	j       journal
	durable bool
	defs    sync.Map // defKey -> *Definition
	known   sync.Map // *Definition -> struct{}: registered
	// The waits between attempts of a round, and between rounds: a random
	// time between half and all of base·2^(n-1), at most max.
	attemptWait, roundWait retry.Backoff
	stats                  struct {
		started, succeeded, compensated, commits atomic.Int64
	}
}

// New returns a Coordinator configured by opts. It panics if an option is
// out of range.
func New(opts ...Option) *Coordinator {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	c := &Coordinator{cfg: cfg, j: memory{},
		attemptWait: retry.EqualJitter(cfg.attemptBase, cfg.attemptMax),
		roundWait:   retry.EqualJitter(cfg.roundBase, cfg.roundMax)}
	if cfg.db != nil {
		c.j = &sqlJournal{c: c, db: cfg.db, d: cfg.dialect}
		c.durable = true
	}
	for _, d := range cfg.defs {
		if err := c.register(d); err != nil {
			panic(err.Error())
		}
	}
	return c
}

type defKey struct {
	name    string
	version int
}

// register makes d known to the coordinator, which refuses a second,
// different definition of the same name and version: which of the two
// would recovery resume an instance with?
func (c *Coordinator) register(d *Definition) error {
	if d == nil {
		return errors.New("saga: nil Definition")
	}
	if _, ok := c.known.Load(d); ok {
		return nil
	}
	if old, loaded := c.defs.LoadOrStore(defKey{d.name, d.version}, d); loaded && old != d {
		return fmt.Errorf("saga: another definition %s version %d is registered; give a changed definition a new version", d.name, d.version)
	}
	c.known.Store(d, struct{}{})
	return nil
}

func (c *Coordinator) definition(name string, version int) *Definition {
	d, _ := c.defs.Load(defKey{name, version})
	def, _ := d.(*Definition)
	return def
}

// Stats counts what a coordinator did since it was made.
type Stats struct {
	// Started, Succeeded and Compensated count instances.
	Started, Succeeded, Compensated int64
	// Commits counts the transactions it wrote to the store.
	Commits int64
}

// Stats returns the coordinator's counts.
func (c *Coordinator) Stats() Stats {
	return Stats{Started: c.stats.started.Load(), Succeeded: c.stats.succeeded.Load(),
		Compensated: c.stats.compensated.Load(), Commits: c.stats.commits.Load()}
}

// ErrNoID is returned by Run for an empty saga ID.
var ErrNoID = errors.New("saga: Run: empty saga ID")

// ErrExists is returned by a durable coordinator's Run for an ID that the
// store holds already: an instance runs once. [Coordinator.InstanceStatus]
// says where the earlier one stands.
var ErrExists = errors.New("saga: an instance with this ID exists")

// Run runs a new instance of def, identified by id (an order ID, say: valid
// UTF-8, at most 128 bytes, unique in the store), with input, and returns
// nil when every step succeeded (for TCC: every try, then every confirm).
// When a step fails, or the saga's [Timeout] passes, or ctx is cancelled,
// Run compensates every step that started, in reverse, under a ctx detached
// from ctx's cancellation, each compensation retried with backoff
// ([WithAttempts]), and returns an [*Error]. A durable coordinator leaves
// compensations that still fail to recovery, persisting their backoff, and
// says so in the Error's Status; an in-memory one reports them Stuck. An
// action that panics fails the saga like an error; once its compensations
// are done (or left to recovery), Run panics with its value. A compensation
// or confirm that panics fails that attempt, and is retried.
func (c *Coordinator) Run(ctx context.Context, def *Definition, id string, input []byte) error {
	if id == "" {
		return ErrNoID
	}
	if len(id) > 128 || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("saga: Run: ID %q: want valid UTF-8 without NUL, at most 128 bytes", id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.register(def); err != nil {
		return err
	}
	in := &instance{id: id, def: def, input: input, status: Running, steps: make([]stepState, len(def.steps))}
	if def.timeout > 0 {
		in.deadline = time.Now().Add(def.timeout)
	}
	if c.durable {
		in.token = c.token()
	}
	intents := c.start(nil, in, def.groups[0])
	if err := c.j.begin(ctx, in, intents); err != nil {
		if errors.Is(err, ErrExists) {
			return ErrExists
		}
		return fmt.Errorf("saga %s: begin: %w", id, err)
	}
	c.stats.started.Add(1)
	err := c.drive(ctx, in)
	// An action that panicked failed the saga, which compensated; the panic
	// goes on to the caller now.
	if err != nil {
		if sp := actionPanic(err); sp != nil {
			panic(sp.value)
		}
	}
	return err
}

// actionPanic returns the panic of the action that failed the saga, if err
// is the Error of such a saga.
func actionPanic(err error) *stepPanic {
	var se *Error
	var sp *stepPanic
	if errors.As(err, &se) && errors.As(se.Err, &sp) {
		return sp
	}
	return nil
}

// stepPanic is the failure of a step that panicked.
type stepPanic struct {
	key   Key
	value any
}

func (p *stepPanic) Error() string { return fmt.Sprintf("saga: %s panicked: %v", p.key, p.value) }

// start marks the given steps' actions as started, and appends to ws the
// writes that record their intents. Compensations and confirms need none
// (see settle).
func (c *Coordinator) start(ws []write, in *instance, steps []int) []write {
	for _, i := range steps {
		in.steps[i].action = started
		if c.durable {
			ws = append(ws, write{step: i, phase: Action, status: started})
		}
	}
	return ws
}

// drive takes an instance from where it stands to an end, or to a point where
// it must wait (a compensation round that failed).
func (c *Coordinator) drive(ctx context.Context, in *instance) error {
	// The forward steps run under fctx: the caller's, cancelled too when a
	// durable coordinator loses the lease. The journal's writes and the
	// compensations run under lctx: detached from the caller's cancellation,
	// so that a failure is recorded and compensated whatever the caller
	// does, but cancelled when the lease is lost.
	fctx, lctx := ctx, ctx
	if j, ok := c.j.(*sqlJournal); ok {
		var stop func()
		fctx, lctx, stop = c.hold(ctx, j, in)
		defer stop()
	}
	var err error
	if in.status == Running {
		err = c.forward(fctx, lctx, in)
	}
	detached := lctx
	if !c.durable && (in.status == Confirming || in.status == Compensating) {
		detached = context.WithoutCancel(ctx) // only when something is owed
	}
	if err == nil && in.status == Confirming {
		err = c.settle(detached, in, Confirm)
	}
	if err == nil && in.status == Compensating {
		err = c.settle(detached, in, Compensate)
	}
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			c.emit(Event{Kind: LeaseLost, SagaID: in.id, Err: err})
		}
		return err
	}
	switch in.status {
	case Succeeded:
		c.stats.succeeded.Add(1)
		return nil
	case Compensated:
		c.stats.compensated.Add(1)
	}
	e := &Error{SagaID: in.id, Step: in.failed, Err: in.cause, Status: in.status, Compensation: in.compensationErr()}
	if e.Err == nil { // every try succeeded; confirms are owed
		e.Step, e.Err = in.settleStep, ErrNotConfirmed
	}
	return e
}

// ErrNotConfirmed is the Err of the Error of a TCC saga whose tries all
// succeeded but whose confirms have not all succeeded yet: they are owed,
// and retried (Status Confirming), or parked for an operator (Stuck).
var ErrNotConfirmed = errors.New("saga: confirms owed")

// hold keeps a durable instance's lease while it is driven: it renews it
// every third of the lease, and returns the ctx of the forward steps
// (cancelled by ctx or when the lease is lost) and that of the journal's
// writes and the compensations (cancelled only when the lease is lost, with
// cause ErrLeaseLost). The lease counts as lost when another coordinator
// took the instance, or when renewals failed for two thirds of the lease:
// past that, another may take it any moment. stop ends the renewals and
// releases the lease.
func (c *Coordinator) hold(ctx context.Context, j *sqlJournal, in *instance) (fctx, lctx context.Context, stop func()) {
	lctx, lose := context.WithCancelCause(context.WithoutCancel(ctx))
	fctx, cancelForward := context.WithCancelCause(ctx)
	stopForwarding := context.AfterFunc(lctx, func() { cancelForward(context.Cause(lctx)) })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.cfg.lease / 3)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := j.renew(lctx, in)
			switch {
			case err == nil:
				renewed = time.Now()
			case errors.Is(err, ErrLeaseLost):
				lose(ErrLeaseLost)
				return
			default:
				c.emit(Event{Kind: StoreError, SagaID: in.id, Err: err})
				if time.Since(renewed) > c.cfg.lease*2/3 {
					lose(ErrLeaseLost)
					return
				}
			}
		}
	})
	return fctx, lctx, func() {
		close(done)
		wg.Wait()
		stopForwarding()
		cancelForward(nil)
		j.release(context.WithoutCancel(ctx), in)
		lose(nil)
	}
}

// forward runs the forward steps from the first group not done. It returns
// an error only for the journal; a step's failure moves the instance to
// compensation.
//
// Steps run under ctx; the journal's writes under jctx, which the caller's
// cancellation does not reach.
func (c *Coordinator) forward(ctx, jctx context.Context, in *instance) error {
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
					return c.fail(jctx, in, in.def.steps[i].name, fmt.Errorf("saga: step %s: outcome unknown after a restart", in.def.steps[i].name), nil)
				}
			}
			todo = append(todo, i)
		}
		if len(todo) == 0 {
			continue
		}
		if err := sctx.Err(); err != nil {
			return c.fail(jctx, in, "", context.Cause(sctx), nil)
		}
		results = c.runGroup(sctx, in, todo, phase, results)
		var writes []write
		var firstErr error
		failedStep := ""
		for k, i := range todo {
			r := results[k]
			if r.err != nil {
				in.steps[i].action, in.steps[i].output = failed, r.output
				if c.durable {
					writes = append(writes, write{step: i, phase: Action, status: failed, output: r.output, err: r.err.Error()})
				}
				if firstErr == nil {
					firstErr, failedStep = r.err, in.def.steps[i].name
				}
				continue
			}
			in.steps[i].action, in.steps[i].output = succeeded, r.output
			if c.durable {
				writes = append(writes, write{step: i, phase: Action, status: succeeded, output: r.output})
			}
		}
		if errors.Is(context.Cause(jctx), ErrLeaseLost) {
			return ErrLeaseLost
		}
		if firstErr != nil {
			if cause := context.Cause(sctx); cause != nil && sctx.Err() != nil {
				firstErr = fmt.Errorf("%w (%w)", firstErr, cause)
			}
			return c.fail(jctx, in, failedStep, firstErr, writes)
		}
		if g+1 < len(in.def.groups) {
			writes = c.start(writes, in, in.def.groups[g+1])
		} else if in.def.tcc {
			in.status = Confirming
		} else {
			in.status = Succeeded
		}
		if err := c.j.commit(jctx, in, writes); err != nil {
			return err
		}
	}
	if in.status == Running { // every step was done before a restart
		in.status = Succeeded
		if in.def.tcc {
			in.status = Confirming
		}
		return c.j.commit(jctx, in, nil)
	}
	return nil
}

func allSteps(in *instance) []int {
	s := make([]int, len(in.def.steps))
	for i := range s {
		s[i] = i
	}
	return s
}

// fail records the failure of the forward steps and moves the instance to
// compensation: the results of the group that failed and the new status, in
// one transaction, before any compensation runs (after a crash, recovery
// must not take a failed step for one to run again).
func (c *Coordinator) fail(ctx context.Context, in *instance, step string, cause error, writes []write) error {
	in.status, in.failed, in.cause = Compensating, step, cause
	return c.j.commit(ctx, in, writes)
}

type result struct {
	output []byte
	err    error
}

// runGroup runs phase of the given steps at once and returns their results.
// When one action fails, the others' ctx is cancelled.
func (c *Coordinator) runGroup(ctx context.Context, in *instance, steps []int, phase Phase, results []result) []result {
	results = append(results[:0], make([]result, len(steps))...)
	if len(steps) == 1 {
		results[0] = c.call(ctx, in, steps[0], phase)
		return results
	}
	c.runParallel(ctx, in, steps, phase, results)
	return results
}

func (c *Coordinator) runParallel(ctx context.Context, in *instance, steps []int, phase Phase, results []result) {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for k, i := range steps {
		wg.Go(func() {
			results[k] = c.call(gctx, in, i, phase)
			if results[k].err != nil && (phase == Action || phase == Try) {
				cancel()
			}
		})
	}
	wg.Wait()
}

// callCtx is the ctx of a step call, which carries its key, and the call:
// one allocation for both.
type callCtx struct {
	context.Context
	call Call
}

func (cc *callCtx) Value(key any) any {
	if key == (keyCtx{}) {
		return cc.call.Key
	}
	return cc.Context.Value(key)
}

// call runs one phase of one step under its policy, with its key in ctx. A
// panic in the step, which goes through the policy as panics do, is an
// error of the step here, so that the saga compensates.
func (c *Coordinator) call(ctx context.Context, in *instance, i int, phase Phase) (res result) {
	def := &in.def.steps[i]
	cc := &callCtx{Context: ctx, call: Call{Key: Key{SagaID: in.id, Step: def.name, Phase: phase}, Input: in.input, in: in}}
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
			res = result{output: cc.call.out, err: &stepPanic{key: cc.call.Key, value: v}}
		}
	}()
	var err error
	if def.policy != nil {
		err = def.policy.Do(cc, func(ctx context.Context) error { return f(ctx, &cc.call) })
	} else {
		err = f(cc, &cc.call)
	}
	return result{output: cc.call.out, err: err}
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
func (c *Coordinator) settle(ctx context.Context, in *instance, phase Phase) error {
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
	var writes []write
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
		for attempt := 1; len(todo) > 0; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.settleTimeout)
			results := c.runGroup(cctx, in, todo, callPhase, nil)
			cancel()
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
			if errors.Is(context.Cause(ctx), ErrLeaseLost) {
				return ErrLeaseLost
			}
			if len(todo) == 0 || attempt >= c.cfg.attempts || !wait.Sleep(ctx, c.attemptWait.Delay(attempt, 0)) {
				break
			}
		}
		if errors.Is(context.Cause(ctx), ErrLeaseLost) {
			return ErrLeaseLost
		}
		if len(errs) > 0 {
			in.settleErrs = errs
			in.settleStep = in.def.steps[todo[0]].name
			return c.setback(ctx, in, writes, errors.Join(errs...))
		}
	}
	if phase == Confirm {
		in.status = Succeeded
	} else {
		in.status = Compensated
	}
	in.settleErrs = nil
	return c.j.commit(ctx, in, writes)
}

// setback records a failed round: the attempt count, the time of the next
// round (persisted backoff), and the Stuck status after WithStuckAfter
// rounds; once it is recorded, it reports an alert after WithAlertAfter
// rounds (or on becoming stuck, if that comes first) and the Stuck status.
func (c *Coordinator) setback(ctx context.Context, in *instance, writes []write, err error) error {
	in.attempts++
	if !c.durable || in.attempts >= c.cfg.stuckAfter {
		// Without a store nobody will try again: the instance is stuck now.
		in.resume = in.status
		in.status = Stuck
	}
	wait := c.roundWait.Delay(in.attempts, 0)
	if err := c.j.setback(ctx, in, writes, wait, err.Error()); err != nil {
		return err
	}
	if in.attempts == min(c.cfg.alertAfter, c.cfg.stuckAfter) {
		c.emit(Event{Kind: Alert, SagaID: in.id, Attempts: in.attempts, Err: err})
	}
	if in.status == Stuck {
		c.emit(Event{Kind: StuckEvent, SagaID: in.id, Attempts: in.attempts, Err: err})
	}
	return nil
}

func (c *Coordinator) emit(e Event) {
	if c.cfg.onEvent != nil {
		c.cfg.onEvent(e)
	}
}
