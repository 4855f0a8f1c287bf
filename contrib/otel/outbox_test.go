package resilienceotel_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// traceparent returns the W3C traceparent of sc.
func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

func TestInjectMessage(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=abc")
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	m := outbox.Message{Topic: "orders", Headers: map[string]string{"content-type": "application/json", "traceparent": "stale"}}
	resilienceotel.InjectMessage(ctx, &m)
	assert.Equal(t, map[string]string{
		"content-type": "application/json",
		"traceparent":  "00-01020300000000000000000000000000-0405060000000000-01",
		"tracestate":   "vendor=abc",
	}, m.Headers)

	empty := outbox.Message{Topic: "orders"}
	resilienceotel.InjectMessage(context.Background(), &empty)
	assert.Nil(t, empty.Headers, "no span, nothing to write")

	fresh := outbox.Message{Topic: "orders"}
	resilienceotel.InjectMessage(ctx, &fresh, resilienceotel.WithPropagator(propagation.Baggage{}))
	assert.Nil(t, fresh.Headers, "a propagator with nothing to write writes nothing")

	assert.PanicsWithValue(t, "resilienceotel: InjectMessage: nil Message", func() { resilienceotel.InjectMessage(ctx, nil) })
}

// recordingPublisher keeps what it was given, and fails the messages whose
// topic is in fail.
type recordingPublisher struct {
	fail  map[string]error
	ctxs  []context.Context
	got   [][]outbox.Message
	panic bool
}

func (p *recordingPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if p.panic {
		panic("broker client bug")
	}
	p.ctxs = append(p.ctxs, ctx)
	p.got = append(p.got, msgs)
	var errs []error
	for i, m := range msgs {
		if err := p.fail[m.Topic]; err != nil {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = err
		}
	}
	return errs
}

func TestPublisher(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := newTracerProvider(sr)
	tr := tp.Tracer("test")

	// The work that enqueued the first two messages.
	enqCtx, enq := tr.Start(context.Background(), "place order")
	sent := outbox.Message{ID: "m1", Topic: "orders", Attempts: 1}
	failed := outbox.Message{ID: "m2", Topic: "payments", Attempts: 3}
	resilienceotel.InjectMessage(enqCtx, &sent)
	resilienceotel.InjectMessage(enqCtx, &failed)
	enq.End()
	bare := outbox.Message{ID: "m3", Topic: "audit", Attempts: 1}

	next := &recordingPublisher{fail: map[string]error{"payments": &codeError{503}}}
	p := resilienceotel.Publisher(next, resilienceotel.WithTracerProvider(tp))
	relayCtx, relay := tr.Start(context.Background(), "relay")
	batch := []outbox.Message{sent, failed, bare}
	errs := p.Publish(relayCtx, batch)
	relay.End()
	require.Len(t, errs, 3)
	assert.Equal(t, []error{nil, &codeError{503}, nil}, errs)

	ended := sr.Ended()
	require.Len(t, ended, 5) // place order, the three sends, relay
	sends := ended[1:4]
	var got []string
	for _, s := range sends {
		got = append(got, s.Name()+" "+spanAttrs(s)+" "+s.Status().Code.String())
		assert.Equal(t, trace.SpanKindProducer, s.SpanKind(), s.Name())
		assert.Equal(t, relay.SpanContext().SpanID(), s.Parent().SpanID(), "parent of %s", s.Name())
	}
	assert.Equal(t, []string{
		"send orders {messaging.destination.name=orders messaging.message.id=m1 messaging.operation.name=send messaging.operation.type=send resilience.outbox.attempt=1} Unset",
		"send payments {error.type=*resilienceotel_test.codeError messaging.destination.name=payments messaging.message.id=m2 messaging.operation.name=send messaging.operation.type=send resilience.outbox.attempt=3} Error",
		"send audit {messaging.destination.name=audit messaging.message.id=m3 messaging.operation.name=send messaging.operation.type=send resilience.outbox.attempt=1} Unset",
	}, got)
	assert.Equal(t, "status 503", sends[1].Status().Description)
	for _, s := range sends[:2] {
		require.Len(t, s.Links(), 1, "links of %s", s.Name())
		assert.Equal(t, enq.SpanContext().TraceID(), s.Links()[0].SpanContext.TraceID(), "link of %s", s.Name())
		assert.Equal(t, enq.SpanContext().SpanID(), s.Links()[0].SpanContext.SpanID(), "link of %s", s.Name())
	}
	assert.Empty(t, sends[2].Links(), "a message enqueued with no span links to none")

	// next got the headers as they were, but for the message that had
	// none, which carries its send span's context, in a copy.
	require.Len(t, next.got, 1)
	out := next.got[0]
	assert.Equal(t, sent.Headers, out[0].Headers)
	assert.Equal(t, failed.Headers, out[1].Headers)
	assert.Equal(t, map[string]string{"traceparent": traceparent(sends[2].SpanContext())}, out[2].Headers)
	assert.Nil(t, batch[2].Headers, "the relay's message is unchanged")
	assert.Equal(t, relay.SpanContext(), trace.SpanContextFromContext(next.ctxs[0]), "a batch of several: the relay's ctx")
}

// TestPublisherSingle checks that a batch of one publishes in its span's
// ctx, so that the broker client's spans nest under it.
func TestPublisherSingle(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	next := &recordingPublisher{}
	p := resilienceotel.Publisher(next, resilienceotel.WithTracerProvider(newTracerProvider(sr)))
	msgs := []outbox.Message{{ID: "m1", Topic: "orders", Headers: map[string]string{"k": "v"}}}
	assert.Nil(t, p.Publish(context.Background(), msgs))
	require.Len(t, sr.Ended(), 1)
	send := sr.Ended()[0]
	assert.Equal(t, send.SpanContext(), trace.SpanContextFromContext(next.ctxs[0]))
	assert.False(t, send.Parent().IsValid(), "no span in the relay's ctx: a root")
	assert.Equal(t, map[string]string{"k": "v", "traceparent": traceparent(send.SpanContext())}, next.got[0][0].Headers)
	assert.Equal(t, map[string]string{"k": "v"}, msgs[0].Headers, "the relay's headers are unchanged")
}

// TestPublisherPanic checks that a panic in next ends every span and goes
// on.
func TestPublisherPanic(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	p := resilienceotel.Publisher(&recordingPublisher{panic: true}, resilienceotel.WithTracerProvider(newTracerProvider(sr)))
	assert.PanicsWithValue(t, "broker client bug", func() {
		p.Publish(context.Background(), []outbox.Message{{Topic: "a"}, {Topic: "b"}})
	})
	assert.Len(t, sr.Ended(), 2)
}

// TestPublisherThroughRelay enqueues a message in a span, into an SQLite
// outbox, and has a relay publish it through Publisher: the broker gets the
// enqueuing span's context, and the send span links to it.
func TestPublisherThroughRelay(t *testing.T) {
	ctx := context.Background()
	db := servicetest.SQLite(t)
	ob := outbox.New(db.DB, outbox.SQLite)
	require.NoError(t, ob.Migrate(ctx))
	sr := tracetest.NewSpanRecorder()
	tp := newTracerProvider(sr)

	enqCtx, enq := tp.Tracer("test").Start(ctx, "place order")
	tx, err := db.BeginTx(enqCtx, nil)
	require.NoError(t, err)
	m := outbox.Message{Topic: "orders", Payload: []byte(`{"id":7}`)}
	resilienceotel.InjectMessage(enqCtx, &m)
	require.NoError(t, ob.Enqueue(enqCtx, tx, m))
	require.NoError(t, tx.Commit())
	enq.End()

	next := &recordingPublisher{}
	relay := ob.NewRelay(resilienceotel.Publisher(next, resilienceotel.WithTracerProvider(tp)))
	n, err := relay.Process(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	require.Len(t, next.got, 1)
	require.Len(t, next.got[0], 1)
	assert.Equal(t, traceparent(enq.SpanContext()), next.got[0][0].Headers["traceparent"], "the broker gets the enqueuing span's context")
	var send sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == "send orders" {
			send = s
		}
	}
	require.NotNil(t, send)
	require.Len(t, send.Links(), 1)
	assert.Equal(t, enq.SpanContext().SpanID(), send.Links()[0].SpanContext.SpanID())
	assert.Equal(t, codes.Unset, send.Status().Code)
}

func TestPublisherPanics(t *testing.T) {
	assert.PanicsWithValue(t, "resilienceotel: Publisher: nil Publisher", func() { resilienceotel.Publisher(nil) })
	assert.PanicsWithValue(t, "resilienceotel: Publisher: nil Option at index 0", func() {
		resilienceotel.Publisher(&recordingPublisher{}, nil)
	})
}
