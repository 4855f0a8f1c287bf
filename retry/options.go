package retry

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Retrier] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	maxAttempts int
	backoff     Backoff
	newBackOff  func() backoff.BackOff
	retryIf     func(error) bool
	budget      *Budget
	budgetSet   bool
	name        string
	observer    resilience.Observer
	onRetry     func(Event)
}

func defaultConfig() config {
	return config{
		maxAttempts: 3,
		backoff:     FullJitter(100*time.Millisecond, 10*time.Second),
	}
}

// WithMaxAttempts sets how many times at most op is called, the first
// attempt included. Default: 3. n must be at least 1.
func WithMaxAttempts(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("retry: WithMaxAttempts(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.maxAttempts = n })
}

// WithBackoff sets the strategy for the wait before each retry. Default:
// FullJitter(100*time.Millisecond, 10*time.Second). It replaces a
// [WithBackOffFactory].
func WithBackoff(b Backoff) Option {
	return optionFunc(func(c *config) { c.backoff, c.newBackOff = b, nil })
}

// WithBackOffFactory takes the waits from a [backoff.BackOff] of
// github.com/cenkalti/backoff/v4, such as one built with
// backoff.NewExponentialBackOff. Since a BackOff holds state and is not safe
// for concurrent use, newBackOff is called for a fresh one in each call to Do
// that retries. When it returns backoff.Stop, the retrier gives up with
// [BackoffStopped]. Default: none (see [WithBackoff]). newBackOff must not be
// nil.
func WithBackOffFactory(newBackOff func() backoff.BackOff) Option {
	if newBackOff == nil {
		panic("retry: WithBackOffFactory: nil newBackOff")
	}
	return optionFunc(func(c *config) { c.newBackOff = newBackOff })
}

// WithRetryIf sets which errors are worth another attempt. It is asked only
// about errors the retrier would otherwise retry: errors after the caller's
// ctx is done, errors marked [Permanent] and rejections without a usable
// retry-after hint are never retried, whatever it says. Default: every
// error. f must not be nil.
func WithRetryIf(f func(error) bool) Option {
	if f == nil {
		panic("retry: WithRetryIf: nil f")
	}
	return optionFunc(func(c *config) { c.retryIf = f })
}

// WithBudget makes the retrier draw its retries from b, which can be shared
// with other retriers of the same dependency. With nil, retries are bounded
// only by the number of attempts. Default: a budget of its own,
// NewBudget(0.2, 10). b must be nil or made by [NewBudget]: WithBudget
// panics on a zero Budget.
func WithBudget(b *Budget) Option {
	if b != nil && b.deposits == nil {
		panic("retry: WithBudget: zero Budget; use NewBudget")
	}
	return optionFunc(func(c *config) { c.budget, c.budgetSet = b, true })
}

// WithName names the retrier in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the retrier's events to o (see [resilience.Observer]),
// on the goroutine that called Do, with its ctx: a [resilience.Retry] event
// before each wait for a retry, with the attempt that failed, its error and
// the wait; a [resilience.GaveUp] event when the retrier gives up, with the
// [*ExhaustedError]; and, to end each call, a [resilience.Success],
// [resilience.Failure] or [resilience.Ignored] (an error once the caller's
// ctx was done) event with the error Do returns, the attempts made and how
// long the call took. A call whose ctx is done before it starts, or whose op
// panics, makes no event. Without an observer, the retrier builds no event.
// Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("retry: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// WithOnRetry calls f before each wait for a retry, on the goroutine that
// called Do: a view of the [resilience.Retry] events of [WithObserver],
// which carry the same attempt, error and wait, beside the rest of the
// retrier's events, for code that wants the retries alone. Both may be
// given. Default: none. f must not be nil.
func WithOnRetry(f func(Event)) Option {
	if f == nil {
		panic("retry: WithOnRetry: nil f")
	}
	return optionFunc(func(c *config) { c.onRetry = f })
}
