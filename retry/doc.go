// Package retry calls an operation again when it fails, without turning a
// dependency's outage into a retry storm and without losing the error.
//
//	r := retry.New(retry.WithMaxAttempts(4))
//	err := r.Do(ctx, func(ctx context.Context) error {
//		return client.Ping(ctx)
//	})
//	var ex *retry.ExhaustedError
//	if errors.As(err, &ex) {
//		log.Printf("ping failed %d times (%s): %v", ex.Attempts, ex.Reason, ex.Err)
//	}
//
// # What is retried
//
// Every error, unless the caller's ctx is done, the error is marked
// [Permanent], the [WithRetryIf] predicate says no, or it is a rejection by
// an inner policy ([resilience.ErrRejected]) whose retry-after hint does not
// end before the ctx deadline. Those come back as they are. When the retrier
// gives up on an error it would have retried, it returns an
// [*ExhaustedError] that keeps the last error and says why.
//
// # Waits
//
// The wait before each retry comes from a [Backoff] strategy, [FullJitter]
// by default, or from a retry-after hint in the error ([resilience.RetryAfter]),
// which replaces it. A hint of zero or less is no hint, so an HTTP 500
// without a Retry-After header is retried after the backoff's wait, not at
// once. A retrier never waits into a dead context: when the wait
// would end at or after the ctx deadline it gives up at once. Waits use a
// timer and ctx, so a test in a testing/synctest bubble runs them instantly.
//
// # Budgets
//
// A [Budget] lets retries add only a share of the calls made (20% by
// default) plus a small floor per second. When a dependency fails for every
// caller, retries then add a fifth to its load instead of multiplying it by
// the number of attempts. Share one Budget between every retrier that calls
// the same dependency. A loop of one's own, or a simulation on a clock of
// its own, uses a Budget directly: [Budget.Deposit] for each call made,
// [Budget.Withdraw] before each retry. [Backoff.DelayRand] draws a
// strategy's wait from a given random source, so that a seeded simulation
// repeats (examples/jitter is one).
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, of each retry (a
// [resilience.Retry] event with the attempt that failed, its error and the
// wait), of giving up (a [resilience.GaveUp] event with the
// [*ExhaustedError]), and of how each call ended, with the attempts made and
// how long it took, waits included. A retrier with no observer builds no
// event, and with one a call allocates nothing more. [WithOnRetry] is a
// view of the retries alone.
package retry
