package resilienceotel

import (
	"context"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-go/resilience/outbox"
)

// The attribute keys of the spans of Publisher: OpenTelemetry's messaging
// conventions, and the relay's attempt.
const (
	keyMessagingOperationName = attribute.Key("messaging.operation.name")
	keyMessagingOperationType = attribute.Key("messaging.operation.type")
	keyMessagingDestination   = attribute.Key("messaging.destination.name")
	keyMessagingMessageID     = attribute.Key("messaging.message.id")
	keyOutboxAttempt          = attribute.Key("resilience.outbox.attempt")
)

// InjectMessage writes the context of the span in ctx into m's headers, to
// go into the outbox with it: by default the W3C traceparent and tracestate
// headers ([WithPropagator]). Call it before [outbox.Outbox.Enqueue], in the
// span of the work that writes the message; [Publisher] links the span that
// publishes it to this one, and the message's consumers find it in the
// headers the broker delivers. It makes m.Headers if it is nil and there is
// something to write, and replaces headers of the same names. It panics if
// m or an option is nil.
func InjectMessage(ctx context.Context, m *outbox.Message, opts ...Option) {
	if m == nil {
		panic("resilienceotel: InjectMessage: nil Message")
	}
	c := newConfig("InjectMessage", opts)
	h := m.Headers
	if h == nil {
		h = make(map[string]string, 2)
	}
	c.prop.Inject(ctx, propagation.MapCarrier(h))
	if len(h) > 0 {
		m.Headers = h
	}
}

// Publisher returns an [outbox.Publisher] that publishes through next, each
// message in a producer span of its own: named "send" and the message's
// topic, with OpenTelemetry's messaging attributes (messaging.operation.name
// and messaging.operation.type "send", messaging.destination.name the topic,
// messaging.message.id the ID) and resilience.outbox.attempt, the relay's
// attempt. The span's parent is the span in the relay's ctx, if any; it
// links to the span whose context [InjectMessage] wrote into the message's
// headers, the work that enqueued it. Each span covers the call to next that
// publishes the message's batch, and ends with the message's own result: a
// message that fails sets its span's status to Error and its error.type
// ([WithErrorType]).
//
// The headers go to next as they are, so that consumers see the context of
// the work that enqueued the message, as OpenTelemetry's messaging
// conventions ask. A message with no span context in its headers gets its
// producer span's instead, in a copy of its headers: next receives a copy
// of the batch, and the relay's messages stay as they were.
//
// When the batch is one message, next's ctx carries its span, so that a
// broker client's own spans nest under it. It panics if next or an option is
// nil.
func Publisher(next outbox.Publisher, opts ...Option) outbox.Publisher {
	if next == nil {
		panic("resilienceotel: Publisher: nil Publisher")
	}
	c := newConfig("Publisher", opts)
	return &publisher{next: next, tr: c.tracer(), prop: c.prop, errorType: c.errorType}
}

type publisher struct {
	next      outbox.Publisher
	tr        trace.Tracer
	prop      propagation.TextMapPropagator
	errorType func(error) string
}

func (p *publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	spans := make([]trace.Span, len(msgs))
	defer func() {
		for _, s := range spans {
			if s != nil {
				s.End() // after a panic in next, too
			}
		}
	}()
	pctx := ctx
	out, cloned := msgs, false
	for i := range msgs {
		m := &msgs[i]
		var opts []trace.SpanStartOption
		created := trace.SpanContextFromContext(p.prop.Extract(context.Background(), propagation.MapCarrier(m.Headers)))
		if created.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: created}))
		}
		opts = append(opts, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			keyMessagingOperationName.String("send"),
			keyMessagingOperationType.String("send"),
			keyMessagingDestination.String(m.Topic),
			keyMessagingMessageID.String(m.ID),
			keyOutboxAttempt.Int(m.Attempts)))
		sctx, span := p.tr.Start(ctx, "send "+m.Topic, opts...)
		spans[i] = span
		if len(msgs) == 1 {
			pctx = sctx
		}
		if !created.IsValid() && span.SpanContext().IsValid() {
			if !cloned {
				out, cloned = slices.Clone(msgs), true
			}
			h := maps.Clone(m.Headers)
			if h == nil {
				h = make(map[string]string, 2)
			}
			p.prop.Inject(sctx, propagation.MapCarrier(h))
			out[i].Headers = h
		}
	}
	errs := p.next.Publish(pctx, out)
	for i, s := range spans {
		if i < len(errs) && errs[i] != nil {
			s.SetAttributes(keyErrorType.String(p.errorType(errs[i])))
			s.SetStatus(codes.Error, errs[i].Error())
		}
	}
	return errs
}
