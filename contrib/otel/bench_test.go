package resilienceotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
)

// hotEvents are the events of calls that a busy service sends many times
// over: each must record without allocating once seen.
var hotEvents = []struct {
	name string
	e    resilience.Event
}{
	{"Success", resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "payments", Kind: resilience.Success, Duration: 3 * time.Millisecond}},
	{"Failure", resilience.Event{Policy: resilience.PolicyRetry, Name: "payments", Kind: resilience.Failure, Attempt: 3, Duration: time.Second, Err: &codeError{code: 503}}},
	{"Rejected", resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "payments", Kind: resilience.Rejected, Err: circuitbreaker.ErrForcedOpen}},
	{"Retry", resilience.Event{Policy: resilience.PolicyRetry, Name: "payments", Kind: resilience.Retry, Attempt: 1, Delay: 100 * time.Millisecond, Err: errors.New("boom")}},
	{"StateChange", resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "payments", Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.FailureRate}},
	{"OutboxPublished", resilience.Event{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Success, Count: 64, Subject: "relay-1"}},
}

// newSDKObserver returns an Observer that records to an SDK MeterProvider
// read by a ManualReader.
func newSDKObserver(tb testing.TB) *resilienceotel.Observer {
	tb.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	obs, err := resilienceotel.NewObserver(resilienceotel.WithMeterProvider(mp))
	require.NoError(tb, err)
	return obs
}

// TestObserveAllocs checks the zero-allocation budget of Observe for
// events seen before, recorded by the SDK, with and without a span that
// does not record.
func TestObserveAllocs(t *testing.T) {
	obs := newSDKObserver(t)
	ctx := context.Background()
	for _, h := range hotEvents {
		obs.Observe(ctx, h.e) // first sight makes the attribute set
		allocs := testing.AllocsPerRun(1000, func() { obs.Observe(ctx, h.e) })
		assert.Zero(t, allocs, "allocations per %s event", h.name)
	}
}

// TestObserveRecordingSpanAllocs shows that only a span that records costs
// allocations, for the events added to it.
func TestObserveRecordingSpanAllocs(t *testing.T) {
	obs := newSDKObserver(t)
	ctx, _ := newTracer(tracetest.NewSpanRecorder()).Start(context.Background(), "call")
	e := hotEvents[0].e // a success adds no span event
	obs.Observe(ctx, e)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { obs.Observe(ctx, e) }), "allocations per success in a recording span")
}

// BenchmarkObserve is the cost of Observe per event of a kind seen before,
// recorded by the SDK (cumulative, read by a ManualReader), with no span.
func BenchmarkObserve(b *testing.B) {
	for _, h := range hotEvents {
		b.Run(h.name, func(b *testing.B) {
			obs := newSDKObserver(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				obs.Observe(ctx, h.e)
			}
		})
	}
}

// BenchmarkObserveNoop is the Observer's own cost, without the SDK's: the
// same events recorded to a no-op MeterProvider.
func BenchmarkObserveNoop(b *testing.B) {
	for _, h := range hotEvents {
		b.Run(h.name, func(b *testing.B) {
			obs, err := resilienceotel.NewObserver(resilienceotel.WithMeterProvider(noop.NewMeterProvider()))
			require.NoError(b, err)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				obs.Observe(ctx, h.e)
			}
		})
	}
}

// BenchmarkObserveParallel is BenchmarkObserve/Success from every P at once,
// on one Observer.
func BenchmarkObserveParallel(b *testing.B) {
	obs := newSDKObserver(b)
	e := hotEvents[0].e
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			obs.Observe(ctx, e)
		}
	})
}

// BenchmarkObserveSpanEvent is the cost of a retry added to a recording
// span, beside its metric: a new span every 100 events, so that events do
// not pile up past the span's limit.
func BenchmarkObserveSpanEvent(b *testing.B) {
	obs := newSDKObserver(b)
	tr := newTracer(tracetest.NewSpanRecorder())
	e := hotEvents[3].e
	ctx, span := tr.Start(context.Background(), "call")
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		if n++; n%100 == 0 {
			span.End()
			ctx, span = tr.Start(context.Background(), "call")
		}
		obs.Observe(ctx, e)
	}
	span.End()
}
