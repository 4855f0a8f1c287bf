package throttle

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
)

// ErrThrottled is returned by [Throttle.Do] for a request it rejected
// locally, without calling op. It matches [resilience.ErrRejected].
var ErrThrottled error = resilience.Rejection("throttle: rejected locally")

// Throttle rejects requests locally, before they reach a backend that
// refuses many of them, as the client-side throttling of Google's SRE book
// does: it rejects each request with probability
//
//	max(0, (requests - K·accepts) / (requests + 1))
//
// capped at a ceiling, where requests counts every request over the window,
// those it rejected included, and accepts those the backend accepted. Make
// one with [New] and share it between every caller of the backend; it is
// safe for concurrent use. The zero value is not usable; use New: its
// methods panic. Most callers want [Throttle.Do].
type Throttle struct {
	cfg config

	w *window

	mu   sync.Mutex // guards rand
	rand *rand.Rand // nil: the top-level functions
}

var _ resilience.Policy = (*Throttle)(nil)

// Metrics is a snapshot of a [Throttle]; see [Throttle.Metrics].
type Metrics struct {
	// Requests and Accepts are the counts over the window.
	Requests, Accepts int64
	// Rejection is the probability with which the next request is
	// rejected.
	Rejection float64
}

// New returns a Throttle configured by opts. With no options it uses K = 2
// over a window of 2 minutes in 120 buckets, rejects at most 90% of
// requests, and counts as refusals the errors [DefaultRejectedIf] names.
// New panics if an option is nil.
func New(opts ...Option) *Throttle {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("throttle: New: nil Option")
		}
		o.apply(&cfg)
	}
	if cfg.rejectedIf == nil {
		cfg.rejectedIf = DefaultRejectedIf
	}
	return &Throttle{cfg: cfg, w: newWindow(time.Now(), cfg.window, cfg.buckets, cfg.recovery), rand: cfg.rand}
}

// DefaultRejectedIf is the default of [WithRejectedIf]: err means that the
// backend refused the request when it matches [resilience.ErrRejected] (a
// refusal by an inner policy, or an error of the user's that matches it),
// carries a retry-after hint ([resilience.RetryAfter]: an HTTP 429 or 503
// with Retry-After), or is a deadline that passed while the caller's own
// ctx was not done (a backend too slow to answer in time). Every other
// error, and the caller's own cancellation, is an accept: the backend
// answered, if only to say no.
func DefaultRejectedIf(err error) bool {
	if errors.Is(err, resilience.ErrRejected) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	_, hinted := resilience.RetryAfter(err)
	return hinted
}

// Do counts the request, then rejects it with [ErrThrottled] with the
// probability the type documents, or calls op and counts an accept unless
// op's error is a refusal by the classifier of [WithRejectedIf]. A
// rejection allocates nothing. Do panics if op is nil.
func (t *Throttle) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("throttle: Throttle.Do: nil Op")
	}
	if t.w == nil {
		panic("throttle: zero Throttle; use New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.cfg.observer != nil {
		return t.doObserved(ctx, op)
	}
	b, tick, ok := t.admit(time.Since(t.w.epoch))
	if !ok {
		return ErrThrottled
	}
	return t.call(ctx, op, b, tick)
}

// doObserved is Do with an observer.
func (t *Throttle) doObserved(ctx context.Context, op resilience.Op) error {
	start := time.Now()
	b, tick, ok := t.admit(start.Sub(t.w.epoch))
	if !ok {
		t.cfg.observer.Observe(ctx, resilience.Event{Time: start, Policy: resilience.PolicyThrottler,
			Name: t.cfg.name, Kind: resilience.Rejected, Err: ErrThrottled})
		return ErrThrottled
	}
	err := t.call(ctx, op, b, tick)
	now, took := event.End(start)
	t.cfg.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyThrottler,
		Name: t.cfg.name, Kind: event.Outcome(ctx, err), Duration: took, Err: err})
	return err
}

// call calls op for a request counted in bucket b at tick, counts its
// accept unless op's error is a refusal, and returns that error.
func (t *Throttle) call(ctx context.Context, op resilience.Op, b *bucket, tick int64) error {
	err := op(ctx)
	if err == nil || ctx.Err() != nil || !t.cfg.rejectedIf(err) {
		t.w.accept(b, tick)
	}
	return err
}

// admit counts a request made elapsed after the window's epoch and
// reports whether it goes through, and the bucket and tick to count its
// accept in.
func (t *Throttle) admit(elapsed time.Duration) (b *bucket, tick int64, ok bool) {
	t.w.now(elapsed)
	b, tick, c := t.w.request()
	if float64(c.requests) <= t.cfg.k*float64(c.accepts) {
		return b, tick, true // no rejection: the common case, without a division
	}
	p := t.rejection(c)
	return b, tick, p == 0 || t.float64() >= p
}

// rejection returns the probability of rejecting a request after counts c:
// the formula's over the window or, once the recent span's is at most half
// of that (the backend accepts clearly more than it did), the recent
// span's. Within an overload the two agree, up to noise, and the window's
// decides.
func (t *Throttle) rejection(c counts) float64 {
	p := rejection(c.requests, c.accepts, t.cfg.k, t.cfg.ceiling)
	if t.w.recent > 0 && p > 0 {
		if recent := rejection(c.recentRequests, c.recentAccepts, t.cfg.k, t.cfg.ceiling); recent <= p/2 {
			return recent
		}
	}
	return p
}

// float64 draws from the throttle's source.
func (t *Throttle) float64() float64 {
	if t.rand == nil {
		return rand.Float64()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rand.Float64()
}

// Metrics returns the counts over the window and the probability of
// rejecting the next request.
func (t *Throttle) Metrics() Metrics {
	if t.w == nil {
		panic("throttle: zero Throttle; use New")
	}
	t.w.now(time.Since(t.w.epoch))
	c := t.w.counts()
	return Metrics{Requests: c.requests, Accepts: c.accepts, Rejection: t.rejection(c)}
}
