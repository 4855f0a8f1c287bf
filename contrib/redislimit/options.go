package redislimit

import (
	"fmt"
	"time"
)

// An Option configures a [Limiter] made by [New] or a [Keyed] limiter made
// by [NewKeyed].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	maxWait   time.Duration
	timeout   time.Duration
	probe     time.Duration
	mode      mode
	instances int
	observe   func(Event)
}

// WithMaxWait lets Do wait up to d for a token, when Redis predicts one
// within d and before ctx's deadline; otherwise Do refuses at once. The
// token is reserved when Redis answers, and given back if ctx is done
// during the wait and no token was taken after it. Default: 0, refuse at
// once when no token is available. d must not be negative.
func WithMaxWait(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("redislimit: WithMaxWait(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.maxWait = d })
}

// WithTimeout bounds each call to Redis, as ctx's deadline does: a call
// that Redis has not answered within d is decided by the fallback, and one
// whose ctx is done first, or whose ctx's deadline passes first, ends with
// ctx's error and is not counted as a failure of Redis. Default: 100ms. d
// must be positive.
func WithTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("redislimit: WithTimeout(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.timeout = d })
}

// WithProbeInterval sets how long after a call to Redis that got no answer
// the limiter decides calls, for every key, by its fallback alone, without
// asking Redis; the first call after that asks again, and if Redis
// answers, the calls after it do too. This spares callers a timeout each
// while Redis is down, and Redis a crowd of retries as it comes back. An
// error reply does not start the interval: Redis answered. Default: 1s. d
// must not be negative; 0 asks Redis on every call.
func WithProbeInterval(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("redislimit: WithProbeInterval(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.probe = d })
}

// WithFailOpen makes a limiter admit the calls that Redis does not decide:
// while Redis is down, nothing is limited. It is the default; of
// WithFailOpen, [WithFailClosed] and [WithLocalFallback], the last given
// wins.
func WithFailOpen() Option {
	return optionFunc(func(c *config) { c.mode, c.instances = openMode, 0 })
}

// WithFailClosed makes a limiter refuse the calls that Redis does not
// decide, with an [*UnavailableError]: while Redis is down, nothing is
// admitted. Default: fail open ([WithFailOpen]).
func WithFailClosed() Option {
	return optionFunc(func(c *config) { c.mode, c.instances = closedMode, 0 })
}

// WithLocalFallback makes a limiter decide the calls that Redis does not by
// a limiter of this process ([ratelimit.New], or [ratelimit.NewKeyed] for a
// Keyed limiter) of r/instances tokens a second and bursts of
// burst/instances, rounded up: while Redis is down, instances processes
// together admit about what the shared limit would. It refuses with a
// [*LimitedError], as Redis does. Default: fail open ([WithFailOpen]).
// instances must be at least 1, and r/instances at least 1e-6.
func WithLocalFallback(instances int) Option {
	if instances < 1 {
		panic(fmt.Sprintf("redislimit: WithLocalFallback(%d): want instances >= 1", instances))
	}
	return optionFunc(func(c *config) { c.mode, c.instances = localMode, instances })
}

// WithObserver has f called when Redis stops answering (an [Unavailable]
// event) and when it answers again (an [Available] event), to log or count
// the change. An error reply is no such change: Redis answered. f is called
// by the call that saw the change, with no lock held, maybe from several
// goroutines at once; it should return quickly. Events of calls that run at
// once may reach f out of order: an Available event before the Unavailable
// event that it follows, so that the last event f saw need not tell
// whether Redis answers now; [Limiter.Metrics] counts the failed calls.
// Default: none. f must not be nil.
func WithObserver(f func(Event)) Option {
	if f == nil {
		panic("redislimit: WithObserver: nil f")
	}
	return optionFunc(func(c *config) { c.observe = f })
}

// Event tells an observer ([WithObserver]) that Redis stopped answering a
// limiter, or answered it again.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Err is why the call failed, for an Unavailable event.
	Err error
}

// EventKind says what happened.
type EventKind uint8

const (
	// Unavailable: a call to Redis got no answer, and calls are decided
	// by the fallback until one does.
	Unavailable EventKind = iota + 1
	// Available: Redis answered after one or more calls failed.
	Available
)

func (k EventKind) String() string {
	switch k {
	case Unavailable:
		return "unavailable"
	case Available:
		return "available"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}
