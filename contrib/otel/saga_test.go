package resilienceotel_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-go/resilience"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
)

func TestSagaSpansContract(t *testing.T) {
	tp := newTracerProvider(tracetest.NewSpanRecorder())
	policytest.Run(t, func() resilience.Policy {
		return resilienceotel.SagaSpans(resilienceotel.WithTracerProvider(tp))
	})
}

// TestSagaSpans runs a saga whose second step fails, and checks the span of
// each action and compensation: name, parent, attributes and status, and
// that the step runs inside it.
func TestSagaSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := newTracerProvider(sr)
	spans := resilienceotel.SagaSpans(resilienceotel.WithTracerProvider(tp))
	inside := map[string]trace.SpanID{} // the span each step call saw, by step and phase
	step := func(err error) saga.StepFunc {
		return func(ctx context.Context, call *saga.Call) error {
			inside[call.Step+" "+call.Phase.String()] = trace.SpanContextFromContext(ctx).SpanID()
			return err
		}
	}
	def := saga.Define("checkout", 1,
		saga.Step("reserve", step(nil), step(nil), saga.WithPolicy(spans)),
		saga.Step("charge", step(&codeError{402}), step(nil), saga.WithPolicy(spans)),
		saga.Step("ship", step(nil), step(nil), saga.WithPolicy(spans)))
	ctx, root := tp.Tracer("test").Start(context.Background(), "checkout")
	err := saga.New().Run(ctx, def, "order-7", nil)
	root.End()
	var se *saga.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, saga.Compensated, se.Status)

	ended := sr.Ended()
	var got []string
	for _, s := range ended[:len(ended)-1] {
		got = append(got, s.Name()+" "+spanAttrs(s)+" "+s.Status().Code.String())
		assert.Equal(t, root.SpanContext().SpanID(), s.Parent().SpanID(), "parent of %s", s.Name())
		assert.Equal(t, root.SpanContext().TraceID(), s.SpanContext().TraceID(), "trace of %s", s.Name())
		assert.Equal(t, trace.SpanKindInternal, s.SpanKind(), "kind of %s", s.Name())
		key := attrValue(s, "resilience.saga.step") + " " + attrValue(s, "resilience.saga.phase")
		assert.Equal(t, s.SpanContext().SpanID(), inside[key], "the span %s runs in", key)
	}
	assert.Equal(t, []string{
		"saga action reserve {resilience.saga.id=order-7 resilience.saga.phase=action resilience.saga.step=reserve} Unset",
		"saga action charge {error.type=*resilienceotel_test.codeError resilience.saga.id=order-7 resilience.saga.phase=action resilience.saga.step=charge} Error",
		"saga compensate charge {resilience.saga.id=order-7 resilience.saga.phase=compensate resilience.saga.step=charge} Unset",
		"saga compensate reserve {resilience.saga.id=order-7 resilience.saga.phase=compensate resilience.saga.step=reserve} Unset",
	}, got)
	assert.Equal(t, "status 402", ended[1].Status().Description)
	assert.Equal(t, "checkout", ended[len(ended)-1].Name())
}

// TestSagaSpansAroundRetry checks both places of the policy around a retry:
// outside, one span for the call; inside, one per attempt.
func TestSagaSpansAroundRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sr := tracetest.NewSpanRecorder()
		spans := resilienceotel.SagaSpans(resilienceotel.WithTracerProvider(newTracerProvider(sr)))
		r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Second)))
		flaky := func() saga.StepFunc {
			n := 0
			return func(context.Context, *saga.Call) error {
				if n++; n < 3 {
					return errors.New("flaky")
				}
				return nil
			}
		}
		def := saga.Define("checkout", 1,
			saga.Step("once", flaky(), nil, saga.WithPolicy(resilience.Chain(spans, r))),
			saga.Step("each", flaky(), nil, saga.WithPolicy(resilience.Chain(r, spans))))
		require.NoError(t, saga.New().Run(context.Background(), def, "order-8", nil))
		var got []string
		for _, s := range sr.Ended() {
			got = append(got, s.Name()+" "+s.Status().Code.String())
		}
		assert.Equal(t, []string{
			"saga action once Unset",
			"saga action each Error", "saga action each Error", "saga action each Unset",
		}, got)
	})
}

// TestSagaSpansPanic checks that a step that panics ends its span, with
// status Error.
func TestSagaSpansPanic(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	spans := resilienceotel.SagaSpans(resilienceotel.WithTracerProvider(newTracerProvider(sr)))
	def := saga.Define("checkout", 1, saga.Step("boom",
		func(context.Context, *saga.Call) error { panic("boom") }, nil, saga.WithPolicy(spans)))
	assert.PanicsWithValue(t, "boom", func() { _ = saga.New().Run(context.Background(), def, "order-9", nil) })
	require.Len(t, sr.Ended(), 1)
	s := sr.Ended()[0]
	assert.Equal(t, "saga action boom", s.Name())
	assert.Equal(t, sdktrace.Status{Code: codes.Error, Description: "panic"}, s.Status())
}
