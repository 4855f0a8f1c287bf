// Package hedge cuts the tail latency of idempotent calls by sending a
// second copy of a call that is slow to answer, as "The Tail at Scale"
// (Dean and Barroso, 2013) describes, and keeping the first answer.
//
//	h := hedge.New(hedge.WithName("catalog"))
//	item, err := resilience.Do(ctx, h, func(ctx context.Context) (*Item, error) {
//		return catalog.Get(ctx, id)
//	})
//
// # When to use it
//
// For reads and other idempotent calls to a replicated backend whose
// latency has a long tail: a call that has not answered by the 95th
// percentile of recent latencies is sent again, and the slow copy is
// cancelled once the other answers. About one call in twenty then costs
// two requests, and the slowest few percent of calls finish about as fast
// as the rest. Never hedge a call that must not run twice.
//
// # How a call goes
//
// The first attempt runs on the caller's goroutine. Each time the delay
// passes without a result ([WithQuantileDelay], the 95th percentile of the
// last 30 seconds by default, or a fixed [WithDelay]), another attempt
// starts beside it, up to [WithMaxHedges] (1 by default). An attempt that
// fails with an error worth another try ([WithRetryIf]) starts the next
// at once. The first success wins, and so does an error not worth another
// try; when every attempt fails, the last error is returned. The attempts
// that lost are cancelled, and [Hedger.Do] returns only once every one has
// returned: no goroutine outlives the call.
//
// Through [resilience.Do], the value returned is the winner's, never a
// loser's, and each loser's value is handed to the [WithDiscard] hook, so
// that, say, the body of a losing HTTP response is closed.
//
// # Load
//
// Hedging multiplies load when a backend slows down for everyone, just
// when it can least take it. Two bounds stop that: every hedge takes a
// token from an extra-load cap, 5% of the calls by default
// ([WithMaxExtraLoad]), and, with [WithBudget], from a budget shared with
// the retries of the same dependency, such as a retry.Budget. A quantile
// delay also rises with the latencies, so that a backend that is slow for
// every call is soon no longer hedged at all.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer] of each hedge started (a
// [resilience.Started] event) and how each call ended, with the attempts
// it started.
package hedge
