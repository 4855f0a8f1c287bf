package resiliencehttp

import (
	"fmt"
	"net/http"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
)

// An Option configures a [Transport] made by [NewTransport].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	policy    resilience.Policy
	hedge     []hedge.Option
	hedged    bool
	bufferMax int64
	classify  func(*http.Response) bool
	fail500   bool
	drain     int64
}

// maxBuffer bounds WithBufferBody, so that no option can make a Transport
// hold more than a gibibyte of one request.
const maxBuffer = 1 << 30

// WithPolicy sets the policy that each request runs under; each call the
// policy makes to its op is one attempt, one round trip through the next
// RoundTripper. Default: [Standard](). p must not be nil.
func WithPolicy(p resilience.Policy) Option {
	if p == nil {
		panic("resiliencehttp: WithPolicy: nil Policy")
	}
	return optionFunc(func(c *config) { c.policy = p })
}

// WithHedge hedges the round trips of requests that may be sent more than
// once, those a retry may repeat (see the package documentation): a round
// trip whose response has not come after the hedger's delay is sent again
// beside the first, and the first response wins, as package hedge
// describes. A failing status (see [WithClassifier]) starts the next
// hedge at once, and is returned only when every hedge fails. The bodies
// of the responses that lost are drained up to the drain limit and
// closed, and their round trips cancelled; the winner's body stays
// readable after RoundTrip returns. Each call of the policy to its op is
// one hedged round trip, so the policy's retries and breakers see the
// winner only. Other requests are sent once per attempt, unhedged. opts
// configure the hedger as for hedge.New, but for hedge.WithDiscard, which
// the Transport sets. Default: no hedging.
func WithHedge(opts ...hedge.Option) Option {
	for _, o := range opts {
		if o == nil {
			panic("resiliencehttp: WithHedge: nil hedge.Option")
		}
	}
	opts = append([]hedge.Option(nil), opts...)
	return optionFunc(func(c *config) { c.hedge, c.hedged = opts, true })
}

// WithBufferBody makes a request whose method or Idempotency-Key allows a
// retry, but whose body cannot be read again (it has no GetBody), retryable
// by reading the body into memory first, up to maxBytes. A longer body is
// sent whole, in one attempt, without a retry. Default: off, and such a
// request is sent in one attempt. maxBytes must be in [1, 1<<30].
func WithBufferBody(maxBytes int64) Option {
	if maxBytes < 1 || maxBytes > maxBuffer {
		panic(fmt.Sprintf("resiliencehttp: WithBufferBody(%d): want 1 <= maxBytes <= %d", maxBytes, maxBuffer))
	}
	return optionFunc(func(c *config) { c.bufferMax = maxBytes })
}

// WithFailOn500 counts a 500 Internal Server Error as a failure, which a
// retry retries and a breaker counts, besides 408, 429, 502, 503 and 504.
// A 500 often means a bug that the same request meets again, so the
// default counts it as an answer. 501 Not Implemented is never a failure
// by default. [WithClassifier] replaces this option.
func WithFailOn500() Option {
	return optionFunc(func(c *config) { c.fail500 = true })
}

// WithClassifier sets which responses are failures for the policies: f
// reports whether resp is one, reading its status and header, never its
// body. The Transport hands a failure to its policies as a [*StatusError];
// every other response is a success, whatever its status. Default: 408,
// 429, 502, 503 and 504 are failures (and 500 with [WithFailOn500]). f must
// not be nil.
func WithClassifier(f func(resp *http.Response) bool) Option {
	if f == nil {
		panic("resiliencehttp: WithClassifier: nil classifier")
	}
	return optionFunc(func(c *config) { c.classify = f })
}

// WithDrainLimit sets how much of the body of a response that is
// discarded (a failure followed by a retry) is read before it is closed:
// a body read to its end lets HTTP/1.1 reuse the connection, but reading a
// long one costs more than a new connection. Default: 4096 bytes. n must be
// in [0, 1<<30]; 0 closes without reading.
func WithDrainLimit(n int64) Option {
	if n < 0 || n > maxBuffer {
		panic(fmt.Sprintf("resiliencehttp: WithDrainLimit(%d): want 0 <= n <= %d", n, maxBuffer))
	}
	return optionFunc(func(c *config) { c.drain = n })
}

// A HostOption configures the policy [PerHost] returns.
type HostOption interface{ applyHost(*hostConfig) }

type hostOptionFunc func(*hostConfig)

func (f hostOptionFunc) applyHost(c *hostConfig) { f(c) }

type hostConfig struct {
	maxHosts int
	idle     time.Duration
}

// WithMaxHosts caps how many hosts' policies are kept at once: past it, the
// least recently used are dropped, down to three quarters of n. Default:
// 10000. n must be in [1, 1<<24].
func WithMaxHosts(n int) HostOption {
	if n < 1 || n > 1<<24 {
		panic(fmt.Sprintf("resiliencehttp: WithMaxHosts(%d): want 1 <= n <= %d", n, 1<<24))
	}
	return hostOptionFunc(func(c *hostConfig) { c.maxHosts = n })
}

// WithHostIdleTimeout sets how long a host's policy is kept without a call:
// a policy unused for d is dropped at the next sweep, and a later call to
// that host gets a new one from newPolicy. Default: 5 minutes. d must be
// positive.
func WithHostIdleTimeout(d time.Duration) HostOption {
	if d <= 0 {
		panic(fmt.Sprintf("resiliencehttp: WithHostIdleTimeout(%v): want d > 0", d))
	}
	return hostOptionFunc(func(c *hostConfig) { c.idle = d })
}

// A StandardOption replaces a part of the policy [Standard] returns.
type StandardOption interface{ applyStandard(*standardConfig) }

type standardOptionFunc func(*standardConfig)

func (f standardOptionFunc) applyStandard(c *standardConfig) { f(c) }

type standardConfig struct {
	limiter    resilience.Policy
	total      time.Duration
	retry      resilience.Policy
	window     time.Duration
	newBreaker func(host string) resilience.Policy
	attempt    time.Duration
}

// WithLimiter replaces the outermost part of [Standard], which bounds the
// calls in flight, such as a bulkhead or a rate limiter. Default:
// bulkhead.New(1000), which refuses a call beyond 1000 at once without
// waiting. p must not be nil.
func WithLimiter(p resilience.Policy) StandardOption {
	if p == nil {
		panic("resiliencehttp: WithLimiter: nil Policy")
	}
	return standardOptionFunc(func(c *standardConfig) { c.limiter = p })
}

// WithTotalTimeout sets the time a call to [Standard] may take, every
// attempt and wait between them included, up to its response's headers; a
// body read after the call is bounded by it too. Default: 30 seconds. d
// must be positive, and more than the attempt timeout.
func WithTotalTimeout(d time.Duration) StandardOption {
	if d <= 0 {
		panic(fmt.Sprintf("resiliencehttp: WithTotalTimeout(%v): want d > 0", d))
	}
	return standardOptionFunc(func(c *standardConfig) { c.total = d })
}

// WithRetry replaces the retry of [Standard]. Default: retry.New with 3
// attempts, retry.FullJitter(100ms, 2s) waits, and a budget of
// retry.NewBudget(0.2, 10) shared by every host the policy calls. p must not
// be nil.
func WithRetry(p resilience.Policy) StandardOption {
	if p == nil {
		panic("resiliencehttp: WithRetry: nil Policy")
	}
	return standardOptionFunc(func(c *standardConfig) { c.retry = p })
}

// WithBreaker replaces the circuit breaker that [Standard] keeps for each
// host with the policies newBreaker makes (see [PerHost]), and says over
// what span of time they count outcomes: window must be at least twice the
// attempt timeout, so that a breaker sees more than one attempt's worth of
// outcomes before it decides. With a nil newBreaker the default breaker is
// kept with that window. Default: a circuitbreaker.Breaker named after the
// host, that trips when 10% of at least 100 calls in a 30-second window
// failed and stays open 5 seconds. window must be positive.
func WithBreaker(window time.Duration, newBreaker func(host string) resilience.Policy) StandardOption {
	if window <= 0 {
		panic(fmt.Sprintf("resiliencehttp: WithBreaker(%v, ...): want window > 0", window))
	}
	return standardOptionFunc(func(c *standardConfig) { c.window, c.newBreaker = window, newBreaker })
}

// WithAttemptTimeout sets the time each attempt of [Standard] may take, up
// to its response's headers; a body read after the call is bounded by it
// too. Default: 10 seconds. d must be positive, and less than the total
// timeout.
func WithAttemptTimeout(d time.Duration) StandardOption {
	if d <= 0 {
		panic(fmt.Sprintf("resiliencehttp: WithAttemptTimeout(%v): want d > 0", d))
	}
	return standardOptionFunc(func(c *standardConfig) { c.attempt = d })
}
