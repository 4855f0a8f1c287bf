package hedge

import (
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Hedger] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	delay     time.Duration // with quantile 0
	quantile  float64
	window    time.Duration
	maxHedges int
	extraLoad float64
	budget    Budget
	retryIf   func(error) bool
	discard   func(any)
	name      string
	observer  resilience.Observer
}

func defaultConfig() config {
	return config{quantile: 0.95, window: 30 * time.Second, maxHedges: 1, extraLoad: 0.05}
}

// MaxHedges is the most hedges [WithMaxHedges] allows: five attempts in
// all, as gRPC's hedging policy allows.
const MaxHedges = 4

// WithDelay hedges a call that has not ended after d, and each hedge that
// has not ended after another d, up to [WithMaxHedges]. A d of 0 starts
// every attempt at once. Prefer [WithQuantileDelay] where latencies move:
// a fixed delay below the latency of a slow backend hedges every call, and
// only the extra-load cap ([WithMaxExtraLoad]) holds the load back. It
// replaces WithQuantileDelay. Default: the 95th percentile of recent
// latencies. d must be in [0, 1h].
func WithDelay(d time.Duration) Option {
	if d < 0 || d > time.Hour {
		panic(fmt.Sprintf("hedge: WithDelay(%v): want 0 <= d <= 1h", d))
	}
	return optionFunc(func(c *config) { c.delay, c.quantile = d, 0 })
}

// WithQuantileDelay hedges a call that has not ended after the q quantile
// of the latencies of the first attempts of calls over the last window:
// with q = 0.95, about one call in twenty is hedged, as "The Tail at Scale"
// advises. Until the window holds 100 latencies, calls are hedged only
// after a retryable failure. Latencies are kept in a histogram of fixed
// size (about 12 KB: buckets 6.25% wide, four rotating parts of the
// window), and the quantile is recomputed every 64 latencies recorded and
// when a part rotates, so that a call reads it for the price of an atomic
// load. The latencies recorded are those of first attempts that succeed,
// and, for a first attempt passed over for a hedge, how long it had run: a
// lower bound, above the delay, that keeps the quantile honest while
// hedges win; fast failures are left out, as they would pull it down. It
// replaces [WithDelay]. Default: q = 0.95 over 30 seconds. q must be in
// [0.5, 0.9999] and window in [1s, 1h].
func WithQuantileDelay(q float64, window time.Duration) Option {
	if !(q >= 0.5 && q <= 0.9999) || window < time.Second || window > time.Hour {
		panic(fmt.Sprintf("hedge: WithQuantileDelay(%v, %v): want 0.5 <= q <= 0.9999, 1s <= window <= 1h", q, window))
	}
	return optionFunc(func(c *config) { c.quantile, c.window = q, window })
}

// WithMaxHedges sets how many hedges at most a call may add to its first
// attempt. Default: 1. n must be in [1, MaxHedges].
func WithMaxHedges(n int) Option {
	if n < 1 || n > MaxHedges {
		panic(fmt.Sprintf("hedge: WithMaxHedges(%d): want 1 <= n <= %d", n, MaxHedges))
	}
	return optionFunc(func(c *config) { c.maxHedges = n })
}

// WithMaxExtraLoad caps the hedges to ratio of the calls: every call
// deposits ratio of a token and every hedge takes a whole one, with at
// most 10 tokens saved, so that the hedges of a long run add at most
// ratio to the load the calls make, however slow the backend gets.
// Default: 0.05. ratio must be in [0.001, 4].
func WithMaxExtraLoad(ratio float64) Option {
	if !(ratio >= 0.001 && ratio <= 4) {
		panic(fmt.Sprintf("hedge: WithMaxExtraLoad(%v): want 0.001 <= ratio <= 4", ratio))
	}
	return optionFunc(func(c *config) { c.extraLoad = ratio })
}

// Budget is a shared allowance of extra attempts, such as a
// *retry.Budget: a hedger deposits once per call, and withdraws once per
// hedge, with the time the hedge would start; Withdraw reports whether the
// budget allows it.
type Budget interface {
	Deposit()
	Withdraw(now time.Time) bool
}

// WithBudget makes every hedge draw a token from b too, besides the
// extra-load cap: share b with the retriers of the same dependency, so
// that retries and hedges together stay within it. Default: none. b must
// not be nil.
func WithBudget(b Budget) Option {
	if b == nil {
		panic("hedge: WithBudget: nil Budget")
	}
	return optionFunc(func(c *config) { c.budget = b })
}

// WithRetryIf sets which errors start the next hedge at once: an attempt
// that fails with one leaves the others running, and the call goes on. An
// error f refuses ends the call with that error, and cancels the other
// attempts. Errors once the caller's ctx is done and rejections by an inner
// policy ([resilience.ErrRejected]) always end the call. Default: every
// error. f must not be nil.
func WithRetryIf(f func(error) bool) Option {
	if f == nil {
		panic("hedge: WithRetryIf: nil f")
	}
	return optionFunc(func(c *config) { c.retryIf = f })
}

// WithDiscard sets what to do with the value of an attempt that lost,
// when the call goes through [resilience.Do]: f is handed each such value,
// on the goroutine that called resilience.Do, before it returns, such as
// an *http.Response whose body must be closed. Values of an op called
// through [Hedger.Do] are unknown to the hedger. Default: none. f must not
// be nil.
func WithDiscard(f func(v any)) Option {
	if f == nil {
		panic("hedge: WithDiscard: nil f")
	}
	return optionFunc(func(c *config) { c.discard = f })
}

// WithName names the hedger in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the hedger's events to o (see
// [resilience.Observer]), with the caller's ctx: a [resilience.Started]
// event for each hedge, with its number in Attempt (2 for the first hedge)
// and the delay after which it started (0 for a hedge a failure started),
// on the goroutine that runs the hedge; and, to end each call, on the
// goroutine that called Do, a [resilience.Success], [resilience.Failure]
// or [resilience.Ignored] (an error once the caller's ctx was done) event
// with the error Do returns, the attempts started and how long the call
// took. A call whose ctx is done before it starts, or whose op panics,
// makes no ending event. Without an observer, the hedger builds no event.
// Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("hedge: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}
