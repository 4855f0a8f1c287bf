package resiliencehttp

import (
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// Standard returns the policy that suits most HTTP clients, for
// [WithPolicy]; it is also the Transport's default. Outermost first, as in
// .NET's standard resilience handler, with numbers for Go:
//
//   - a limiter of the calls in flight: bulkhead.New(1000), which refuses a
//     call beyond 1000 at once ([WithLimiter]);
//   - a total timeout of 30 seconds, every attempt and wait included
//     ([WithTotalTimeout]);
//   - a retry of 3 attempts at most, waits drawn by
//     retry.FullJitter(100ms, 2s) or asked for by Retry-After, and a retry
//     budget of retry.NewBudget(0.2, 10) shared by every host, so that
//     retries add a fifth to the load of a failing server at most, and
//     that never retries a refusal ([WithRetry]);
//   - a circuit breaker per host ([PerHost]) that trips when 10% of at
//     least 100 calls in a 30-second window failed, and stays open 5
//     seconds, doubling up to a minute while it keeps failing
//     ([WithBreaker]);
//   - an attempt timeout of 10 seconds ([WithAttemptTimeout]).
//
// The breaker sits inside the retry, so that it counts every attempt and a
// retry stops at once when it opens: the call fails fast with the breaker's
// refusal instead of waiting out the break, which would hold its place in
// the limiter while the server is known to be down. It sits outside the
// attempt timeout, so that an attempt that times out counts as a failure.
// Both timeouts bound the reading of the response's body too (see the
// package documentation): raise them for large downloads.
//
// Each call to Standard makes new breakers and a new budget: make one
// policy per Transport, or per group of Transports that call the same
// servers. Standard panics if an option is nil, if the attempt timeout is
// not below the total timeout, or if the breaker's window is shorter than
// twice the attempt timeout.
func Standard(opts ...StandardOption) resilience.Policy {
	cfg := standardConfig{total: 30 * time.Second, window: 30 * time.Second, attempt: 10 * time.Second}
	for _, o := range opts {
		if o == nil {
			panic("resiliencehttp: Standard: nil StandardOption")
		}
		o.applyStandard(&cfg)
	}
	if cfg.attempt >= cfg.total {
		panic(fmt.Sprintf("resiliencehttp: Standard: the attempt timeout %v is not below the total timeout %v", cfg.attempt, cfg.total))
	}
	if cfg.window < 2*cfg.attempt {
		panic(fmt.Sprintf("resiliencehttp: Standard: the breaker's window %v is shorter than twice the attempt timeout %v", cfg.window, cfg.attempt))
	}
	if cfg.limiter == nil {
		cfg.limiter = bulkhead.New(1000)
	}
	if cfg.retry == nil {
		cfg.retry = retry.New(retry.WithMaxAttempts(3),
			retry.WithBackoff(retry.FullJitter(100*time.Millisecond, 2*time.Second)),
			retry.WithBudget(retry.NewBudget(0.2, 10)),
			retry.WithRetryIf(notRefused))
	}
	if cfg.newBreaker == nil {
		window := cfg.window
		if window < time.Millisecond {
			panic(fmt.Sprintf("resiliencehttp: Standard: the default breaker's window %v is shorter than a millisecond", window))
		}
		buckets := int(min(window/time.Millisecond, 10))
		cfg.newBreaker = func(host string) resilience.Policy {
			return circuitbreaker.New(circuitbreaker.WithName(host),
				circuitbreaker.WithTimeWindow(window, buckets),
				circuitbreaker.WithFailureRate(0.1, 100),
				circuitbreaker.WithBreakDuration(5*time.Second, time.Minute))
		}
	}
	return resilience.Chain(cfg.limiter, timeout.New(cfg.total), cfg.retry, PerHost(cfg.newBreaker), timeout.New(cfg.attempt))
}

// notRefused is the default retry's rule: every error but a refusal, which
// matches resilience.ErrRejected, is worth another attempt.
func notRefused(err error) bool { return !errors.Is(err, resilience.ErrRejected) }
