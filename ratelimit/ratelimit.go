package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/stripe"
	"github.com/resilience-go/resilience/internal/wait"
)

// ErrLimited is matched by every refusal of a limiter: errors.Is(err,
// ErrLimited) holds for a [*LimitedError]. ErrLimited and LimitedError also
// match [resilience.ErrRejected].
var ErrLimited error = resilience.Rejection("ratelimit: limited")

// LimitedError is returned by a limiter that refuses a call. Its RetryAfter
// method, which [resilience.RetryAfter] finds, tells how long from the moment
// it is asked until a token is available. One LimitedError is made per
// limiter (per key, for a [Keyed] limiter) and shared by its refusals, so a
// refusal allocates nothing.
type LimitedError struct {
	key   string
	keyed bool
	g     *gcra
	start time.Time
	x     *rate.Limiter
}

func (e *LimitedError) Error() string {
	if e.keyed {
		return fmt.Sprintf("ratelimit: limited (key %q)", e.key)
	}
	return "ratelimit: limited"
}

// Is reports whether target is [ErrLimited] or [resilience.ErrRejected].
func (e *LimitedError) Is(target error) bool {
	return target == ErrLimited || target == resilience.ErrRejected
}

// Key returns the key that was limited, for a [Keyed] limiter, or "".
func (e *LimitedError) Key() string { return e.key }

// RetryAfter returns how long from now until the limiter has a token.
func (e *LimitedError) RetryAfter() time.Duration {
	switch {
	case e.g != nil:
		return time.Duration(e.g.wait(int64(time.Since(e.start))))
	case e.x != nil:
		tokens, limit := e.x.Tokens(), float64(e.x.Limit())
		if tokens >= 1 || limit <= 0 || math.IsInf(limit, 1) {
			return 0
		}
		return time.Duration((1 - tokens) / limit * float64(time.Second))
	}
	return 0
}

// Limiter admits calls at a steady rate with room for bursts: a token bucket
// of burst tokens, initially full, refilled at r tokens a second, as
// golang.org/x/time/rate's Limiter. Make one with [New], or wrap a
// *rate.Limiter with [FromLimiter]. A Limiter is safe for concurrent use. The
// zero value is not usable; use New: its methods panic. Most callers want
// [Limiter.Do].
//
// A Limiter made by New keeps its bucket in one atomic word (the generic cell
// rate algorithm): taking a token is a clock read and a compare-and-swap, with
// no lock.
type Limiter struct {
	start    time.Time // the origin of g's clock
	mode     mode
	x        *rate.Limiter
	maxWait  time.Duration
	err      *LimitedError
	rejected stripe.Counter
	name     string
	observer resilience.Observer

	// g is written by every call, and has cache lines of its own, so that
	// the fields above stay in the cache of every processor that reads them.
	_ [cacheLine]byte
	g gcra
	_ [cacheLine]byte
}

// cacheLine is the size of a cache line, or more.
const cacheLine = 64

var _ resilience.Policy = (*Limiter)(nil)

// mode says where a Limiter's tokens come from.
type mode uint8

const (
	bucketMode mode = iota // its own bucket, g
	infMode                // rate.Inf: every call is admitted
	xMode                  // a *rate.Limiter, x
)

// New returns a Limiter of r tokens a second and bursts of burst, configured
// by opts. r must be rate.Inf (every call admitted) or at least one token in
// about eleven days (1e-6 a second), and burst at least 1. New panics if an
// argument or option is out of range.
func New(r rate.Limit, burst int, opts ...Option) *Limiter {
	l := &Limiter{start: time.Now(), rejected: stripe.NewCounter()}
	if r == rate.Inf {
		l.mode = infMode
	} else {
		l.g.init(interval("New", r, burst), burst)
	}
	l.err = &LimitedError{g: &l.g, start: l.start}
	c := newConfig("New", config{}, opts)
	l.maxWait, l.name, l.observer = c.maxWait, c.name, c.observer
	return l
}

// interval checks a rate and burst and returns the time per token.
func interval(fn string, r rate.Limit, burst int) time.Duration {
	if !(r >= 1e-6) || math.IsInf(float64(r), 0) {
		panic(fmt.Sprintf("ratelimit: %s(%v, %d): want rate.Inf or r >= 1e-6", fn, float64(r), burst))
	}
	if burst < 1 {
		panic(fmt.Sprintf("ratelimit: %s(%v, %d): want burst >= 1", fn, float64(r), burst))
	}
	return max(time.Duration(float64(time.Second)/float64(r)), 1)
}

// FromLimiter returns a Limiter that takes its tokens from lim, which other
// code may share. It waits and refuses as a Limiter made by New does, at the
// cost of lim's lock and allocations. FromLimiter panics if lim or an option
// is nil, or an option is out of range.
func FromLimiter(lim *rate.Limiter, opts ...Option) *Limiter {
	if lim == nil {
		panic("ratelimit: FromLimiter: nil *rate.Limiter")
	}
	l := &Limiter{start: time.Now(), mode: xMode, x: lim, rejected: stripe.NewCounter()}
	l.err = &LimitedError{x: lim}
	c := newConfig("FromLimiter", config{}, opts)
	l.maxWait, l.name, l.observer = c.maxWait, c.name, c.observer
	return l
}

// newConfig returns c configured by opts, the options of the constructor fn.
func newConfig(fn string, c config, opts []Option) config {
	for _, o := range opts {
		if o == nil {
			panic("ratelimit: " + fn + ": nil Option")
		}
		o.apply(&c)
	}
	return c
}

// mustBeMade panics if l is the zero Limiter.
func (l *Limiter) mustBeMade() {
	if l.err == nil {
		panic("ratelimit: zero Limiter; use New")
	}
}

// Allow takes a token if one is available now, and reports whether it did.
// It never waits.
func (l *Limiter) Allow() bool {
	l.mustBeMade()
	if l.mode == bucketMode {
		return l.g.takeNow(l.start)
	}
	return l.mode != xMode || l.x.Allow()
}

// Do runs op if the limiter has a token for it. With [WithMaxWait], it
// waits for a token when the wait the bucket predicts fits both the maximum
// wait and ctx's deadline, and otherwise refuses at once: it never waits
// first and refuses later. A refusal is a [*LimitedError], matching
// [ErrLimited] and [resilience.ErrRejected], whose retry-after hint says
// when a token is due. If ctx is done during the wait, Do returns ctx.Err()
// and gives the token back, unless a token was taken after it, which keeps
// its time (see [Reservation.Cancel]). Do panics if op is nil.
func (l *Limiter) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("ratelimit: Limiter.Do: nil Op")
	}
	l.mustBeMade()
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.observer != nil {
		return l.doObserved(ctx, op)
	}
	if l.maxWait == 0 {
		if l.mode == bucketMode && l.g.takeNow(l.start) || l.mode != bucketMode && l.Allow() {
			return op(ctx)
		}
		l.rejected.Add(1)
		return l.err
	}
	return await(ctx, l.reserve(ctx, l.maxWait), op, l.rejected, l.err)
}

// doObserved is Do with an observer, which it tells how the call ended.
func (l *Limiter) doObserved(ctx context.Context, op resilience.Op) error {
	start := time.Now()
	var err error
	switch {
	case l.maxWait > 0:
		err = await(ctx, l.reserve(ctx, l.maxWait), op, l.rejected, l.err)
	case l.mode == bucketMode && l.g.takeNow(l.start) || l.mode != bucketMode && l.Allow():
		err = op(ctx)
	default:
		l.rejected.Add(1)
		err = l.err
	}
	observe(ctx, l.observer, l.name, start, err, l.err)
	return err
}

// observe tells o, the observer of a limiter named name, that a call that
// started at start ended with err, which is refused when the limiter
// refused the call.
func observe(ctx context.Context, o resilience.Observer, name string, start time.Time, err error, refused *LimitedError) {
	e := resilience.Event{Policy: resilience.PolicyRateLimiter, Name: name, Err: err}
	if err == error(refused) {
		e.Kind, e.Delay = resilience.Rejected, refused.RetryAfter()
	} else {
		e.Kind = event.Outcome(ctx, err)
	}
	e.Time, e.Duration = event.End(start)
	o.Observe(ctx, e)
}

// await waits for the token r reserved and runs op, or, when r is not OK,
// counts the refusal in rejected and returns refused. If ctx is done during
// the wait, it gives the token back and returns ctx.Err().
func await(ctx context.Context, r Reservation, op resilience.Op, rejected stripe.Counter, refused *LimitedError) error {
	if !r.OK() {
		rejected.Add(1)
		return refused
	}
	if !wait.Sleep(ctx, r.Delay()) {
		r.Cancel()
		return ctx.Err()
	}
	return op(ctx)
}

// fit returns maxWait, shortened so that a token it allows is due strictly
// before ctx's deadline.
func fit(ctx context.Context, maxWait time.Duration) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		maxWait = min(maxWait, time.Until(deadline)-1)
	}
	return maxWait
}

// Reserve takes a token now or, if none is available, reserves the next
// one due within maxWait, without waiting. The caller waits
// Reservation.Delay before acting, or calls Reservation.Cancel to give the
// token back. If no token is due within maxWait, the Reservation is not OK
// and took nothing.
func (l *Limiter) Reserve(maxWait time.Duration) Reservation {
	l.mustBeMade()
	return l.reserve(context.Background(), maxWait)
}

// reserve reserves a token due within maxWait and, strictly, before ctx's
// deadline.
func (l *Limiter) reserve(ctx context.Context, maxWait time.Duration) Reservation {
	if maxWait = fit(ctx, maxWait); maxWait < 0 {
		return Reservation{}
	}
	switch l.mode {
	case infMode:
		return Reservation{ok: true}
	case xMode:
		xr := l.x.Reserve()
		if !xr.OK() || xr.Delay() > maxWait {
			xr.Cancel()
			return Reservation{}
		}
		return Reservation{ok: true, delay: xr.Delay(), x: xr}
	}
	wait, next, ok := l.g.take(l.start, int64(maxWait))
	if !ok {
		return Reservation{}
	}
	return Reservation{ok: true, delay: time.Duration(wait), g: &l.g, start: l.start, next: next}
}

// Metrics is a snapshot of a limiter's counts.
type Metrics struct {
	// Rejected counts the calls refused since the limiter was made.
	Rejected int64
}

// Metrics returns the limiter's counts.
func (l *Limiter) Metrics() Metrics {
	l.mustBeMade()
	return Metrics{Rejected: l.rejected.Sum()}
}

// Reservation is a token taken ahead of its time by [Limiter.Reserve]. It is
// a small value: reserving allocates nothing, except through a
// *rate.Limiter. The zero value is a Reservation that is not OK, whose
// Cancel does nothing.
type Reservation struct {
	ok    bool
	delay time.Duration
	g     *gcra
	start time.Time
	next  int64 // the bucket's tat after the token, which names it
	x     *rate.Reservation
}

// OK reports whether a token was reserved.
func (r Reservation) OK() bool { return r.ok }

// Delay returns how long after the reservation the token is due.
func (r Reservation) Delay() time.Duration { return r.delay }

// Cancel gives the token back, so that another call may have it, if it is
// not yet due and no token was taken after it (which keeps its time: as
// with x/time/rate, the bucket never holds more than it would have without
// the cancelled token). Cancel a reservation at most once, and only one
// that is OK and not used.
func (r Reservation) Cancel() {
	switch {
	case r.g != nil:
		r.g.cancel(int64(time.Since(r.start)), r.next)
	case r.x != nil:
		r.x.Cancel()
	}
}
