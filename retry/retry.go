package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/wait"
)

// Retrier calls an op again when it fails, with waits between attempts,
// within a number of attempts, the caller's deadline and a [Budget]. Make one
// with [New] and share it: a Retrier is safe for concurrent use, and holds no
// state of a call between calls. The zero value is not usable; use New: its
// methods panic. Most callers want [Retrier.Do].
type Retrier struct {
	cfg config
}

var _ resilience.Policy = (*Retrier)(nil)

// Event describes a retry about to happen, to the function of
// [WithOnRetry]; the [resilience.Retry] events of [WithObserver] carry the
// same.
type Event struct {
	// Attempt is the number of the attempt that failed, 1 for the first.
	Attempt int
	// Err is the error it failed with.
	Err error
	// Delay is how long the retrier waits before the next attempt.
	Delay time.Duration
}

// Reason says why a retrier gave up on an error it would have retried.
type Reason uint8

const (
	// MaxAttempts: every attempt allowed was made.
	MaxAttempts Reason = iota
	// Deadline: the wait would end at or after the ctx deadline.
	Deadline
	// OutOfBudget: the [Budget] had no token for a retry.
	OutOfBudget
	// BackoffStopped: the BackOff of [WithBackOffFactory] returned Stop.
	BackoffStopped
	// Cancelled: the caller's ctx was done during a wait.
	Cancelled
)

var reasonNames = [...]string{"max attempts", "deadline", "out of budget", "backoff stopped", "cancelled"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// ExhaustedError is returned by a Retrier that gave up on an error it would
// have retried. It keeps the last attempt's error: errors.Is(err, lastErr)
// holds, and so does errors.Is(err, context.Canceled) when the caller
// cancelled during a wait.
type ExhaustedError struct {
	// Attempts is the number of calls to op made.
	Attempts int
	// Err is the error of the last attempt.
	Err error
	// Reason is why the retrier gave up.
	Reason Reason

	ctxErr error // Reason Cancelled: what ended the ctx
}

func (e *ExhaustedError) Error() string {
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("retry: gave up after %d %s (%s): %v", e.Attempts, attempts, e.Reason, e.Err)
}

// Unwrap returns the last attempt's error and, for Reason Cancelled, the
// error that ended the caller's ctx.
func (e *ExhaustedError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Err, e.ctxErr}
	}
	return []error{e.Err}
}

// Permanent marks err as not worth retrying: a Retrier returns it at once,
// as it is. Errors marked with backoff.Permanent of
// github.com/cenkalti/backoff/v4 are treated the same. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// New returns a Retrier configured by opts. With no options it makes up to 3
// attempts, waits with FullJitter(100ms, 10s), retries every error but those
// it never retries, and draws from a budget of its own of NewBudget(0.2, 10).
// New panics if an option is nil or out of range.
func New(opts ...Option) *Retrier {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("retry: New: nil Option")
		}
		o.apply(&cfg)
	}
	if !cfg.budgetSet {
		cfg.budget = NewBudget(0.2, 10)
	}
	return &Retrier{cfg: cfg}
}

// Do calls op until it succeeds or the retrier gives up, and returns nil or
// an error of the last attempt. It retries an error unless
//
//   - the caller's ctx is done;
//   - the error is marked [Permanent] (or backoff.Permanent);
//   - the [WithRetryIf] predicate says no;
//   - the error is a rejection ([resilience.ErrRejected]: an open breaker, a
//     full bulkhead) without a retry-after hint that ends before the ctx
//     deadline;
//
// and in those cases returns the error as it is. It gives up with an
// [*ExhaustedError] when every attempt was made, when the wait would end at
// or after the ctx deadline (it never waits into a dead ctx), when the
// budget has no token, or when the caller cancels during a wait. A
// retry-after hint in the error ([resilience.RetryAfter]: a rejection, an
// HTTP 429 or 503) replaces the computed wait, in full: a server that asks
// for an hour gets an hour, so bound waits with a ctx deadline. A hint of
// zero or less is no hint: an error that reports one waits as the backoff
// says, and a rejection that reports one (its wait already over when it is
// read) comes back as it is, as a rejection without a hint does. Waits use a
// timer and ctx. A first attempt that succeeds allocates nothing. Do panics
// if op is nil.
func (r *Retrier) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("retry: Retrier.Do: nil Op")
	}
	if r.cfg.maxAttempts == 0 {
		panic("retry: zero Retrier; use New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.cfg.budget != nil {
		r.cfg.budget.deposit()
	}
	if r.cfg.observer != nil {
		return r.doObserved(ctx, op)
	}
	err := op(ctx)
	if err == nil {
		return nil
	}
	return r.retry(ctx, op, err, time.Time{})
}

// doObserved is Do, once the call is counted in the budget, with an
// observer.
func (r *Retrier) doObserved(ctx context.Context, op resilience.Op) error {
	start := time.Now()
	err := op(ctx)
	if err == nil {
		return r.end(ctx, start, 1, nil)
	}
	return r.retry(ctx, op, err, start)
}

// retry goes on with a call whose first attempt failed with err, and which
// started at start if it is observed: it retries, or gives up, as Do says,
// and returns what Do returns.
func (r *Retrier) retry(ctx context.Context, op resilience.Op, err error, start time.Time) error {
	var (
		prev time.Duration   // the last wait the backoff computed
		bo   backoff.BackOff // from the factory, made at the first retry
	)
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil || permanent(err) {
			return r.end(ctx, start, attempt, err)
		}
		hint, hinted := resilience.RetryAfter(err)
		rejected := errors.Is(err, resilience.ErrRejected)
		if rejected && !hinted || r.cfg.retryIf != nil && !r.cfg.retryIf(err) {
			return r.end(ctx, start, attempt, err)
		}
		if attempt >= r.cfg.maxAttempts {
			return r.gaveUp(ctx, start, &ExhaustedError{Attempts: attempt, Err: err, Reason: MaxAttempts})
		}
		delay := hint
		if !hinted {
			if r.cfg.newBackOff != nil {
				if bo == nil {
					bo = r.cfg.newBackOff()
				}
				if delay = bo.NextBackOff(); delay == backoff.Stop {
					return r.gaveUp(ctx, start, &ExhaustedError{Attempts: attempt, Err: err, Reason: BackoffStopped})
				}
			} else {
				delay = r.cfg.backoff.Delay(attempt, prev)
				prev = delay
			}
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= delay {
			if rejected {
				return r.end(ctx, start, attempt, err)
			}
			return r.gaveUp(ctx, start, &ExhaustedError{Attempts: attempt, Err: err, Reason: Deadline})
		}
		if r.cfg.budget != nil && !r.cfg.budget.withdraw() {
			return r.gaveUp(ctx, start, &ExhaustedError{Attempts: attempt, Err: err, Reason: OutOfBudget})
		}
		if r.cfg.onRetry != nil {
			r.cfg.onRetry(Event{Attempt: attempt, Err: err, Delay: delay})
		}
		if r.cfg.observer != nil {
			now, _ := event.End(start)
			r.cfg.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyRetry,
				Name: r.cfg.name, Kind: resilience.Retry, Attempt: attempt, Delay: delay, Err: err})
		}
		if !wait.Sleep(ctx, delay) || ctx.Err() != nil {
			if r.cfg.budget != nil {
				r.cfg.budget.refund() // the retry did not happen
			}
			return r.gaveUp(ctx, start, &ExhaustedError{Attempts: attempt, Err: err, Reason: Cancelled, ctxErr: ctxErr(ctx)})
		}
		if err = op(ctx); err == nil {
			return r.end(ctx, start, attempt+1, nil)
		}
	}
}

// end returns err, what a call that started at start returns after
// attempts attempts, once the observer, if any, has seen it.
func (r *Retrier) end(ctx context.Context, start time.Time, attempts int, err error) error {
	if r.cfg.observer != nil {
		r.observeEnd(ctx, start, attempts, err)
	}
	return err
}

// gaveUp returns ex once the observer, if any, has seen that the call
// that started at start gave up, and how it ended.
func (r *Retrier) gaveUp(ctx context.Context, start time.Time, ex *ExhaustedError) error {
	if r.cfg.observer != nil {
		now, _ := event.End(start)
		r.cfg.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyRetry,
			Name: r.cfg.name, Kind: resilience.GaveUp, Attempt: ex.Attempts, Err: ex})
		r.observeEnd(ctx, start, ex.Attempts, ex)
	}
	return ex
}

// observeEnd tells the observer how the call that started at start ended.
func (r *Retrier) observeEnd(ctx context.Context, start time.Time, attempts int, err error) {
	now, took := event.End(start)
	r.cfg.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyRetry, Name: r.cfg.name,
		Kind: event.Outcome(ctx, err), Attempt: attempts, Duration: took, Err: err})
}

// permanent reports whether err's tree holds an error marked Permanent here
// or in github.com/cenkalti/backoff/v4. It walks the tree as errors.As
// would, without allocating.
func permanent(err error) bool {
	for err != nil {
		switch e := err.(type) {
		case *permanentError, *backoff.PermanentError:
			return true
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				if permanent(err) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// ctxErr returns what ended ctx: its error and, when it differs, its cause.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return errors.Join(err, cause)
}
