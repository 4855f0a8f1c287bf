package resilienceotel_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/saga"
)

// An Observer records the events of the policies it is given to. Here a
// ManualReader collects what it recorded of a retry that succeeded at its
// second attempt.
func ExampleNewObserver() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := resilienceotel.NewObserver(resilienceotel.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}

	// A policy calls Observe through its WithObserver option; here, the
	// events of a retry are made by hand.
	ctx := context.Background()
	obs.Observe(ctx, resilience.Event{Policy: resilience.PolicyRetry, Name: "payments",
		Kind: resilience.Retry, Attempt: 1, Delay: 200 * time.Millisecond, Err: errors.New("connection reset")})
	obs.Observe(ctx, resilience.Event{Policy: resilience.PolicyRetry, Name: "payments",
		Kind: resilience.Success, Attempt: 2, Duration: 350 * time.Millisecond})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names = append(names, m.Name+" ("+m.Unit+")")
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Println(n)
	}
	// Output:
	// resilience.attempts ({attempt})
	// resilience.call.duration (s)
	// resilience.calls ({call})
	// resilience.retry.delay (s)
}

// RegisterBreaker reports a breaker's state at each collection, one series
// per state.
func ExampleRegisterBreaker() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b := circuitbreaker.New(circuitbreaker.WithName("payments"))
	reg, err := resilienceotel.RegisterBreaker(b, resilienceotel.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	b.ForceOpen()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, p := range rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints {
		if p.Value == 1 {
			state, _ := p.Attributes.Value("resilience.state")
			name, _ := p.Attributes.Value("resilience.policy.name")
			fmt.Println(name.AsString(), state.AsString())
		}
	}
	// Output:
	// payments forced-open
}

// SagaSpans gives each action and compensation of a saga a span with the
// saga's ID.
func ExampleSagaSpans() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	spans := resilienceotel.SagaSpans(resilienceotel.WithTracerProvider(tp))

	ok := func(context.Context, *saga.Call) error { return nil }
	declined := func(context.Context, *saga.Call) error { return errors.New("card declined") }
	checkout := saga.Define("checkout", 1,
		saga.Step("reserve", ok, ok, saga.WithPolicy(spans)),
		saga.Step("charge", declined, nil, saga.WithPolicy(spans)))
	err := saga.New().Run(context.Background(), checkout, "order-7", nil)
	fmt.Println(err != nil)
	for _, s := range sr.Ended() {
		attrs := attribute.NewSet(s.Attributes()...)
		id, _ := attrs.Value("resilience.saga.id")
		fmt.Println(s.Name(), id.AsString(), s.Status().Code)
	}
	// Output:
	// true
	// saga action reserve order-7 Unset
	// saga action charge order-7 Error
	// saga compensate reserve order-7 Unset
}

// InjectMessage carries the span of the work that enqueues a message
// through the outbox; Publisher links the span that publishes it to that
// work.
func ExamplePublisher() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))

	// In the request: the message goes into the outbox with the request's
	// span context in its headers.
	ctx, span := tp.Tracer("shop").Start(context.Background(), "place order")
	m := outbox.Message{ID: "m1", Topic: "orders", Payload: []byte(`{"id":7}`)}
	resilienceotel.InjectMessage(ctx, &m)
	span.End()
	fmt.Println("traceparent:", m.Headers["traceparent"] != "")

	// In the relay: a broker client wrapped by Publisher, here one that
	// accepts everything.
	broker := outbox.PublisherFunc(func(ctx context.Context, msg outbox.Message) error { return nil })
	p := resilienceotel.Publisher(broker, resilienceotel.WithTracerProvider(tp))
	_ = p.Publish(context.Background(), []outbox.Message{m})

	send := sr.Ended()[1]
	fmt.Println(send.Name(), send.SpanKind())
	fmt.Println("linked to the request:", send.Links()[0].SpanContext.SpanID() == span.SpanContext().SpanID())
	// Output:
	// traceparent: true
	// send orders producer
	// linked to the request: true
}
