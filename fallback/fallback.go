// Package fallback answers a call that failed with something else: a cached
// value, a default, a degraded result, or another endpoint.
//
//	f := fallback.New(func(ctx context.Context, err error) error {
//		return serveFromCache(ctx)
//	})
//	err := f.Do(ctx, fetch)
//
// [Do] is the generic form, for calls that return a value:
//
//	price, err := fallback.Do(ctx, policy, fetchPrice,
//		func(ctx context.Context, err error) (Price, error) { return lastKnownPrice, nil })
//
// [Failover] tries redundant endpoints in turn, each behind policies of its
// own, and reports every error when all of them fail.
//
// By default a fallback answers every error except one that comes after the
// caller cancelled its ctx: when the caller has given up, there is no one to
// answer. A caller's deadline that passed is different: the dependency was
// too slow, which is when a fallback helps, and the caller is still waiting
// for Do to return.
// Outermost in a chain, a fallback sees what is left after retries and
// breakers: see the order in the resilience package documentation.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, how each call ended: a
// [resilience.FellBack] event, with the error the fallback answered, or
// the outcome of op, with how long the call took, the fallback's own time
// included. A fallback with no observer builds no event, and with one a
// call allocates nothing more.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
)

// Fallback calls a function of its own when op fails. Make one with [New];
// it is safe for concurrent use if its function is. The zero value is not
// usable; use New: its methods panic.
type Fallback struct {
	alt func(ctx context.Context, err error) error
	cfg config
}

var _ resilience.Policy = (*Fallback)(nil)

type config struct {
	when     func(error) bool
	name     string
	observer resilience.Observer
}

// An Option configures a [Fallback] made by [New], or a call to [Do].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithFallbackIf sets which errors the fallback answers. It is never asked
// about an error that comes after the caller cancelled its ctx: those are
// returned as they are. Default: every error. pred must not be nil.
func WithFallbackIf(pred func(error) bool) Option {
	if pred == nil {
		panic("fallback: WithFallbackIf: nil pred")
	}
	return optionFunc(func(c *config) { c.when = pred })
}

// WithName names the fallback in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the fallback's events to o (see
// [resilience.Observer]), on the goroutine that called Do, with its ctx:
// each call ends with a [resilience.FellBack] event, whose Err is the error
// the fallback answered, when the fallback answered, and otherwise with a
// [resilience.Success], [resilience.Failure] or [resilience.Ignored] event
// (an error once the caller's ctx was done), with how long the call took,
// the fallback function's time included. A call whose ctx is done before it
// starts, or whose op or fallback panics, makes no event. Without an
// observer, the fallback builds no event. Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("fallback: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// New returns a Fallback that answers op's error with fallback(ctx, err).
// fallback's result is what Do returns: nil to recover, or an error of its
// own, which may wrap err. New panics if fallback or an option is nil.
func New(fallback func(ctx context.Context, err error) error, opts ...Option) *Fallback {
	if fallback == nil {
		panic("fallback: New: nil fallback")
	}
	f := &Fallback{alt: fallback}
	for _, o := range opts {
		if o == nil {
			panic("fallback: New: nil Option")
		}
		o.apply(&f.cfg)
	}
	return f
}

// Do calls op and, if it fails with an error the fallback answers, returns
// what the fallback function returns. If ctx is already done, Do returns
// ctx.Err() without calling either. A panic in op propagates; the fallback
// function is not called for it. Do panics if op is nil.
func (f *Fallback) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("fallback: Fallback.Do: nil Op")
	}
	if f.alt == nil {
		panic("fallback: zero Fallback; use New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.cfg.observer != nil {
		return f.doObserved(ctx, op)
	}
	err := op(ctx)
	if !f.cfg.answers(ctx, err) {
		return err
	}
	return f.alt(ctx, err)
}

// doObserved is Do with an observer, which it tells how the call ended.
func (f *Fallback) doObserved(ctx context.Context, op resilience.Op) error {
	start := time.Now()
	err := op(ctx)
	if !f.cfg.answers(ctx, err) {
		f.cfg.observe(ctx, start, event.Outcome(ctx, err), err)
		return err
	}
	res := f.alt(ctx, err)
	f.cfg.observe(ctx, start, resilience.FellBack, err)
	return res
}

// observe tells the observer that a call that started at start ended with
// an event of kind, and err.
func (c *config) observe(ctx context.Context, start time.Time, kind resilience.EventKind, err error) {
	now, took := event.End(start)
	c.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyFallback, Name: c.name, Kind: kind,
		Duration: took, Err: err})
}

// answers reports whether the fallback answers err; c may be nil, for no
// options.
func (c *config) answers(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != context.Canceled && (c == nil || c.when == nil || c.when(err))
}

// Do runs fn under p (or directly, if p is nil) and, if it fails with an
// error the options let through (every error by default, but never after the
// caller cancelled ctx), returns fallback(ctx, err) instead. If ctx is
// already done, Do returns ctx.Err() without calling either. Do panics if
// fn, fallback or an option is nil.
func Do[T any](ctx context.Context, p resilience.Policy, fn func(context.Context) (T, error),
	fallback func(ctx context.Context, err error) (T, error), opts ...Option) (T, error) {
	if fn == nil {
		panic("fallback: Do: nil fn")
	}
	if fallback == nil {
		panic("fallback: Do: nil fallback")
	}
	var cfg *config
	if len(opts) > 0 {
		cfg = new(config)
		for _, o := range opts {
			if o == nil {
				panic("fallback: Do: nil Option")
			}
			o.apply(cfg)
		}
	}
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if cfg != nil && cfg.observer != nil {
		return doObserved(ctx, p, fn, fallback, cfg)
	}
	var (
		v   T
		err error
	)
	if p == nil {
		v, err = fn(ctx)
	} else {
		v, err = resilience.Do(ctx, p, fn)
	}
	if !cfg.answers(ctx, err) {
		return v, err
	}
	return fallback(ctx, err)
}

// doObserved is Do with an observer, in cfg, which it tells how the call
// ended.
func doObserved[T any](ctx context.Context, p resilience.Policy, fn func(context.Context) (T, error),
	fallback func(ctx context.Context, err error) (T, error), cfg *config) (T, error) {
	start := time.Now()
	var (
		v   T
		err error
	)
	if p == nil {
		v, err = fn(ctx)
	} else {
		v, err = resilience.Do(ctx, p, fn)
	}
	if !cfg.answers(ctx, err) {
		cfg.observe(ctx, start, event.Outcome(ctx, err), err)
		return v, err
	}
	v, ferr := fallback(ctx, err)
	cfg.observe(ctx, start, resilience.FellBack, err)
	return v, ferr
}

// Failover returns an Op that calls ops in turn until one succeeds: the
// answer to a single point of failure. Guard each endpoint with policies of
// its own by binding them with [resilience.Wrap]:
//
//	op := fallback.Failover(
//		resilience.Wrap(primaryBreaker, callPrimary),
//		resilience.Wrap(secondaryBreaker, callSecondary),
//	)
//
// When every op fails, the Op returns their errors joined with errors.Join,
// in order. errors.Is and errors.As see each of them: if one endpoint's
// breaker refused while another failed, the result matches
// [resilience.ErrRejected] and carries the refusal's retry-after hint, so a
// retry outside it waits that long or gives up. It stops early, with the
// errors so far, when the caller's ctx is done. Failover panics if there is
// no op or one is nil.
func Failover(ops ...resilience.Op) resilience.Op {
	if len(ops) == 0 {
		panic("fallback: Failover()")
	}
	for i, op := range ops {
		if op == nil {
			panic(fmt.Sprintf("fallback: Failover: nil Op at index %d", i))
		}
	}
	ops = append([]resilience.Op(nil), ops...)
	return func(ctx context.Context) error {
		var errs []error
		for _, op := range ops {
			if err := ctx.Err(); err != nil {
				if errs == nil {
					return err
				}
				return errors.Join(append(errs, err)...)
			}
			err := op(ctx)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}
