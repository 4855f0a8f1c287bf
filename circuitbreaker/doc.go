// Package circuitbreaker stops calls to a dependency that keeps failing, so
// that callers fail fast and the dependency gets room to recover.
//
// A [Breaker] watches the outcomes of the calls it admits in a window, either
// the last n calls ([WithCountWindow], the default, n = 100) or the calls of
// the last span of time ([WithTimeWindow]), and trips from [Closed] to [Open]
// when too many of them failed ([WithFailureRate]: half of at least 20 by
// default), were slow ([WithSlowCalls]), or failed in a row
// ([WithConsecutiveFailures]). Open, it rejects every call at once with an
// [*OpenError]. When the break is over it turns [HalfOpen] and admits a few
// probe calls ([WithHalfOpenProbes]): the first that fails opens it again,
// for twice as long up to a maximum ([WithBreakDuration]), and enough
// successes close it.
//
//	b := circuitbreaker.New(circuitbreaker.WithName("payments"))
//	err := b.Do(ctx, func(ctx context.Context) error {
//		return payments.Charge(ctx, order)
//	})
//	if errors.Is(err, circuitbreaker.ErrOpen) {
//		// Rejected without calling payments.
//	}
//
// # Correctness
//
// Each stay in a state is an epoch of its own, and a call's outcome is
// recorded in the epoch that admitted it: a slow call admitted while closed
// that finishes after the breaker opened is not counted as a half-open probe.
// The half-open state admits at most the configured number of probes at
// once; a probe that never reports does not keep the breaker half-open, as a
// new probe slot opens after another break. A break's end needs no
// background goroutine: a timer sets a flag shortly before it, and the next
// call compares the clock and moves the breaker on. [Breaker.State] and
// [Breaker.Metrics] read the clock, so they move the breaker on even when
// the timer runs late; [OpenError.RetryAfter] reads it too, and changes
// nothing.
//
// The caller's own cancellation is never a failure: an error returned once
// the caller's ctx is done, cancelled or past its deadline, is ignored and
// its permit returned, and so, by default, are rejections from inner
// policies ([resilience.ErrRejected]) and context.Canceled; see
// [DefaultClassifier] and [WithClassifier]. To count a dependency that does
// not answer in time, bound each call with a timeout inside the breaker, as
// the canonical order does (retry, circuitbreaker, ..., timeout): the
// timeout's deadline is the call's own, and its error a failure. A panic in
// the call counts as a failure and propagates.
//
// # Manual control
//
// [Breaker.ForceOpen] rejects every call, [Breaker.Disable] admits every call
// and records nothing, and [Breaker.MetricsOnly] records without ever
// rejecting, to watch a configuration before enforcing it; [Breaker.Reset]
// closes the breaker again. [Breaker.OpenFor] opens it for a time given from
// outside, such as the Retry-After of an HTTP 429 or 503 response.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, how each call ended (a
// Success, Failure, Ignored or Rejected event, with how long it took; a
// rejection's retry-after hint in Delay), and of each change of state: a
// StateChange event with the states' names and its [resilience.Cause], the
// rule that tripped the breaker (failure rate, slow-call rate, consecutive
// failures), the probes' outcome, the end of a break, or the method an
// operator called. Changes are told in order, with no lock held, so the
// observer may read the breaker. [WithOnStateChange] sees the same changes
// as [Transition]s, which add the window's metrics as the breaker left it.
// A breaker with no observer builds no event, and with one a call
// allocates nothing more.
//
// # Cost
//
// In the closed state a call that succeeds takes no lock and allocates
// nothing: a load of the state and a striped atomic increment (two, on one
// cache line, for a time window), plus one clock read for a time window and
// two when slow calls are measured. Only while the window holds fewer calls
// than the minimum does a success take the window's lock, to see whether it
// completes the minimum. Failures are recorded under the window's lock. A
// rejection while open allocates nothing and reads no clock: a timer marks
// the end of the break, and calls check the clock only from then on.
package circuitbreaker
