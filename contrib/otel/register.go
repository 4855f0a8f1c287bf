package resilienceotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/saga"
)

// The attribute keys of the observable instruments.
const (
	keyState      = attribute.Key("resilience.state")
	keySagaStatus = attribute.Key("resilience.saga.status")
)

// sagaListLimit is the most instances [RegisterSagas] counts in one status:
// the most saga.Coordinator.List returns.
const sagaListLimit = 10000

// breakerStates are the states of a circuit breaker, each of which gets a
// series of resilience.circuitbreaker.state.
var breakerStates = [...]circuitbreaker.State{circuitbreaker.Closed, circuitbreaker.Open,
	circuitbreaker.HalfOpen, circuitbreaker.ForcedOpen, circuitbreaker.Disabled, circuitbreaker.MetricsOnly}

// RegisterBreaker reports b's state, read at each collection, in
// resilience.circuitbreaker.state: one series per state, named by the
// attribute resilience.state ("closed", "open", "half-open", "forced-open",
// "disabled", "metrics-only"), 1 for the state b is in and 0 for the others,
// so that a sum by state counts the breakers in each. Its
// resilience.policy.name is b's name (circuitbreaker.WithName): give each
// breaker registered with one meter a name of its own.
//
// Reading the state moves an open breaker whose break is over to half-open,
// as [circuitbreaker.Breaker.State] says. Call Unregister on the returned
// registration to stop reporting b. RegisterBreaker returns an error if the
// meter refuses the instrument or the callback. It panics if b or an option
// is nil.
func RegisterBreaker(b *circuitbreaker.Breaker, opts ...Option) (metric.Registration, error) {
	if b == nil {
		panic("resilienceotel: RegisterBreaker: nil Breaker")
	}
	c := newConfig("RegisterBreaker", opts)
	m := c.meter()
	state, err := m.Int64ObservableUpDownCounter("resilience.circuitbreaker.state",
		metric.WithUnit("1"),
		metric.WithDescription("1 for the state a circuit breaker is in, 0 for each other state."))
	if err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterBreaker: %w", err)
	}
	var sets [len(breakerStates)]metric.ObserveOption
	for i, s := range breakerStates {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(keyName.String(b.Name()), keyState.String(s.String())))
	}
	return register("RegisterBreaker", m, func(_ context.Context, o metric.Observer) error {
		now := b.State()
		for i, s := range breakerStates {
			var v int64
			if s == now {
				v = 1
			}
			o.ObserveInt64(state, v, sets[i])
		}
		return nil
	}, state)
}

// RegisterBulkhead reports b's counts, read at each collection, under name
// (resilience.policy.name): resilience.bulkhead.inflight, the calls running;
// resilience.bulkhead.queued, the calls waiting for a slot;
// resilience.bulkhead.rejected, the calls refused since b was made; and, when
// limit is positive, resilience.bulkhead.limit, which is limit. Pass as limit
// the maxConcurrent given to bulkhead.New, which a Bulkhead does not tell, or
// 0 to report no limit.
//
// Call Unregister on the returned registration to stop reporting b.
// RegisterBulkhead returns an error if the meter refuses an instrument or
// the callback. It panics if b or an option is nil, or if limit is negative.
func RegisterBulkhead(b *bulkhead.Bulkhead, name string, limit int, opts ...Option) (metric.Registration, error) {
	if b == nil {
		panic("resilienceotel: RegisterBulkhead: nil Bulkhead")
	}
	if limit < 0 {
		panic(fmt.Sprintf("resilienceotel: RegisterBulkhead: limit %d: want >= 0", limit))
	}
	c := newConfig("RegisterBulkhead", opts)
	m := c.meter()
	inflight, err1 := m.Int64ObservableUpDownCounter("resilience.bulkhead.inflight",
		metric.WithUnit("{call}"), metric.WithDescription("Calls running in a bulkhead."))
	queued, err2 := m.Int64ObservableUpDownCounter("resilience.bulkhead.queued",
		metric.WithUnit("{call}"), metric.WithDescription("Calls waiting for a slot of a bulkhead."))
	rejected, err3 := m.Int64ObservableCounter("resilience.bulkhead.rejected",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a bulkhead refused."))
	lim, err4 := m.Int64ObservableUpDownCounter("resilience.bulkhead.limit",
		metric.WithUnit("{call}"), metric.WithDescription("How many calls a bulkhead runs at once."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterBulkhead: %w", err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(keyName.String(name)))
	return register("RegisterBulkhead", m, func(_ context.Context, o metric.Observer) error {
		s := b.Metrics()
		o.ObserveInt64(inflight, s.InFlight, set)
		o.ObserveInt64(queued, s.Waiting, set)
		o.ObserveInt64(rejected, s.Rejected, set)
		if limit > 0 {
			o.ObserveInt64(lim, int64(limit), set)
		}
		return nil
	}, inflight, queued, rejected, lim)
}

// RegisterLimiter reports the calls l refused since it was made, read at
// each collection, in resilience.ratelimit.rejected under name
// (resilience.policy.name).
//
// Call Unregister on the returned registration to stop reporting l.
// RegisterLimiter returns an error if the meter refuses the instrument or
// the callback. It panics if l or an option is nil.
func RegisterLimiter(l *ratelimit.Limiter, name string, opts ...Option) (metric.Registration, error) {
	if l == nil {
		panic("resilienceotel: RegisterLimiter: nil Limiter")
	}
	c := newConfig("RegisterLimiter", opts)
	m := c.meter()
	rejected, err := limiterRejected(m)
	if err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterLimiter: %w", err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(keyName.String(name)))
	return register("RegisterLimiter", m, func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(rejected, l.Metrics().Rejected, set)
		return nil
	}, rejected)
}

// RegisterKeyedLimiter reports, read at each collection under name
// (resilience.policy.name), the calls k refused since it was made, in
// resilience.ratelimit.rejected, and the keys it keeps, in
// resilience.ratelimit.keys.
//
// Call Unregister on the returned registration to stop reporting k.
// RegisterKeyedLimiter returns an error if the meter refuses an instrument
// or the callback. It panics if k or an option is nil.
func RegisterKeyedLimiter(k *ratelimit.Keyed, name string, opts ...Option) (metric.Registration, error) {
	if k == nil {
		panic("resilienceotel: RegisterKeyedLimiter: nil Keyed")
	}
	c := newConfig("RegisterKeyedLimiter", opts)
	m := c.meter()
	rejected, err1 := limiterRejected(m)
	keys, err2 := m.Int64ObservableUpDownCounter("resilience.ratelimit.keys",
		metric.WithUnit("{key}"), metric.WithDescription("Keys a keyed rate limiter keeps."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterKeyedLimiter: %w", err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(keyName.String(name)))
	return register("RegisterKeyedLimiter", m, func(_ context.Context, o metric.Observer) error {
		s := k.Metrics()
		o.ObserveInt64(rejected, s.Rejected, set)
		o.ObserveInt64(keys, s.Keys, set)
		return nil
	}, rejected, keys)
}

func limiterRejected(m metric.Meter) (metric.Int64ObservableCounter, error) {
	return m.Int64ObservableCounter("resilience.ratelimit.rejected",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a rate limiter refused."))
}

// RegisterOutbox reports what ob holds, read with one query
// ([outbox.Outbox.Backlog]) at each collection, under name
// (resilience.policy.name): resilience.outbox.backlog, the messages not yet
// published; resilience.outbox.oldest_age, in seconds, how long the oldest
// of them has waited (0 when none waits); and resilience.outbox.dead, the
// messages given up on, which wait for an operator. A collection whose query
// fails reports none of them, and the collection returns the error.
//
// Call Unregister on the returned registration to stop reporting ob.
// RegisterOutbox returns an error if the meter refuses an instrument or the
// callback. It panics if ob or an option is nil.
func RegisterOutbox(ob *outbox.Outbox, name string, opts ...Option) (metric.Registration, error) {
	if ob == nil {
		panic("resilienceotel: RegisterOutbox: nil Outbox")
	}
	c := newConfig("RegisterOutbox", opts)
	m := c.meter()
	backlog, err1 := m.Int64ObservableUpDownCounter("resilience.outbox.backlog",
		metric.WithUnit("{message}"), metric.WithDescription("Messages of an outbox not yet published."))
	oldest, err2 := m.Float64ObservableGauge("resilience.outbox.oldest_age",
		metric.WithUnit("s"), metric.WithDescription("How long the oldest message not yet published has waited."))
	dead, err3 := m.Int64ObservableUpDownCounter("resilience.outbox.dead",
		metric.WithUnit("{message}"), metric.WithDescription("Messages of an outbox given up on, waiting for an operator."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterOutbox: %w", err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(keyName.String(name)))
	return register("RegisterOutbox", m, func(ctx context.Context, o metric.Observer) error {
		b, err := ob.Backlog(ctx)
		if err != nil {
			return fmt.Errorf("resilienceotel: outbox %q: %w", name, err)
		}
		o.ObserveInt64(backlog, b.Pending, set)
		o.ObserveFloat64(oldest, b.OldestPending.Seconds(), set)
		o.ObserveInt64(dead, b.Dead, set)
		return nil
	}, backlog, oldest, dead)
}

// sagaStatuses are the statuses whose instances resilience.saga.instances
// counts: those that are not final, where an instance may wait long.
var sagaStatuses = [...]saga.Status{saga.Running, saga.Compensating, saga.Confirming, saga.Stuck}

// RegisterSagas reports c's sagas under name (resilience.policy.name):
//
//   - resilience.saga.started and resilience.saga.ended (by
//     resilience.saga.status, "succeeded" or "compensated"): the instances c
//     started and ended since it was made ([saga.Coordinator.Stats]);
//   - for a coordinator with a store, resilience.saga.instances, the
//     instances in the store in each status that is not final
//     (resilience.saga.status "running", "compensating", "confirming",
//     "stuck"), whichever coordinator runs them, and
//     resilience.saga.orphaned, those that no coordinator drives and are due
//     (see [saga.Instance]): recovery has not taken them over yet.
//
// The store's counts come from five calls of [saga.Coordinator.List] at
// each collection, one per status and one for the orphans, and each count
// stops at 10000, the most List returns: a count of 10000 means 10000 or
// more. A collection whose call fails reports
// neither, and the collection returns the error.
//
// Call Unregister on the returned registration to stop reporting c.
// RegisterSagas returns an error if the meter refuses an instrument or the
// callback. It panics if c or an option is nil.
func RegisterSagas(c *saga.Coordinator, name string, opts ...Option) (metric.Registration, error) {
	if c == nil {
		panic("resilienceotel: RegisterSagas: nil Coordinator")
	}
	cfg := newConfig("RegisterSagas", opts)
	m := cfg.meter()
	started, err1 := m.Int64ObservableCounter("resilience.saga.started",
		metric.WithUnit("{saga}"), metric.WithDescription("Saga instances a coordinator started."))
	ended, err2 := m.Int64ObservableCounter("resilience.saga.ended",
		metric.WithUnit("{saga}"), metric.WithDescription("Saga instances a coordinator ended, by status."))
	instances, err3 := m.Int64ObservableUpDownCounter("resilience.saga.instances",
		metric.WithUnit("{saga}"), metric.WithDescription("Saga instances in the store in a status that is not final, up to 10000."))
	orphaned, err4 := m.Int64ObservableUpDownCounter("resilience.saga.orphaned",
		metric.WithUnit("{saga}"), metric.WithDescription("Saga instances in the store that no coordinator drives, up to 10000."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("resilienceotel: RegisterSagas: %w", err)
	}
	nameKV := keyName.String(name)
	set := metric.WithAttributeSet(attribute.NewSet(nameKV))
	succeeded := metric.WithAttributeSet(attribute.NewSet(nameKV, keySagaStatus.String(saga.Succeeded.String())))
	compensated := metric.WithAttributeSet(attribute.NewSet(nameKV, keySagaStatus.String(saga.Compensated.String())))
	var statusSets [len(sagaStatuses)]metric.ObserveOption
	for i, s := range sagaStatuses {
		statusSets[i] = metric.WithAttributeSet(attribute.NewSet(nameKV, keySagaStatus.String(s.String())))
	}
	return register("RegisterSagas", m, func(ctx context.Context, o metric.Observer) error {
		st := c.Stats()
		o.ObserveInt64(started, st.Started, set)
		o.ObserveInt64(ended, st.Succeeded, succeeded)
		o.ObserveInt64(ended, st.Compensated, compensated)

		var counts [len(sagaStatuses)]int64
		for i, s := range sagaStatuses {
			in, err := c.List(ctx, saga.Filter{Status: []saga.Status{s}, Limit: sagaListLimit})
			if errors.Is(err, saga.ErrNotDurable) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("resilienceotel: sagas %q: %w", name, err)
			}
			counts[i] = int64(len(in))
		}
		orphans, err := c.List(ctx, saga.Filter{Orphaned: true, Limit: sagaListLimit})
		if err != nil {
			return fmt.Errorf("resilienceotel: sagas %q: %w", name, err)
		}
		for i := range sagaStatuses {
			o.ObserveInt64(instances, counts[i], statusSets[i])
		}
		o.ObserveInt64(orphaned, int64(len(orphans)), set)
		return nil
	}, started, ended, instances, orphaned)
}

// register registers f as the callback of insts with m.
func register(caller string, m metric.Meter, f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	r, err := m.RegisterCallback(f, insts...)
	if err != nil {
		return nil, fmt.Errorf("resilienceotel: %s: %w", caller, err)
	}
	return r, nil
}
