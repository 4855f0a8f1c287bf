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
// # The canonical order
//
// Listed outermost first, the order that suits most calls is:
//
//	fallback, retry, circuitbreaker, ratelimit, bulkhead, timeout
//
// The timeout sits innermost so that it bounds one attempt rather than the
// whole sequence of retries; the caller's own ctx deadline bounds the whole.
// The bulkhead and the rate limiter sit inside the breaker so that a call the
// breaker refuses costs no slot and no token, and outside the timeout so that
// time spent waiting for a slot is not charged to the attempt. The breaker sits
// inside retry so that it sees, and counts, every attempt, and so that once it
// opens the retry stops at once: rejections match [ErrRejected] and are not
// retried unless their [RetryAfter] hint fits the deadline. Fallback sits
// outermost because it is the answer of last resort, given only when
// everything inside has failed.
//
// # Rejections and hints
//
// A policy that refuses a call (a breaker that is open, a bulkhead that is
// full, a rate limiter out of tokens) returns an error that matches
// [ErrRejected], so that an outer policy can tell "we refused" from "the
// dependency failed": a breaker does not count an inner rejection as a
// failure. Rejections and errors built from HTTP 429 and 503 responses carry a
// retry-after hint, read with [RetryAfter].
package resilience
