// Package resilience defines the contract that every policy in this module
// implements, and the three ways to apply policies to a call: [Chain], [Wrap]
// and [Do].
//
// An [Op] is one attempt at an outbound call. A [Policy] runs an Op under some
// rule: a circuit breaker refuses calls to a dependency that keeps failing, a
// retry calls it again, a timeout bounds each attempt. Policies compose like
// net/http middleware:
//
//	p := resilience.Chain(fallbackPolicy, retryPolicy, breaker, limiter, bulkhead, attemptTimeout)
//	user, err := resilience.Do(ctx, p, func(ctx context.Context) (User, error) {
//		return client.GetUser(ctx, id)
//	})
//
// # The contract
//
// Every Policy in this module, and every Policy a user writes to sit among
// them, keeps these rules. The package internal/policytest checks each of
// them for every policy here.
//
//   - Synchronous. Do returns only after every call to op that it made has
//     returned. Attempts never overlap, unless a policy documents that they do
//     (hedging); even then [Do] stays free of data races.
//   - Context propagated. op receives the ctx passed to Do, or a child of it, so
//     values and cancellation reach the call.
//   - A done context is not called. If ctx is already cancelled or past its
//     deadline, Do returns ctx.Err() and does not call op.
//   - Errors are kept. The error op returned comes back unchanged or wrapped
//     with %w, so errors.Is(err, opErr) holds. A policy that refuses a call
//     without running it returns an error that matches [ErrRejected].
//   - Panics propagate. A panic in op is never swallowed: the policy releases
//     what it holds (a bulkhead slot, a breaker permit) and panics again with
//     the same value.
//   - No goroutine outlives the call. A policy may start goroutines, but they
//     have all returned when Do returns.
//   - Safe for concurrent use. One Policy value serves every goroutine that
//     calls the dependency; per-call state lives in the call.
//
// # Nil and zero values
//
// One rule holds in every package of this module. A nil that has no meaning
// (a nil Op, Policy or function given to [Chain], [Wrap], [Do] or a
// policy's Do; a nil Option given to any New; a nil classifier or observer
// given to an option; a nil fallback) panics at once, in the call that
// received it, with a message that names the package, the function and the
// argument, such as "retry: New: nil Option" or "resilience: Wrap: nil Op".
// It never surfaces later as a nil dereference inside a call. Where nil
// does mean something, the documentation says what (fallback.Do with a nil
// Policy calls fn directly; retry.WithBudget(nil) lifts the budget).
//
// The zero value of a policy type is not usable: make one with its New,
// which checks the configuration the policy needs. Each type's
// documentation says so, and its methods panic on a zero value with a
// message that says what to do instead, such as "bulkhead: zero Bulkhead;
// use New". Plain values that hold no configuration, such as retry.Backoff
// and ratelimit.Reservation, work as their zero values, as their
// documentation says.
//
// # The canonical order
//
// Listed outermost first, the order that suits most calls is:
//
//	fallback, retry, circuitbreaker, throttle, ratelimit, bulkhead, hedge, timeout
//
// The timeout sits innermost so that it bounds one attempt rather than the
// whole sequence of retries; the caller's own ctx deadline bounds the whole.
// The hedge sits just outside it, so that each copy of a call has an
// attempt's timeout of its own and the policies outside see one result, the
// winner's. The throttle sits beside the breaker, inside retry, so that
// every attempt counts as a request.
// The bulkhead and the rate limiter sit inside the breaker so that a call the
// breaker refuses costs no slot and no token, and outside the timeout so that
// time spent waiting for a slot is not charged to the attempt. The breaker sits
// inside retry so that it sees, and counts, every attempt, and so that once it
// opens the retry stops at once: rejections match [ErrRejected] and are not
// retried unless their [RetryAfter] hint fits the deadline. Fallback sits
// outermost because it is the answer of last resort, given only when
// everything inside has failed. Leave out what a call does not need; the
// adaptive timeout and bulkhead take the places of their static kinds.
//
// # Rejections and hints
//
// A policy that refuses a call (a breaker that is open, a bulkhead that is
// full, a rate limiter out of tokens) returns an error that matches
// [ErrRejected], so that an outer policy can tell "we refused" from "the
// dependency failed": a breaker does not count an inner rejection as a
// failure. Rejections and errors built from HTTP 429 and 503 responses carry a
// retry-after hint, read with [RetryAfter]. A hint of zero or less is no
// hint.
//
// # Results that outlive the op
//
// Some results are still being used after the op that made them returned:
// an HTTP response whose body the caller reads later, a stream, a cursor.
// A policy that made a ctx for the op, such as a timeout, would cancel it
// when the op returns and break the result. The op says so with [Keep]:
//
//	err := p.Do(ctx, func(ctx context.Context) error {
//		resp, err := client.Do(req.WithContext(ctx))
//		if err != nil {
//			return err
//		}
//		release, _ := resilience.Keep(ctx)
//		body = &releasingBody{ReadCloser: resp.Body, release: release} // Close calls release
//		return nil
//	})
//
// Each policy that made a ctx for the op then leaves it alone when the op
// returns, and cancels it when release is called, or at its deadline, with
// its own cause, whichever comes first: a kept ctx bounds the reading of
// the result as it bounded the op. Whether the op succeeded or failed,
// release as soon as the result is done with; an op that keeps and then
// drops its result releases before it returns. A policy of one's own that
// makes a ctx for
// the op makes it keepable with [Keepable] and calls the end it returns in
// place of cancel. Keep holds every keepable ctx between the caller and the
// op, so a total timeout around a retry of attempt timeouts keeps both the
// attempt's ctx and the total's. When no policy made a keepable ctx, Keep
// reports false, and there is nothing to release.
//
// # Observing
//
// Every policy and component takes a WithName and a WithObserver option and
// tells its [Observer] what happens as [Event] values of one shape, so that
// one observer serves them all: [SlogObserver] logs them, a metrics exporter
// counts them, a dashboard shows them.
//
//	obs := resilience.SlogObserver(slog.Default())
//	breaker := circuitbreaker.New(circuitbreaker.WithName("payments"), circuitbreaker.WithObserver(obs))
//	retrier := retry.New(retry.WithName("payments"), retry.WithObserver(obs))
//
// Each call through a policy ends with one event of kind [Success],
// [Failure], [Ignored], [Rejected], [TimedOut] or [FellBack], whose Duration
// is how long the call took, waits included; an error that comes once the
// caller's ctx is done is [Ignored], and a call whose ctx is done before it
// starts, or whose op panics, makes no event. Along the way a retry tells of
// each [Retry] and of giving up ([GaveUp]), a timeout of an [Overrun], and a
// circuit breaker of each [StateChange], with the states' names and its
// [Cause]. An outbox relay and a saga coordinator tell of their work with
// Count and Subject: the relay's ID; the saga's ID, or "<saga ID>/<step>".
// [Observers] hands each event to several observers.
//
// Observe is called on the goroutine of the call, with its ctx, once the
// policy holds no lock or slot; it must not block. A policy with no observer
// builds no event and takes the path it took without one; with one, a call
// allocates nothing more. The callbacks that came first remain as views of
// the same events: circuitbreaker.WithOnStateChange, which adds the window's
// metrics, and retry.WithOnRetry; timeout.WithOnOverrun and the WithOnEvent
// options of outbox and saga are deprecated.
package resilience
