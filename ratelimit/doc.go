// Package ratelimit admits calls at a steady rate with room for bursts, per
// process ([Limiter]) or per key ([Keyed]): a tenant, a client address, a
// route.
//
//	l := ratelimit.New(100, 20) // 100 calls a second, bursts of 20
//	err := l.Do(ctx, func(ctx context.Context) error {
//		return client.Send(ctx, msg)
//	})
//	if errors.Is(err, ratelimit.ErrLimited) {
//		d, _ := resilience.RetryAfter(err) // when a token is due
//	}
//
// The semantics are those of golang.org/x/time/rate's token bucket: burst
// tokens, initially all there, refilled at r a second. Over any interval of
// length t no more than r·t + burst calls are admitted, and a caller that
// keeps to r is never refused. The bucket lives in one atomic word, so taking
// a token is a clock read and a compare-and-swap, with no lock;
// [FromLimiter] accepts an existing *rate.Limiter instead.
//
// # Refusing and waiting
//
// By default a call with no token is refused at once with a
// [*LimitedError], which matches [ErrLimited] and [resilience.ErrRejected]
// and carries a retry-after hint. With [WithMaxWait] a call waits for its
// token, but only when the wait the bucket predicts fits both the maximum
// and the ctx deadline: a call that cannot be served in time is refused at
// once, never after waiting. [Limiter.Reserve] takes a token ahead of time
// for callers that schedule work rather than block.
//
// For a limit shared by every instance of a service, see the Redis-backed
// limiter in the contrib/redislimit module.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, how each call of
// [Limiter.Do] and [Keyed.DoKey] ended: a [resilience.Rejected] event, with
// the retry-after hint in Delay, for a refusal, or the outcome of op, with
// how long the call took, the wait for its token included. A limiter with
// no observer builds no event, and with one a call allocates nothing more.
package ratelimit
