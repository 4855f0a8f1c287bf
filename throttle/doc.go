// Package throttle sheds load on the client side when a backend refuses
// much of it, as Google's SRE book describes ("Handling Overload",
// client-side throttling): a client whose requests are being rejected
// rejects some itself, locally and at no cost to the backend, in
// proportion to how far its requests outnumber K times the backend's
// accepts.
//
//	t := throttle.New(throttle.WithName("search"))
//	err := t.Do(ctx, func(ctx context.Context) error {
//		return search.Query(ctx, q)
//	})
//	if errors.Is(err, throttle.ErrThrottled) {
//		// Rejected locally: serve a degraded answer.
//	}
//
// # When to use it
//
// In front of a backend that answers overload with a quick refusal (an
// HTTP 429 or 503, a gRPC RESOURCE_EXHAUSTED), shared by many clients. A
// refusal still costs the backend some work; once every client throttles
// itself, the backend sees about K requests per request it can take, and
// spends its time on work it accepts. Unlike a circuit breaker, the
// throttle has no state to trip: it lets through a share of requests that
// rises with the accepts, so it opens as the backend recovers.
//
// # The rule
//
// Over a window (2 minutes by default, cut into buckets so that memory is
// fixed), the throttle counts requests, before each call and including
// those it rejects, and accepts: calls whose error the classifier of
// [WithRejectedIf] does not call a refusal. It rejects the next request
// with probability max(0, (requests − K·accepts) / (requests + 1)), K = 2
// by default ([WithK]), at most 0.9 ([WithMaxRejection]) so that some
// requests always reach the backend. An accept is counted in the bucket of
// its request, so that the two leave the window together.
//
// # Recovery
//
// The throttle has no state to reset: when the backend recovers, it lets
// through at once the share of requests the counts allow (2/5 of them,
// for a backend that could take a fifth), and the accepts come in. Over
// the window alone, it would open fully only as the overload's counts
// leave it: about 83 seconds of the default 2 minutes, against a backend
// that could take a fifth of the load. So the throttle also applies the
// formula to a recent span of the window (the last 5 seconds by default,
// [WithRecovery]), and once that gives at most half the window's
// rejection, because the backend accepts clearly more than it did, the
// recent span decides: the throttle opens fully within about that span
// (in 4 seconds in TestSimulationOverload). Within an overload the two agree,
// and the window decides, so the backend sees no more than before.
// WithRecovery(0) gives the book's formula over the window alone.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer] of each local rejection (a
// [resilience.Rejected] event with [ErrThrottled]) and of how each request
// let through ended. [Throttle.Metrics] reports the counts and the current
// rejection probability.
package throttle
