package circuitbreaker

import (
	"fmt"
	"math"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Breaker] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	name string

	// Failure-rate rule: trip when failures/calls >= ratio with calls >= minCalls.
	ratePPM  int64 // ratio in parts per million; 0 when the rule is off
	minCalls int64 // 0, once normalized, when neither ratio rule is on
	rateSet  bool  // WithFailureRate was given

	// Slow-call rule: a call that takes slowAfter or longer is slow; trip when
	// slow/calls >= slowPPM with calls >= minCalls.
	slowAfter time.Duration
	slowPPM   int64

	// Consecutive-failure rule: trip after this many failures in a row.
	consecutive int64

	// window makes the windows: count windows or time windows.
	window windowKind
	// clocked says that recording a closed-state outcome needs the time:
	// the window or the slow-call rule uses it.
	clocked bool
	// timed says that a closed-state call reads the clock as it starts:
	// to tell slow calls, or to tell the observer how long it took.
	timed bool

	baseBreak, maxBreak time.Duration
	probes              int

	classify func(error) Outcome
	onChange func(Transition)
	observer resilience.Observer
}

func defaultConfig() config {
	return config{
		ratePPM:   500_000,
		minCalls:  20,
		window:    countKind{size: 100},
		baseBreak: 5 * time.Second,
		maxBreak:  60 * time.Second,
		probes:    3,
	}
}

// newConfig returns the configuration that opts make: the defaults, each
// option applied in order, then normalized. It panics on a nil Option and on
// options that contradict each other.
func newConfig(opts []Option) config {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("circuitbreaker: New: nil Option")
		}
		o.apply(&cfg)
	}
	cfg.normalize()
	return cfg
}

// normalize settles, once, what depends on more than one option: consecutive
// failures alone replace the failure-rate rule; the default minimum of calls
// shrinks to fit a smaller count window, and one given with WithFailureRate
// that does not fit panics; the minimum is 0 when no ratio rule is on, so
// that no success waits for a check; and clocked is derived.
func (c *config) normalize() {
	if c.consecutive > 0 && !c.rateSet {
		c.ratePPM = 0
	}
	if size := c.window.capacity(); c.minCalls > size {
		if !c.rateSet {
			c.minCalls = size
		} else if c.ratePPM > 0 || c.slowPPM > 0 {
			panic(fmt.Sprintf("circuitbreaker: WithFailureRate minimum of %d calls exceeds WithCountWindow(%d): the breaker could never trip",
				c.minCalls, size))
		}
	}
	if c.ratePPM == 0 && c.slowPPM == 0 {
		c.minCalls = 0
	}
	c.clocked = c.slowAfter > 0 || c.window.clocked()
	c.timed = c.slowAfter > 0 || c.observer != nil
}

// overThreshold returns the ratio rule that a window's counts trip the
// breaker by, [resilience.FailureRate] before [resilience.SlowCallRate], or
// 0 for none.
func (c *config) overThreshold(n counts) resilience.Cause {
	switch {
	case n.calls == 0 || n.calls < c.minCalls:
		return 0
	case c.ratePPM > 0 && n.failures*1e6 >= c.ratePPM*n.calls:
		return resilience.FailureRate
	case c.slowPPM > 0 && n.slow*1e6 >= c.slowPPM*n.calls:
		return resilience.SlowCallRate
	}
	return 0
}

// breakDuration returns the break after reopens consecutive re-opens: the
// base doubled once per re-open, capped at the maximum, then spread by ±20%
// by jitter, in [0, 1], without passing the maximum (the spread stays below
// it, so that breakers at the maximum do not all end together).
func (c *config) breakDuration(reopens int, jitter float64) time.Duration {
	d := c.baseBreak
	for i := 0; i < reopens && d < c.maxBreak; i++ {
		if d > c.maxBreak/2 {
			d = c.maxBreak
			break
		}
		d *= 2
	}
	d = min(d, c.maxBreak)
	lo := float64(d) * 0.8
	hi := min(float64(d)*1.2, float64(c.maxBreak))
	return time.Duration(lo + (hi-lo)*jitter)
}

// WithName names the breaker in its errors, transitions and events.
// Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithFailureRate sets the failure-rate rule: the breaker trips once the
// window holds at least minCalls outcomes and failures make up ratio or more
// of them. The rule is checked after every recorded outcome, so a success can
// complete the minimum. Default: 0.5 and 20 (or the size of a smaller count
// window). ratio must be in [1e-6, 1] and minCalls at least 1, and at most
// the size of a count window.
func WithFailureRate(ratio float64, minCalls int) Option {
	if !(ratio >= 1e-6 && ratio <= 1) {
		panic(fmt.Sprintf("circuitbreaker: WithFailureRate(%v, %d): want 1e-6 <= ratio <= 1", ratio, minCalls))
	}
	if minCalls < 1 {
		panic(fmt.Sprintf("circuitbreaker: WithFailureRate(%v, %d): want minCalls >= 1", ratio, minCalls))
	}
	return optionFunc(func(c *config) {
		c.ratePPM, c.minCalls, c.rateSet = ppm(ratio), int64(minCalls), true
	})
}

// WithConsecutiveFailures trips the breaker after n failures in a row. Used
// without [WithFailureRate], it replaces the failure-rate rule; used with it,
// either rule trips the breaker. Default: off. n must be at least 1.
func WithConsecutiveFailures(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("circuitbreaker: WithConsecutiveFailures(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.consecutive = int64(n) })
}

// WithSlowCalls counts a call that takes threshold or longer as slow, whether
// it succeeds or fails, and trips the breaker once slow calls make up ratio or
// more of the window (with the minimum number of calls of the failure-rate
// rule). In the half-open state a slow probe counts as a failed one. Measuring
// a call's duration costs two clock reads per call. Default: off. threshold
// must be positive and ratio in [1e-6, 1].
func WithSlowCalls(threshold time.Duration, ratio float64) Option {
	if threshold <= 0 {
		panic(fmt.Sprintf("circuitbreaker: WithSlowCalls(%v, %v): want threshold > 0", threshold, ratio))
	}
	if !(ratio >= 1e-6 && ratio <= 1) {
		panic(fmt.Sprintf("circuitbreaker: WithSlowCalls(%v, %v): want 1e-6 <= ratio <= 1", threshold, ratio))
	}
	return optionFunc(func(c *config) { c.slowAfter, c.slowPPM = threshold, ppm(ratio) })
}

// WithCountWindow makes the window the last n recorded calls. This is the
// default, with n = 100. n must be in [1, 100000].
func WithCountWindow(n int) Option {
	if n < 1 || n > maxCountWindow {
		panic(fmt.Sprintf("circuitbreaker: WithCountWindow(%d): want 1 <= n <= %d", n, maxCountWindow))
	}
	return optionFunc(func(c *config) { c.window = countKind{size: int64(n)} })
}

// WithTimeWindow makes the window the calls recorded in the last span of
// time, kept in buckets of span/buckets each on the monotonic clock: the
// window slides one bucket at a time. A time window reads the clock once per
// call. Default: a count window. span must be positive, buckets in [1, 100],
// and span/buckets at least a millisecond.
func WithTimeWindow(span time.Duration, buckets int) Option {
	if span <= 0 || buckets < 1 || buckets > maxBuckets || span/time.Duration(buckets) < time.Millisecond {
		panic(fmt.Sprintf("circuitbreaker: WithTimeWindow(%v, %d): want span > 0, 1 <= buckets <= %d and span/buckets >= 1ms",
			span, buckets, maxBuckets))
	}
	return optionFunc(func(c *config) { c.window = timeKind{span: span, buckets: int64(buckets)} })
}

// WithBreakDuration sets how long the breaker stays open: base after it trips,
// doubled on each consecutive re-open (a failed half-open probe) up to max,
// and spread by ±20% jitter, never past max, so that a fleet's probes do not
// arrive together. Closing resets it to base. Default: 5s and 60s. base must
// be positive and max at least base.
func WithBreakDuration(base, max time.Duration) Option {
	if base <= 0 || max < base {
		panic(fmt.Sprintf("circuitbreaker: WithBreakDuration(%v, %v): want 0 < base <= max", base, max))
	}
	return optionFunc(func(c *config) { c.baseBreak, c.maxBreak = base, max })
}

// WithHalfOpenProbes sets how many calls the half-open breaker admits at once
// as probes, and how many of them must succeed to close it; the first that
// fails re-opens it. A probe silent for a whole break is counted as lost and
// its slot goes to the next call. Default: 3. n must be in [1, 1000].
func WithHalfOpenProbes(n int) Option {
	if n < 1 || n > maxProbes {
		panic(fmt.Sprintf("circuitbreaker: WithHalfOpenProbes(%d): want 1 <= n <= %d", n, maxProbes))
	}
	return optionFunc(func(c *config) { c.probes = n })
}

// WithClassifier sets how a non-nil error counts: as a [Success], a [Failure]
// or [Ignore]d (recorded nowhere, and a half-open probe's slot is returned).
// A nil error is always a success, and in [Breaker.Do] an error that comes
// after the caller's own ctx is done is always ignored. Default:
// [DefaultClassifier]. f must not be nil.
func WithClassifier(f func(error) Outcome) Option {
	if f == nil {
		panic("circuitbreaker: WithClassifier: nil classifier")
	}
	return optionFunc(func(c *config) { c.classify = f })
}

// WithObserver sends the breaker's events to o (see
// [resilience.Observer]): each call of [Breaker.Do] ends with a
// [resilience.Success], [resilience.Failure], [resilience.Ignored] or
// [resilience.Rejected] event, with how long it took (a rejection's Delay is
// its retry-after hint), and each change of state is a
// [resilience.StateChange] event with the states' names (see
// [State.String]), its [resilience.Cause], and, into Open, the break in
// Delay. State changes are delivered as [WithOnStateChange] delivers them,
// with no lock held, in order; the ctx of a call's events, and of the
// changes that call delivers, is the call's, and context.Background() for
// the events of [Breaker.Allow] and of the other methods. A call whose op
// panics ends with no event. Without an observer, the breaker builds no
// event. Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("circuitbreaker: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// WithOnStateChange calls f after every change of state, in the order the
// changes happened, with no lock held, on the goroutine of a call that made
// or followed the change: the call that tripped the breaker, a probe, a
// manual method, State or Metrics. Nothing is delivered on the path of a
// call that changes no state. If f panics, the breaker stays consistent,
// keeps no permit, delivers the changes still queued, and the panic goes on
// in the call that delivered them; for a call whose op panicked, the op's
// panic goes on and the changes wait for the next call. It is a view of the
// [resilience.StateChange] events of [WithObserver] as [Transition]s, which
// add the generation and the window's metrics; both may be given. Default:
// none. f must not be nil.
func WithOnStateChange(f func(Transition)) Option {
	if f == nil {
		panic("circuitbreaker: WithOnStateChange: nil observer")
	}
	return optionFunc(func(c *config) { c.onChange = f })
}

// Limits on sizes, so that no option can make a breaker allocate without
// bound.
const (
	maxCountWindow = 100_000
	maxBuckets     = 100
	maxProbes      = 1000
)

// ppm converts a ratio in (0, 1] to parts per million, so that thresholds
// compare in integers: 0.1 of 30 calls is exactly 3.
func ppm(ratio float64) int64 { return int64(math.Round(ratio * 1e6)) }
