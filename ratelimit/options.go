package ratelimit

import (
	"fmt"
	"time"
)

// An Option configures a [Limiter] made by [New] or [FromLimiter], or a
// [Keyed] limiter made by [NewKeyed].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	maxWait time.Duration
	maxKeys int
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
