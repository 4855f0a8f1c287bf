package resilienceotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/saga"
)

// The attribute keys of the spans of SagaSpans.
const (
	keySagaID    = attribute.Key("resilience.saga.id")
	keySagaStep  = attribute.Key("resilience.saga.step")
	keySagaPhase = attribute.Key("resilience.saga.phase")
)

// SagaSpans returns a policy that runs each call of a saga step (an action,
// a compensation, a try, a confirm or a cancel) in a span of its own, for
// [saga.WithPolicy]. The span is named "saga", the phase and the step, such
// as "saga action charge" or "saga compensate charge", and has the
// attributes resilience.saga.id (the saga's ID), resilience.saga.step and
// resilience.saga.phase; a call that fails sets its status to Error and its
// error.type ([WithErrorType]). Its parent is the span of the ctx the step
// gets: the span of the caller of saga.Coordinator.Run, for the actions and
// for the compensations, which run under a ctx that keeps the caller's
// values; none, for a saga that recovery drives.
//
// Put it outside the step's other policies for one span per call, whatever
// the retries, or inside a retry for one span per attempt:
//
//	spans := resilienceotel.SagaSpans()
//	saga.Step("charge", charge, refund,
//		saga.WithPolicy(resilience.Chain(spans, retry.New())))
//
// Outside a saga step (no [saga.IdempotencyKey] in ctx) the policy calls op
// with no span. It is safe for concurrent use; one serves every step.
// It panics if an option is nil.
func SagaSpans(opts ...Option) resilience.Policy {
	c := newConfig("SagaSpans", opts)
	return &sagaSpans{tr: c.tracer(), errorType: c.errorType}
}

type sagaSpans struct {
	tr        trace.Tracer
	errorType func(error) string
}

func (p *sagaSpans) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("resilienceotel: SagaSpans: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k, ok := saga.IdempotencyKey(ctx)
	if !ok {
		return op(ctx)
	}
	phase := k.Phase.String()
	ctx, span := p.tr.Start(ctx, "saga "+phase+" "+k.Step,
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(keySagaID.String(k.SagaID), keySagaStep.String(k.Step), keySagaPhase.String(phase)))
	returned := false
	defer func() {
		if !returned {
			span.SetStatus(codes.Error, "panic")
		}
		span.End()
	}()
	err := op(ctx)
	returned = true
	if err != nil {
		span.SetAttributes(keyErrorType.String(p.errorType(err)))
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
