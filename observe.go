package resilience

import (
	"context"
	"fmt"
	"time"
)

// Observer receives the events of the policies and components it is given
// to, through their WithObserver options. Observe is called on the
// goroutine of the call the event is about, synchronously, with that call's
// ctx (so that a tracer can add the event to the caller's span), or with
// context.Background() for an event of no call, such as a breaker's break
// that ends or an operator's action. It must be quick and must not block:
// hand slow work to another goroutine. It may be called from many
// goroutines at once.
//
// A policy with no observer pays nothing for events: it builds none.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// Observers returns an Observer that passes each event to each of obs, in
// order. It panics if one of them is nil.
func Observers(obs ...Observer) Observer {
	for i, o := range obs {
		if o == nil {
			panic(fmt.Sprintf("resilience: Observers: nil Observer at index %d", i))
		}
	}
	if len(obs) == 1 {
		return obs[0]
	}
	return fanOut(append([]Observer(nil), obs...))
}

type fanOut []Observer

func (f fanOut) Observe(ctx context.Context, e Event) {
	for _, o := range f {
		o.Observe(ctx, e)
	}
}

// Event is what a policy or component tells its [Observer]: one value
// type for all of them, so that one observer (a log, a metrics exporter, a
// dashboard) understands every one. Fields that do not apply to an event
// are zero; each [EventKind] says which apply.
type Event struct {
	// Time is when the event happened.
	Time time.Time
	// Policy is the kind of policy or component that emitted the event.
	Policy PolicyKind
	// Name is the name given to it with its WithName option, or "".
	Name string
	// Kind is what happened.
	Kind EventKind
	// Attempt numbers the attempt the event is about, from 1, where a
	// policy counts attempts (a retry, a hedge, a saga step).
	Attempt int
	// Count is how many items the event covers, where a component works in
	// batches (messages an outbox relay published).
	Count int
	// Delay is a wait the event announces: before the next attempt of a
	// retry, the break of a breaker that opens, a rejection's retry-after
	// hint.
	Delay time.Duration
	// Duration is how long the call or attempt the event ends took, or a
	// timeout's limit.
	Duration time.Duration
	// Err is the error of the call or attempt, or the policy's refusal.
	Err error
	// From and To are the states a [StateChange] leaves and enters, by the
	// names the policy gives them, such as "closed" and "open".
	From, To string
	// Cause is why a [StateChange] happened.
	Cause Cause
	// Subject is what, beyond the policy, the event is about: a saga's ID
	// and step, an outbox relay's ID. It is "" for a call through a policy.
	Subject string
}

// PolicyKind is the kind of policy or component that emitted an [Event].
type PolicyKind uint8

// The kinds of policy and component in this module.
const (
	PolicyCircuitBreaker PolicyKind = iota + 1
	PolicyRetry
	PolicyTimeout
	PolicyBulkhead
	PolicyRateLimiter
	PolicyFallback
	PolicyHedge
	PolicyAdaptiveTimeout
	PolicyAdaptiveLimiter
	PolicyThrottler
	PolicyOutbox
	PolicySaga
	PolicyTwoPhase
)

var policyNames = [...]string{"", "circuitbreaker", "retry", "timeout", "bulkhead", "ratelimit",
	"fallback", "hedge", "adaptivetimeout", "adaptivelimit", "throttle", "outbox", "saga", "twophase"}

// String returns the kind's name, which is the name of its package, such
// as "circuitbreaker", or "PolicyKind(n)" for a value that is not a kind.
func (k PolicyKind) String() string {
	if k > 0 && int(k) < len(policyNames) {
		return policyNames[k]
	}
	return fmt.Sprintf("PolicyKind(%d)", uint8(k))
}

// EventKind is what happened, in an [Event].
type EventKind uint8

// The kinds of event. A call through a policy ends with one of Success,
// Failure, Ignored, Rejected, TimedOut or FellBack, whose Duration is how
// long the call took; the others tell of something that happened along the
// way.
const (
	// Success: the call (or, for a Count, that many items) succeeded.
	Success EventKind = iota + 1
	// Failure: the call failed with Err, and the policy counts it as a
	// failure.
	Failure
	// Ignored: the call failed with Err, and the policy's classifier says
	// that the error is not the dependency's failure.
	Ignored
	// Rejected: the policy refused the call without running it; Err is its
	// refusal, Delay its retry-after hint.
	Rejected
	// TimedOut: the call ran out of time: the policy's own deadline passed
	// before it returned, and it failed.
	TimedOut
	// Overrun: a call returned Delay after its deadline, whose duration
	// is Duration: microseconds for a call that honours its ctx, as long
	// as it kept running for one that ignores it.
	Overrun
	// Retry: attempt Attempt failed with Err, and the next starts after
	// Delay.
	Retry
	// GaveUp: the retry stopped after Attempt attempts; Err says why.
	GaveUp
	// FellBack: the call failed with Err and the fallback answered
	// instead.
	FellBack
	// StateChange: the policy left state From for state To, because of
	// Cause; Delay is how long it stays in To, when that is known.
	StateChange
	// Dead: items (Count) that will not be tried again without an
	// operator: an outbox's dead letters, a saga stuck for good.
	Dead
	// Stale: work (Count items) that another worker took over, done
	// for nothing.
	Stale
	// Started: a unit of work began (a saga, a saga step's attempt).
	Started
	// Compensated: a saga step, or a whole saga, was undone.
	Compensated
	// Error: the component failed to do its own work (a statement against
	// its database); Err says how.
	Error
	// Action: an operator acted on the policy (forced a breaker open,
	// retried a dead letter); Subject says what.
	Action
)

var eventNames = [...]string{"", "success", "failure", "ignored", "rejected", "timed out",
	"overrun", "retry", "gave up", "fell back", "state change", "dead", "stale", "started",
	"compensated", "error", "action"}

// String returns the kind's name in lower case, such as "state change",
// or "EventKind(n)" for a value that is not a kind.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Cause is why a policy changed state, in a [StateChange] event.
type Cause uint8

// The causes of a state change.
const (
	// FailureRate: the share of failed calls in the window reached the
	// threshold.
	FailureRate Cause = iota + 1
	// SlowCallRate: the share of slow calls in the window reached the
	// threshold.
	SlowCallRate
	// ConsecutiveFailures: that many calls failed in a row.
	ConsecutiveFailures
	// ProbeFailed: a probe call of a half-open breaker failed.
	ProbeFailed
	// ProbesSucceeded: the probe calls of a half-open breaker succeeded.
	ProbesSucceeded
	// BreakElapsed: an open breaker's break ended, and it lets probes in.
	BreakElapsed
	// Forced: an operator forced the state (a breaker's ForceOpen,
	// Disable or MetricsOnly).
	Forced
	// OpenedFor: an operator opened the breaker for a while
	// (a breaker's OpenFor); Delay is how long.
	OpenedFor
	// Reset: an operator reset the policy to its first state.
	Reset
)

var causeNames = [...]string{"", "failure rate", "slow call rate", "consecutive failures",
	"probe failed", "probes succeeded", "break elapsed", "forced", "opened for", "reset"}

// String returns the cause in lower case, such as "failure rate", or
// "Cause(n)" for a value that is not a cause.
func (c Cause) String() string {
	if c > 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}
