package resilienceotel_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/saga"
)

func nop(context.Context) error { return nil }

// breakerLines returns the series of resilience.circuitbreaker.state of a
// breaker named name in state, 1 for state and 0 for the others.
func breakerLines(name, state string) []string {
	var out []string
	for _, s := range []string{"closed", "disabled", "forced-open", "half-open", "metrics-only", "open"} {
		v := "0"
		if s == state {
			v = "1"
		}
		out = append(out, "resilience.circuitbreaker.state 1 updowncounter {resilience.policy.name="+name+" resilience.state="+s+"} "+v)
	}
	return out
}

func TestRegisterBreaker(t *testing.T) {
	m := newMeter()
	b := circuitbreaker.New(circuitbreaker.WithName("pay"))
	other := circuitbreaker.New(circuitbreaker.WithName("ship"))
	reg, err := resilienceotel.RegisterBreaker(b, m.opt())
	require.NoError(t, err)
	regOther, err := resilienceotel.RegisterBreaker(other, m.opt())
	require.NoError(t, err)
	other.MetricsOnly()

	assert.Equal(t, append(breakerLines("pay", "closed"), breakerLines("ship", "metrics-only")...), m.collect(t, false))
	b.ForceOpen()
	assert.Equal(t, append(breakerLines("pay", "forced-open"), breakerLines("ship", "metrics-only")...), m.collect(t, false))

	require.NoError(t, reg.Unregister())
	assert.Equal(t, breakerLines("ship", "metrics-only"), m.collect(t, false), "after Unregister")
	require.NoError(t, regOther.Unregister())
	assert.Empty(t, m.collect(t, false))
}

func TestRegisterBulkhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMeter()
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Hour), bulkhead.WithMaxQueue(1))
		reg, err := resilienceotel.RegisterBulkhead(b, "reports", 1, m.opt())
		require.NoError(t, err)
		defer reg.Unregister()
		ctx := context.Background()

		release := make(chan struct{})
		go b.Do(ctx, func(context.Context) error { <-release; return nil })
		synctest.Wait()
		go b.Do(ctx, nop) // waits for the slot
		synctest.Wait()
		require.ErrorIs(t, b.Do(ctx, nop), bulkhead.ErrFull, "the queue is full")

		assert.Equal(t, []string{
			"resilience.bulkhead.inflight {call} updowncounter {resilience.policy.name=reports} 1",
			"resilience.bulkhead.limit {call} updowncounter {resilience.policy.name=reports} 1",
			"resilience.bulkhead.queued {call} updowncounter {resilience.policy.name=reports} 1",
			"resilience.bulkhead.rejected {call} counter {resilience.policy.name=reports} 1",
		}, m.collect(t, false))

		close(release)
		synctest.Wait()
		assert.Equal(t, []string{
			"resilience.bulkhead.inflight {call} updowncounter {resilience.policy.name=reports} 0",
			"resilience.bulkhead.limit {call} updowncounter {resilience.policy.name=reports} 1",
			"resilience.bulkhead.queued {call} updowncounter {resilience.policy.name=reports} 0",
			"resilience.bulkhead.rejected {call} counter {resilience.policy.name=reports} 1",
		}, m.collect(t, false))
	})
}

func TestRegisterBulkheadNoLimit(t *testing.T) {
	m := newMeter()
	reg, err := resilienceotel.RegisterBulkhead(bulkhead.New(4), "", 0, m.opt())
	require.NoError(t, err)
	defer reg.Unregister()
	assert.Equal(t, []string{
		"resilience.bulkhead.inflight {call} updowncounter {resilience.policy.name=} 0",
		"resilience.bulkhead.queued {call} updowncounter {resilience.policy.name=} 0",
		"resilience.bulkhead.rejected {call} counter {resilience.policy.name=} 0",
	}, m.collect(t, false))
}

func TestRegisterLimiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMeter()
		l := ratelimit.New(1, 1)
		k := ratelimit.NewKeyed(1, 1)
		reg, err := resilienceotel.RegisterLimiter(l, "api", m.opt())
		require.NoError(t, err)
		defer reg.Unregister()
		regKeyed, err := resilienceotel.RegisterKeyedLimiter(k, "tenants", m.opt())
		require.NoError(t, err)
		defer regKeyed.Unregister()

		ctx := context.Background()
		require.NoError(t, l.Do(ctx, nop))
		require.ErrorIs(t, l.Do(ctx, nop), ratelimit.ErrLimited)
		for _, key := range []string{"a", "b", "a", "a"} {
			_ = k.DoKey(ctx, key, nop)
		}
		assert.Equal(t, []string{
			"resilience.ratelimit.keys {key} updowncounter {resilience.policy.name=tenants} 2",
			"resilience.ratelimit.rejected {call} counter {resilience.policy.name=api} 1",
			"resilience.ratelimit.rejected {call} counter {resilience.policy.name=tenants} 2",
		}, m.collect(t, false))
	})
}

// publisherFunc publishes a batch with a function.
type publisherFunc func(ctx context.Context, msgs []outbox.Message) []error

func (f publisherFunc) Publish(ctx context.Context, msgs []outbox.Message) []error {
	return f(ctx, msgs)
}

func TestRegisterOutbox(t *testing.T) {
	ctx := context.Background()
	db := servicetest.SQLite(t)
	ob := outbox.New(db.DB, outbox.SQLite)
	require.NoError(t, ob.Migrate(ctx))
	m := newMeter()
	reg, err := resilienceotel.RegisterOutbox(ob, "orders", m.opt())
	require.NoError(t, err)
	defer reg.Unregister()

	assert.Equal(t, []string{
		"resilience.outbox.backlog {message} updowncounter {resilience.policy.name=orders} 0",
		"resilience.outbox.dead {message} updowncounter {resilience.policy.name=orders} 0",
		"resilience.outbox.oldest_age s gauge {resilience.policy.name=orders} 0",
	}, m.collect(t, false), "empty")

	// Of three messages, one is published and one fails for good; then one
	// more is written.
	require.NoError(t, ob.Enqueue(ctx, db.DB,
		outbox.Message{Topic: "ok"}, outbox.Message{Topic: "poison"}))
	relay := ob.NewRelay(publisherFunc(func(_ context.Context, msgs []outbox.Message) []error {
		errs := make([]error, len(msgs))
		for i, msg := range msgs {
			if msg.Topic == "poison" {
				errs[i] = errors.New("rejected by the broker")
			}
		}
		return errs
	}), outbox.WithMaxAttempts(1))
	n, err := relay.Process(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "published")
	require.NoError(t, ob.Enqueue(ctx, db.DB, outbox.Message{Topic: "later"}))

	got := m.collect(t, false)
	require.Len(t, got, 3)
	assert.Equal(t, "resilience.outbox.backlog {message} updowncounter {resilience.policy.name=orders} 1", got[0])
	assert.Equal(t, "resilience.outbox.dead {message} updowncounter {resilience.policy.name=orders} 1", got[1])
	prefix := "resilience.outbox.oldest_age s gauge {resilience.policy.name=orders} "
	require.True(t, strings.HasPrefix(got[2], prefix), got[2])
	age, err := strconv.ParseFloat(strings.TrimPrefix(got[2], prefix), 64)
	require.NoError(t, err)
	assert.True(t, age >= 0 && age < 60, "oldest age %v s", age)
}

func TestRegisterOutboxError(t *testing.T) {
	db := servicetest.SQLite(t)
	ob := outbox.New(db.DB, outbox.SQLite) // not migrated: no table
	m := newMeter()
	reg, err := resilienceotel.RegisterOutbox(ob, "orders", m.opt())
	require.NoError(t, err)
	defer reg.Unregister()
	var rm metricdata.ResourceMetrics
	err = m.r.Collect(context.Background(), &rm)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `resilienceotel: outbox "orders": outbox: backlog:`)
	assert.Empty(t, lines(t, rm, false), "nothing reported")
}

func TestRegisterSagas(t *testing.T) {
	ctx := context.Background()
	db := servicetest.SQLite(t)
	require.NoError(t, saga.Migrate(ctx, db.DB, saga.SQLite))
	c := saga.New(saga.WithStore(db.DB, saga.SQLite), saga.WithAttempts(1, time.Millisecond, time.Millisecond))
	m := newMeter()
	reg, err := resilienceotel.RegisterSagas(c, "checkout", m.opt())
	require.NoError(t, err)
	defer reg.Unregister()

	step := func(err error) saga.StepFunc {
		return func(context.Context, *saga.Call) error { return err }
	}
	ok := saga.Define("ok", 1, saga.Step("reserve", step(nil), step(nil)))
	require.NoError(t, c.Run(ctx, ok, "order-1", nil))
	// charge fails; the refund of reserve fails too, and is left to
	// recovery.
	bad := saga.Define("bad", 1,
		saga.Step("reserve", step(nil), step(errors.New("refund failed"))),
		saga.Step("charge", step(errors.New("card declined")), nil))
	var se *saga.Error
	require.ErrorAs(t, c.Run(ctx, bad, "order-2", nil), &se)
	require.Equal(t, saga.Compensating, se.Status)

	assert.Equal(t, []string{
		"resilience.saga.ended {saga} counter {resilience.policy.name=checkout resilience.saga.status=compensated} 0",
		"resilience.saga.ended {saga} counter {resilience.policy.name=checkout resilience.saga.status=succeeded} 1",
		"resilience.saga.instances {saga} updowncounter {resilience.policy.name=checkout resilience.saga.status=compensating} 1",
		"resilience.saga.instances {saga} updowncounter {resilience.policy.name=checkout resilience.saga.status=confirming} 0",
		"resilience.saga.instances {saga} updowncounter {resilience.policy.name=checkout resilience.saga.status=running} 0",
		"resilience.saga.instances {saga} updowncounter {resilience.policy.name=checkout resilience.saga.status=stuck} 0",
		"resilience.saga.orphaned {saga} updowncounter {resilience.policy.name=checkout} 0",
		"resilience.saga.started {saga} counter {resilience.policy.name=checkout} 2",
	}, m.collect(t, false))
}

// TestRegisterSagasInMemory checks that a coordinator with no store reports
// its counts, and no error for the store it does not have.
func TestRegisterSagasInMemory(t *testing.T) {
	c := saga.New()
	m := newMeter()
	reg, err := resilienceotel.RegisterSagas(c, "checkout", m.opt())
	require.NoError(t, err)
	defer reg.Unregister()
	def := saga.Define("ok", 1, saga.Step("reserve", func(context.Context, *saga.Call) error { return nil }, nil))
	require.NoError(t, c.Run(context.Background(), def, "order-1", nil))
	assert.Equal(t, []string{
		"resilience.saga.ended {saga} counter {resilience.policy.name=checkout resilience.saga.status=compensated} 0",
		"resilience.saga.ended {saga} counter {resilience.policy.name=checkout resilience.saga.status=succeeded} 1",
		"resilience.saga.started {saga} counter {resilience.policy.name=checkout} 1",
	}, m.collect(t, false))
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"breaker", func() { _, _ = resilienceotel.RegisterBreaker(nil) }, "resilienceotel: RegisterBreaker: nil Breaker"},
		{"bulkhead", func() { _, _ = resilienceotel.RegisterBulkhead(nil, "", 0) }, "resilienceotel: RegisterBulkhead: nil Bulkhead"},
		{"bulkhead limit", func() { _, _ = resilienceotel.RegisterBulkhead(bulkhead.New(1), "", -1) }, "resilienceotel: RegisterBulkhead: limit -1: want >= 0"},
		{"limiter", func() { _, _ = resilienceotel.RegisterLimiter(nil, "") }, "resilienceotel: RegisterLimiter: nil Limiter"},
		{"keyed", func() { _, _ = resilienceotel.RegisterKeyedLimiter(nil, "") }, "resilienceotel: RegisterKeyedLimiter: nil Keyed"},
		{"outbox", func() { _, _ = resilienceotel.RegisterOutbox(nil, "") }, "resilienceotel: RegisterOutbox: nil Outbox"},
		{"sagas", func() { _, _ = resilienceotel.RegisterSagas(nil, "") }, "resilienceotel: RegisterSagas: nil Coordinator"},
		{"nil option", func() { _, _ = resilienceotel.RegisterBreaker(circuitbreaker.New(), nil) }, "resilienceotel: RegisterBreaker: nil Option at index 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.PanicsWithValue(t, tt.want, tt.f)
		})
	}
}
