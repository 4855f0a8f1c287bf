package resilienceotel_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/retry"
)

// TestObserverWithPolicies runs calls through a retry around a circuit
// breaker, and a bulkhead, and checks what the Observer records.
func TestObserverWithPolicies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMeter()
		obs, err := resilienceotel.NewObserver(m.opt())
		require.NoError(t, err)
		ctx := context.Background()

		breaker := circuitbreaker.New(circuitbreaker.WithName("pay"), circuitbreaker.WithConsecutiveFailures(2),
			circuitbreaker.WithObserver(obs))
		r := retry.New(retry.WithName("pay"), retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Second)),
			retry.WithObserver(obs))
		pay := resilience.Chain(r, breaker)

		// A call that fails once, then succeeds after a second's wait.
		fails := 1
		require.NoError(t, pay.Do(ctx, func(context.Context) error {
			if fails > 0 {
				fails--
				return errors.New("connection reset")
			}
			return nil
		}))
		// A call that fails twice, which trips the breaker, whose third
		// attempt the breaker rejects; the retry gives up.
		err = pay.Do(ctx, func(context.Context) error { return errors.New("connection reset") })
		var ex *retry.ExhaustedError
		require.ErrorAs(t, err, &ex)
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)

		// A bulkhead of one slot, taken: the next call is refused.
		reports := bulkhead.New(1, bulkhead.WithName("reports"), bulkhead.WithObserver(obs))
		release := make(chan struct{})
		go reports.Do(ctx, func(context.Context) error { <-release; return nil })
		synctest.Wait()
		require.ErrorIs(t, reports.Do(ctx, nop), bulkhead.ErrFull)
		close(release)
		synctest.Wait()

		assert.Equal(t, []string{
			"resilience.attempts {attempt} histogram {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=3",
			"resilience.attempts {attempt} histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=2",
			"resilience.call.duration s histogram {error.type=*circuitbreaker.OpenError resilience.outcome=rejected resilience.policy.kind=circuitbreaker resilience.policy.name=pay} count=1 sum=0",
			"resilience.call.duration s histogram {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=2",
			"resilience.call.duration s histogram {error.type=_OTHER resilience.outcome=failure resilience.policy.kind=circuitbreaker resilience.policy.name=pay} count=3 sum=0",
			"resilience.call.duration s histogram {error.type=resilience.Rejection resilience.outcome=rejected resilience.policy.kind=bulkhead resilience.policy.name=reports} count=1 sum=0",
			"resilience.call.duration s histogram {resilience.outcome=success resilience.policy.kind=bulkhead resilience.policy.name=reports} count=1 sum=0",
			"resilience.call.duration s histogram {resilience.outcome=success resilience.policy.kind=circuitbreaker resilience.policy.name=pay} count=1 sum=0",
			"resilience.call.duration s histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=1",
			"resilience.calls {call} counter {error.type=*circuitbreaker.OpenError resilience.outcome=rejected resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 1",
			"resilience.calls {call} counter {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} 1",
			"resilience.calls {call} counter {error.type=_OTHER resilience.outcome=failure resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 3",
			"resilience.calls {call} counter {error.type=resilience.Rejection resilience.outcome=rejected resilience.policy.kind=bulkhead resilience.policy.name=reports} 1",
			"resilience.calls {call} counter {resilience.outcome=success resilience.policy.kind=bulkhead resilience.policy.name=reports} 1",
			"resilience.calls {call} counter {resilience.outcome=success resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 1",
			"resilience.calls {call} counter {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} 1",
			"resilience.circuitbreaker.transitions {transition} counter {resilience.cause=consecutive failures resilience.from_state=closed resilience.policy.name=pay resilience.to_state=open} 1",
			"resilience.events {event} counter {error.type=*retry.ExhaustedError resilience.event=gave up resilience.policy.kind=retry resilience.policy.name=pay} 1",
			"resilience.retry.delay s histogram {error.type=_OTHER resilience.policy.kind=retry resilience.policy.name=pay} count=3 sum=3",
		}, m.collect(t, false))
	})
}
