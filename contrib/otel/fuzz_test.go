package resilienceotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilience-go/resilience"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
)

// metricKeys are the attribute keys each of an Observer's metrics may
// carry: error.type, and those of the documented set.
var metricKeys = func() map[string]map[string]bool {
	keys := func(ks ...string) map[string]bool {
		m := map[string]bool{"error.type": true}
		for _, k := range ks {
			m[k] = true
		}
		return m
	}
	call := keys("resilience.policy.kind", "resilience.policy.name", "resilience.outcome")
	return map[string]map[string]bool{
		"resilience.calls":                      call,
		"resilience.call.duration":              call,
		"resilience.attempts":                   call,
		"resilience.retry.delay":                keys("resilience.policy.kind", "resilience.policy.name"),
		"resilience.circuitbreaker.transitions": keys("resilience.policy.name", "resilience.from_state", "resilience.to_state", "resilience.cause"),
		"resilience.outbox.messages":            keys("resilience.policy.name", "resilience.outcome"),
		"resilience.events": keys("resilience.policy.kind", "resilience.policy.name", "resilience.event",
			"resilience.from_state", "resilience.to_state", "resilience.cause"),
	}
}()

// FuzzObserve feeds an Observer events of any field values, kinds that do
// not exist included, in a recording span: it must not panic, and its
// metrics carry only their documented attributes, never the error's
// message.
func FuzzObserve(f *testing.F) {
	f.Add(uint8(2), uint8(1), uint8(0), "pay", "", "", 1, 0, int64(time.Second), "order-1/reserve", "boom")
	f.Add(uint8(1), uint8(10), uint8(1), "pay", "closed", "open", 0, 0, int64(0), "", "")
	f.Add(uint8(11), uint8(11), uint8(0), "orders", "", "", 0, 64, int64(0), "relay-1", "nack")
	f.Add(uint8(255), uint8(255), uint8(255), "", "x", "y", -1, -5, int64(-1), "", "e")
	f.Fuzz(func(t *testing.T, policy, kind, cause uint8, name, from, to string, attempt, count int, d int64, subject, msg string) {
		m := newMeter()
		obs, err := resilienceotel.NewObserver(m.opt())
		require.NoError(t, err)
		ctx, span := newTracer(tracetest.NewSpanRecorder()).Start(context.Background(), "call")
		defer span.End()
		e := resilience.Event{Policy: resilience.PolicyKind(policy), Name: name, Kind: resilience.EventKind(kind),
			Attempt: attempt, Count: count, Delay: time.Duration(d), Duration: time.Duration(d),
			From: from, To: to, Cause: resilience.Cause(cause), Subject: subject}
		if msg != "" {
			e.Err = errors.New(msg + "\x00unique")
		}
		obs.Observe(ctx, e)
		obs.Observe(context.Background(), e)

		var rm metricdata.ResourceMetrics
		require.NoError(t, m.r.Collect(context.Background(), &rm))
		for _, line := range lines(t, rm, false) {
			if msg != "" {
				assert.NotContains(t, line, "\x00unique", "the error's message")
			}
		}
		for _, sm := range rm.ScopeMetrics {
			for _, md := range sm.Metrics {
				for _, set := range dataPointSets(md.Data) {
					for _, kv := range set.ToSlice() {
						assert.True(t, metricKeys[md.Name][string(kv.Key)], "%s: attribute %s", md.Name, kv.Key)
					}
				}
			}
		}
	})
}
