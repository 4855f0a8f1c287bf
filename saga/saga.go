package saga

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/resilience-go/resilience"
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

// String returns the phase's name, "action" say, or "Phase(n)" for a
// value that is none of the phases.
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

// String returns the status's name, "compensated" say, or "Status(n)" for
// a value that is none of the statuses.
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

// ErrNotConfirmed is the Err of the Error of a TCC saga whose tries all
// succeeded but whose confirms have not all succeeded yet: they are owed,
// and retried (Status Confirming), or parked for an operator (Stuck).
var ErrNotConfirmed = errors.New("saga: confirms owed")

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

// Error returns "saga ID: step S: why; status: compensation errors", the
// step and the compensation errors when there are some. The errors of the
// saga's own inside it ([ErrDeadline], say) go without their "saga: ".
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "saga %s: ", e.SagaID)
	if e.Step != "" {
		fmt.Fprintf(&b, "step %s: ", e.Step)
	}
	fmt.Fprintf(&b, "%s; %s", bare(e.Err), e.Status)
	if e.Compensation != nil {
		fmt.Fprintf(&b, ": %s", bare(e.Compensation))
	}
	return b.String()
}

// bare returns err's text without the "saga: " that the saga's own errors
// start with, for a message that names the saga already.
func bare(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.TrimPrefix(err.Error(), "saga: ")
}

// Unwrap returns Err and Compensation.
func (e *Error) Unwrap() []error {
	if e.Compensation == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Compensation}
}

// ErrLeaseLost is returned by Run when the coordinator lost the instance's
// lease: another coordinator took the instance over, or the lease could not
// be renewed in time and another may take it over. This one stopped driving
// it.
var ErrLeaseLost = errors.New("saga: lease lost to another coordinator")

// Coordinator runs sagas. Make one with [New]: the zero value is not
// usable, and its methods panic. It is safe for concurrent use; most
// callers want [Coordinator.Run].
//
// Without [WithStore] it keeps nothing and a saga lives as long as its Run
// call. With it, every step's intent and result go to the database first,
// [Coordinator.Recover] finishes the instances a crashed process left, and
// the operator's methods ([Coordinator.List], [Coordinator.Purge], ...)
// read and tidy the store; without a store they return [ErrNotDurable].
type Coordinator struct {
	e *engine
	s store
}

// store is where a coordinator keeps its instances: nowhere ([memory]) or a
// database ([durable]). It makes the journal of each instance the engine
// drives, and answers the operator's methods.
type store interface {
	// open returns the instance that Run drives for in, a new instance, and
	// intents, the intents of its first group: in itself, with its journal,
	// or an instance of that ID that the store holds already and took over.
	// For an instance that Run does not drive, it returns nil and what Run
	// returns.
	open(ctx context.Context, in *instance, intents []write) (*instance, error)
	recover(ctx context.Context, batch int) (int, error)
	commits() int64
	list(ctx context.Context, f Filter) ([]Instance, error)
	purge(ctx context.Context, olderThan time.Duration) (int64, error)
	listStuck(ctx context.Context, limit int) ([]StuckSaga, error)
	retryStuck(ctx context.Context, id string) (bool, error)
	markResolved(ctx context.Context, id, note string) (bool, error)
	status(ctx context.Context, id string) (Status, error)
	// retention is how long RunRecovery keeps ended instances; 0: for ever.
	retention() time.Duration
}

// New returns a Coordinator configured by opts. It panics if an option is
// nil or out of range.
func New(opts ...Option) *Coordinator {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("saga: New: nil Option")
		}
		o.apply(&cfg)
	}
	c := &Coordinator{e: newEngine(&cfg)}
	if cfg.db != nil {
		c.s = newDurable(c.e, &cfg)
	} else {
		// Nobody will try a failed round again: it parks the instance.
		c.s, c.e.stuckAfter = memory{}, 1
	}
	for _, d := range cfg.defs {
		if err := c.e.register(d); err != nil {
			panic(err.Error())
		}
	}
	return c
}

// check panics for a Coordinator that New did not make.
func (c *Coordinator) check() {
	if c.s == nil {
		panic("saga: zero Coordinator; use New")
	}
}

// Stats counts what a coordinator did since it was made.
type Stats struct {
	// Started, Succeeded and Compensated count instances.
	Started, Succeeded, Compensated int64
	// Commits counts the journal writes it committed to the store: n+1
	// for a saga of n steps that succeeds (see the package doc).
	Commits int64
}

// Stats returns the coordinator's counts.
func (c *Coordinator) Stats() Stats {
	c.check()
	return Stats{Started: c.e.stats.started.Load(), Succeeded: c.e.stats.succeeded.Load(),
		Compensated: c.e.stats.compensated.Load(), Commits: c.s.commits()}
}

// ErrNoID is returned by Run for an empty saga ID.
var ErrNoID = errors.New("saga: Run: empty saga ID")

// ErrExists is returned by a durable coordinator's Run for an ID that the
// store holds already, of an instance that another coordinator drives (or
// of another definition): an instance runs once. [Coordinator.InstanceStatus]
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
//
// A durable coordinator's Run with the ID of an instance of def that the
// store holds already, as a caller that retries its submit does:
//   - if no coordinator drives it (its owner crashed, and the lease ran
//     out), takes it over, drives it to its end and returns its outcome;
//   - if it has ended (or waits for its next round of compensations),
//     returns the outcome it recorded: nil if it succeeded, and otherwise
//     an [*Error] with its Status, its failed Step, and the text of its
//     errors;
//   - if another coordinator drives it, returns [ErrExists], as it does for
//     an instance of another definition.
func (c *Coordinator) Run(ctx context.Context, def *Definition, id string, input []byte) error {
	c.check()
	if id == "" {
		return ErrNoID
	}
	if len(id) > 128 || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("saga: Run: ID %q: want valid UTF-8 without NUL, at most 128 bytes", id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.e.register(def); err != nil {
		return err
	}
	fresh := newInstance(def, id, input)
	in, err := c.s.open(ctx, fresh, start(fresh.writes, fresh, def.groups[0]))
	if in == nil {
		return err
	}
	c.e.stats.started.Add(1)
	if c.e.observer != nil && in == fresh { // not one that Run took over
		c.e.observe(ctx, resilience.Event{Kind: resilience.Started, Subject: id})
	}
	err = c.e.drive(ctx, in)
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

// stepPanic is the failure of a step call that panicked.
type stepPanic struct {
	key   Key
	value any
}

func (p *stepPanic) Error() string { return fmt.Sprintf("%s panicked: %v", p.key, p.value) }
