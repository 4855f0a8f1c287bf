package ratelimit

import (
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Limiter] made by [New] or [FromLimiter], or a
// [Keyed] limiter made by [NewKeyed].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	maxWait  time.Duration
	maxKeys  int
	name     string
	observer resilience.Observer
}

// WithMaxWait lets Do wait up to d for a token, when the bucket predicts
// one within d and before ctx's deadline; otherwise Do refuses at once.
// Default: 0, refuse at once when no token is available. d must not be
// negative.
func WithMaxWait(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("ratelimit: WithMaxWait(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.maxWait = d })
}

// WithName names the limiter in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the limiter's events to o (see [resilience.Observer]),
// on the goroutine that called [Limiter.Do] or [Keyed.DoKey], with its ctx:
// each call ends with a [resilience.Rejected] event, whose Delay is the
// refusal's retry-after hint, when the limiter refused it, and otherwise
// with a [resilience.Success], [resilience.Failure] or [resilience.Ignored]
// event (an error once the caller's ctx was done, the wait for a token cut
// short included), with how long the call took, the wait for its token
// included. A call whose ctx is done before it starts, or whose op panics,
// makes no event; so do Allow, Reserve and their keyed forms, which make no
// call. Without an observer, the limiter builds no event. Default: none. o
// must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("ratelimit: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// WithMaxKeys bounds the number of keys a [Keyed] limiter keeps. When a new
// key would pass it, keys whose bucket is full (idle long enough to forget)
// are dropped first, and then, if it must, keys still in use, down to three
// quarters of n; those start again with a full bucket. Default: 100000. n
// must be at least 1. Limiters made by New and FromLimiter ignore it.
func WithMaxKeys(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("ratelimit: WithMaxKeys(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.maxKeys = n })
}
