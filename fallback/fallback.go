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
package fallback

import (
	"context"
	"errors"
	"fmt"

	"github.com/resilience-go/resilience"
)

// Fallback calls a function of its own when op fails. Make one with [New];
// it is safe for concurrent use if its function is. The zero value is not
// usable.
type Fallback struct {
	alt func(ctx context.Context, err error) error
	cfg config
}

var _ resilience.Policy = (*Fallback)(nil)

type config struct {
	when func(error) bool
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
		panic("fallback: WithFallbackIf(nil)")
	}
	return optionFunc(func(c *config) { c.when = pred })
}

// New returns a Fallback that answers op's error with alt(ctx, err). alt's
// result is what Do returns: nil to recover, or an error of its own, which
// may wrap err. New panics if alt is nil.
func New(alt func(ctx context.Context, err error) error, opts ...Option) *Fallback {
	if alt == nil {
		panic("fallback: New(nil)")
	}
	f := &Fallback{alt: alt}
	for _, o := range opts {
		o.apply(&f.cfg)
	}
	return f
}

// Do calls op and, if it fails with an error the fallback answers, returns
// what the fallback function returns. If ctx is already done, Do returns
// ctx.Err() without calling either. A panic in op propagates; the fallback
// function is not called for it.
func (f *Fallback) Do(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := op(ctx)
	if !f.cfg.answers(ctx, err) {
		return err
	}
	return f.alt(ctx, err)
}

// answers reports whether the fallback answers err; c may be nil, for no
// options.
func (c *config) answers(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != context.Canceled && (c == nil || c.when == nil || c.when(err))
}

// Do runs fn under p (or directly, if p is nil) and, if it fails with an
// error the options let through (every error by default, but never after the
// caller cancelled ctx), returns alt(ctx, err) instead. If ctx is already
// done, Do returns ctx.Err() without calling either.
func Do[T any](ctx context.Context, p resilience.Policy, fn func(context.Context) (T, error),
	alt func(ctx context.Context, err error) (T, error), opts ...Option) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	var cfg *config
	if len(opts) > 0 {
		cfg = new(config)
		for _, o := range opts {
			o.apply(cfg)
		}
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
	return alt(ctx, err)
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
			panic(fmt.Sprintf("fallback: Failover: op %d is nil", i))
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
