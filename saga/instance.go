package saga

import (
	"context"
	"errors"
	"time"
)

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

// instance is one run of a definition, as the engine drives it.
type instance struct {
	id       string
	def      *Definition
	j        journal
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
	// writes is the buffer of the journal writes under way, reused from one
	// write to the next.
	writes []write
}

// newInstance returns a new instance of def, not started.
func newInstance(def *Definition, id string, input []byte) *instance {
	in := &instance{id: id, def: def, input: input, status: Running, steps: make([]stepState, len(def.steps)),
		writes: make([]write, 0, def.maxWrites)}
	if def.timeout > 0 {
		in.deadline = time.Now().Add(def.timeout)
	}
	return in
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

// ended reports whether the instance is at an end that nothing drives on
// from: Succeeded, Compensated, Stuck or Resolved.
func (in *instance) ended() bool {
	return in.status >= Succeeded
}

// write is one phase result or intent, for the journal.
type write struct {
	step   int
	phase  Phase
	status phaseStatus
	output []byte
	err    string
}

// journal records what the engine does to one instance: nothing for an
// in-memory coordinator's ([memory]), the database for a durable one's
// ([claim]). The engine calls it from the goroutine that drives the
// instance.
type journal interface {
	// hold keeps the instance while the engine drives it, until stop, and
	// returns the ctx of the forward steps (ctx's, or a child of it) and
	// that of the journal's writes and of the compensations and confirms,
	// which ctx's cancellation does not reach.
	hold(ctx context.Context) (fctx, lctx context.Context, stop func())
	// admit returns nil if a step call may start now.
	admit(ctx context.Context) error
	// commit records writes and the instance's status, atomically.
	commit(ctx context.Context, in *instance, writes []write) error
	// setback records, atomically, the calls of a failed round of
	// compensation or confirmation that succeeded, and the round's failure,
	// to be retried after wait; the instance no longer needs holding.
	setback(ctx context.Context, in *instance, writes []write, wait time.Duration, lastErr string) error
}
