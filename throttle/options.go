package throttle

import (
	"fmt"

	"math/rand/v2"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Throttle] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	k          float64
	window     time.Duration
	buckets    int
	recovery   time.Duration
	ceiling    float64
	rejectedIf func(error) bool
	rand       *rand.Rand
	name       string
	observer   resilience.Observer
}

func defaultConfig() config {
	return config{k: 2, window: 2 * time.Minute, buckets: 120, recovery: 5 * time.Second, ceiling: 0.9}
}

// WithK sets the multiplier K of the accepts: the throttle lets requests
// through freely while they number at most K times the accepts, and
// rejects the excess beyond that with rising probability. A K of 2 lets
// about one request the backend rejects through for each it accepts, so
// that the backend sees recovery at once; a K near 1 sheds more and
// recovers more slowly. Default: 2. k must be in [1, 100].
func WithK(k float64) Option {
	if !(k >= 1 && k <= 100) {
		panic(fmt.Sprintf("throttle: WithK(%v): want 1 <= k <= 100", k))
	}
	return optionFunc(func(c *config) { c.k = k })
}

// WithWindow sets the span of time over which requests and accepts are
// counted, and the number of buckets it is cut into: counts leave the
// window a bucket at a time, and memory is fixed at n buckets. A window
// longer than the slowest call keeps a request and its accept together.
// Default: 2 minutes in 120 buckets of a second. d must be at least a
// millisecond and n in [1, 3600], with d/n at least a millisecond.
func WithWindow(d time.Duration, n int) Option {
	if d < time.Millisecond || n < 1 || n > 3600 || d/time.Duration(max(n, 1)) < time.Millisecond {
		panic(fmt.Sprintf("throttle: WithWindow(%v, %d): want d >= 1ms, 1 <= n <= 3600, d/n >= 1ms", d, n))
	}
	return optionFunc(func(c *config) { c.window, c.buckets = d, n })
}

// WithRecovery sets the span of the recent counts: the throttle rejects
// with the lower of the probabilities that the formula gives over the
// whole window and over the last d, so that it opens within about d once
// the backend accepts again, where the window alone would hold the
// overload's requests against it until they leave it (about 80 s of a
// 2-minute window). While the overload lasts, both spans count the same
// ratio of accepts, and the backend sees no more; as it begins, the
// window, slower to fill, decides. d is rounded up to whole buckets.
// Default: 5 seconds; 0 turns it off, for the formula over the window
// alone. d must not be negative.
func WithRecovery(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("throttle: WithRecovery(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.recovery = d })
}

// WithMaxRejection caps the probability of rejecting a request, so that
// some requests always reach the backend and tell when it recovers.
// Default: 0.9. p must be in [0, 1].
func WithMaxRejection(p float64) Option {
	if !(p >= 0 && p <= 1) {
		panic(fmt.Sprintf("throttle: WithMaxRejection(%v): want 0 <= p <= 1", p))
	}
	return optionFunc(func(c *config) { c.ceiling = p })
}

// WithRejectedIf sets which errors mean that the backend refused the
// request for overload, so that it is not an accept. An error once the
// caller's own ctx is done is an accept, whatever f says: the caller gave
// up, not the backend. Default: [DefaultRejectedIf]. f must not be nil.
func WithRejectedIf(f func(error) bool) Option {
	if f == nil {
		panic("throttle: WithRejectedIf: nil f")
	}
	return optionFunc(func(c *config) { c.rejectedIf = f })
}

// WithRand makes the throttle draw its rejections from r, such as
// rand.New(rand.NewPCG(1, 2)) for a test that must repeat. The throttle
// calls r under its lock, so r need not be safe for concurrent use, but
// must not be used elsewhere. Default: the math/rand/v2 top-level
// functions. r must not be nil.
func WithRand(r *rand.Rand) Option {
	if r == nil {
		panic("throttle: WithRand: nil *rand.Rand")
	}
	return optionFunc(func(c *config) { c.rand = r })
}

// WithName names the throttle in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the throttle's events to o (see
// [resilience.Observer]), on the goroutine that called Do, with its ctx: a
// [resilience.Rejected] event for each request rejected locally, with
// [ErrThrottled], and, for each request let through, a
// [resilience.Success], [resilience.Failure] or [resilience.Ignored] (an
// error once the caller's ctx was done) event with op's error and how long
// it took. A call whose ctx is done before it starts makes no event.
// Without an observer, the throttle builds no event. Default: none. o must
// not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("throttle: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}
