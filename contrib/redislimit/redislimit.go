package redislimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/ratelimit"
)

// LimitedError is returned by a limiter that refuses a call because its
// bucket has no token for it: Redis said so or, while Redis is down, the
// fallback of [WithLocalFallback] did. It matches [ratelimit.ErrLimited] and
// [resilience.ErrRejected], and its RetryAfter method, which
// [resilience.RetryAfter] finds, tells when a token is due. A refusal by
// Redis makes its own, holding the wait the script computed; the local
// fallback's refusals of a [Limiter] share one, which asks the local
// limiter.
type LimitedError struct {
	key   string
	keyed bool
	wait  time.Duration // from at until a token is due
	at    time.Time
	local *ratelimit.LimitedError // the local fallback's refusal, which knows its wait
}

func (e *LimitedError) Error() string {
	if e.keyed {
		return fmt.Sprintf("redislimit: limited (key %q)", e.key)
	}
	return "redislimit: limited"
}

// Is reports whether target is [ratelimit.ErrLimited] or
// [resilience.ErrRejected].
func (e *LimitedError) Is(target error) bool {
	return target == ratelimit.ErrLimited || target == resilience.ErrRejected
}

// Key returns the key that was limited, for a [Keyed] limiter, or "".
func (e *LimitedError) Key() string { return e.key }

// RetryAfter returns how long from now until the bucket has a token, as
// predicted when the call was refused. Other processes may take that token
// first.
func (e *LimitedError) RetryAfter() time.Duration {
	if e.local != nil {
		return e.local.RetryAfter()
	}
	return max(e.wait-time.Since(e.at), 0)
}

// ErrUnavailable is matched by every [*UnavailableError]: errors.Is(err,
// ErrUnavailable) holds for a call refused because Redis did not answer.
// It also matches [resilience.ErrRejected], and not
// [ratelimit.ErrLimited].
var ErrUnavailable error = resilience.Rejection("redislimit: Redis unavailable")

// UnavailableError is returned by a limiter made with [WithFailClosed] that
// refuses a call because Redis did not answer, answered the call with an
// error, or had failed within the probe interval ([WithProbeInterval]). The
// call was not over the limit, so it does not match [ratelimit.ErrLimited];
// it matches [ErrUnavailable] and [resilience.ErrRejected], so that an outer
// circuit breaker does not count it as a failure of the dependency it
// guards. It carries no retry-after hint. Unwrap returns why the call to
// Redis failed: Redis's error reply (a redis.Error), the client's error, or,
// for a call that ran out of its timeout ([WithTimeout]), an error that
// says so, rather than context.DeadlineExceeded, which would pass for the
// caller's own. The refusals of a [Limiter] while Redis is not asked share
// one.
type UnavailableError struct {
	key   string
	keyed bool
	err   error
}

func (e *UnavailableError) Error() string {
	if e.keyed {
		return fmt.Sprintf("redislimit: Redis unavailable (key %q): %v", e.key, e.err)
	}
	return "redislimit: Redis unavailable: " + e.err.Error()
}

// Is reports whether target is [ErrUnavailable] or [resilience.ErrRejected].
func (e *UnavailableError) Is(target error) bool {
	return target == ErrUnavailable || target == resilience.ErrRejected
}

// Unwrap returns why the call to Redis failed.
func (e *UnavailableError) Unwrap() error { return e.err }

// Key returns the key of the refused call, for a [Keyed] limiter, or "".
func (e *UnavailableError) Key() string { return e.key }

// Limiter admits calls at a steady rate with room for bursts, the rate
// being shared by every process that uses the same Redis key: a token
// bucket of burst tokens, initially full, refilled at r tokens a second, as
// [ratelimit.New]'s, kept in Redis and driven by the Redis server's clock.
// Make one with [New]. A Limiter is safe for concurrent use. The zero value
// is not usable; use New: its methods panic. Most callers want
// [Limiter.Do].
type Limiter struct {
	s *store
}

// made returns l's store, and panics if l is the zero Limiter.
func (l *Limiter) made() *store {
	if l.s == nil {
		panic("redislimit: zero Limiter; use New")
	}
	return l.s
}

var _ resilience.Policy = (*Limiter)(nil)

// New returns a Limiter of r tokens a second and bursts of burst, whose
// bucket is the Redis key key, configured by opts. The key must be the
// limiter's alone, and every limiter that uses it, in every process, must
// have the same r and burst. r must be rate.Inf
// (every call admitted; Redis is never asked) or from 1e-6 (one token in
// about eleven days) to 1e6 a second, and burst at least 1. New panics if
// an argument or option is out of range, or if client is a *redis.Client,
// *redis.ClusterClient or *redis.Ring whose ContextTimeoutEnabled option is
// false: without it, go-redis does not end a call at its ctx's deadline, so
// [WithTimeout] could not bound it.
func New(client redis.UniversalClient, key string, r rate.Limit, burst int, opts ...Option) *Limiter {
	s := newStore("New", false, client, r, burst, opts)
	if key == "" {
		panic("redislimit: New: empty key")
	}
	s.key = []string{key}
	return &Limiter{s: s}
}

// Allow takes a token if one is available now, and reports whether it did.
// It never waits for a token, but asks Redis, for up to the timeout
// ([WithTimeout]). When Redis does not answer, the fallback decides: true
// when failing open, false when failing closed, the local limiter's answer
// with [WithLocalFallback]. Allow returns false if ctx is done.
func (l *Limiter) Allow(ctx context.Context) bool {
	return l.made().allow(ctx, "")
}

// Do runs op if the limiter has a token for it. With [WithMaxWait], it
// waits for a token when the wait Redis predicts fits both the maximum wait
// and ctx's deadline, and otherwise refuses at once: it never waits first
// and refuses later. A refusal is a [*LimitedError], matching
// [ratelimit.ErrLimited] and [resilience.ErrRejected], whose retry-after
// hint says when a token is due. If ctx is done during the wait, Do returns
// ctx.Err() and gives the token back, unless a token was taken after it,
// which keeps its time. When Redis does not answer within the
// timeout ([WithTimeout]), the fallback decides: see [WithFailOpen],
// [WithFailClosed] and [WithLocalFallback]. Do panics if op is nil.
func (l *Limiter) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("redislimit: Limiter.Do: nil Op")
	}
	return l.made().do(ctx, "", op)
}

// Metrics is a snapshot of a limiter's counts, since it was made.
type Metrics struct {
	// Admitted counts the calls admitted, by Redis or by the fallback.
	Admitted int64
	// Rejected counts the calls refused, by Redis or by the fallback.
	Rejected int64
	// Fallback counts the calls, admitted or refused, that the fallback
	// decided because Redis did not answer, or was not asked in the probe
	// interval after it failed.
	Fallback int64
	// Errors counts the calls to Redis that failed: that got no answer in
	// time, or an error reply.
	Errors int64
}

// Metrics returns the limiter's counts.
func (l *Limiter) Metrics() Metrics { return l.made().metrics() }
