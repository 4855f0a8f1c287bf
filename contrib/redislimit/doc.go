// Package redislimit admits calls at a rate shared by every instance of a
// service, keeping its token buckets in Redis: one bucket ([Limiter]) or one
// per key ([Keyed]): a tenant, a client address, a route. A limit kept in
// each process with package ratelimit multiplies by the number of
// processes; one kept here does not.
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  addr,
//		ContextTimeoutEnabled: true, // required: calls end at their ctx's deadline
//		MaxRetries:            -1,   // a call takes at most one token
//	})
//	l := redislimit.New(client, "limit:payments", 100, 20) // 100 calls a second, bursts of 20
//	err := l.Do(ctx, func(ctx context.Context) error {
//		return payments.Charge(ctx, order)
//	})
//	if d, ok := resilience.RetryAfter(err); ok && errors.Is(err, ratelimit.ErrLimited) {
//		log.Printf("payments limited; a token is due in %v", d)
//	}
//
// The semantics are those of [ratelimit.New]: burst tokens, initially all
// there, refilled at r a second; over any interval of length t no more than
// r·t + burst calls are admitted, by all processes together. The API is
// ratelimit's, with a ctx wherever Redis is asked: [Limiter.Allow] and
// [Keyed.AllowKey] take one.
//
// # In Redis
//
// Each call is one round trip: a Lua script (EVALSHA, or EVAL the first
// time) that runs the generic cell rate algorithm on one key, atomically,
// on the Redis server's clock (TIME), so that callers' clocks may differ.
// The script needs Redis 5 or later. A bucket is one string key, which
// expires when the bucket is full again: idle keys cost Redis nothing. Each
// script touches a single key, so the limiters work on Redis Cluster; a
// Keyed limiter's keys carry the caller's key as their hash tag.
//
// A bucket's key holds only the time at which it is full again; the rate
// and burst come with each call. So every limiter that uses a key, in every
// process, must be made with the same r and burst, and the keys a limiter
// uses (its key, or the keys that start with a Keyed limiter's prefix) must
// be its alone.
//
// # One client of its own
//
// go-redis sends a command again when its connection broke before the
// answer came back (io.EOF and the like), up to the client's MaxRetries
// times, 3 by default. The script may have run each time: one call may
// take up to MaxRetries+1 tokens. Give the limiters a client of their own,
// with MaxRetries: -1 (no retries), so that a call takes at most one token;
// a call that fails is decided by the fallback instead. A
// *redis.ClusterClient sends such a command again up to MaxRedirects
// times, which it also needs to follow the slots that move: there, a call
// whose connection breaks may take more than one token.
//
// # Refusing and waiting
//
// By default a call with no token is refused at once with a
// [*LimitedError], which matches [ratelimit.ErrLimited] and
// [resilience.ErrRejected] and carries a retry-after hint computed by the
// script. With [WithMaxWait] a call waits for its token, but only when the
// wait Redis predicts fits both the maximum and the ctx deadline: the
// script reserves the token only then, so a call that cannot be served in
// time is refused at once, never after waiting.
//
// # When Redis does not answer
//
// Every call to Redis is bounded by a timeout ([WithTimeout], 100ms by
// default) and by ctx. A call that fails or times out is decided by the
// limiter's fallback, one of:
//
//   - [WithFailOpen], the default: admit it. Redis being down lifts the
//     limit, but takes nothing else down.
//   - [WithFailClosed]: refuse it with an [*UnavailableError], which matches
//     [ErrUnavailable] and [resilience.ErrRejected] but not
//     [ratelimit.ErrLimited]: the caller was not over the limit, and an outer
//     circuit breaker does not count the refusal as a failure of the
//     dependency it guards.
//   - [WithLocalFallback](n): ask a limiter of this process, at r/n a
//     second, so that n instances together keep to about r.
//
// A call whose answer was lost on the way back has still taken its token
// in Redis: failures count against the limit, never for it. A call that
// ends because the caller's ctx is done, or its deadline has passed, ends
// with ctx's error: it is not a failure of Redis.
//
// After a call that got no answer, the limiter's calls are decided by the
// fallback without asking Redis for a probe interval ([WithProbeInterval],
// 1s by default); then one call asks again, and once Redis answers, every
// call does. A limiter keeps one such record for all its keys: for a
// [Keyed] limiter, a key whose call got no answer sends every key to the
// fallback. An error reply (a key of another type, a script error, Redis
// out of memory) is different: Redis answered, so the fallback decides
// that call alone, and the next call asks Redis again. [Limiter.Metrics]
// counts the calls admitted, refused and decided by the fallback, and the
// calls to Redis that failed, and [WithObserver] is told when Redis stops
// and starts answering.
//
// The timeout holds only if the client honours ctx deadlines: go-redis does
// when its ContextTimeoutEnabled option is set, and [New] and [NewKeyed]
// panic when given a *redis.Client, *redis.ClusterClient or *redis.Ring
// without it.
package redislimit
