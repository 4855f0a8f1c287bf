package resilienceotel

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-go/resilience"
)

// The attribute keys of the metrics and span events.
const (
	keyKind      = attribute.Key("resilience.policy.kind")
	keyName      = attribute.Key("resilience.policy.name")
	keyOutcome   = attribute.Key("resilience.outcome")
	keyEvent     = attribute.Key("resilience.event")
	keyErrorType = attribute.Key("error.type")
	keyFrom      = attribute.Key("resilience.from_state")
	keyTo        = attribute.Key("resilience.to_state")
	keyCause     = attribute.Key("resilience.cause")
	keyAttempt   = attribute.Key("resilience.attempt")
	keyDelay     = attribute.Key("resilience.delay")
)

// The names of the span events an Observer adds.
const (
	SpanEventRetry       = "resilience.retry"
	SpanEventRejected    = "resilience.rejected"
	SpanEventStateChange = "resilience.state_change"
)

// Bucket boundaries: seconds from 5 ms to a minute for durations and waits
// (OpenTelemetry's HTTP boundaries and two more), and gRPC A96's for
// attempts.
var (
	secondsBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
	attemptsBuckets = []float64{1, 2, 3, 4, 5}
)

// maxCached bounds the attribute sets an Observer keeps: past it, an event
// of a new combination builds its set each time. Names come from the
// program's code (WithName), so a program that passes this many has given
// each call a name of its own, which no cache would save.
const maxCached = 4096

// Observer records the [resilience.Event]s of the policies and components
// it is given to as OpenTelemetry metrics, and adds the notable ones (a
// retry, a rejection, a state change) as events to the caller's span. Make
// one with [NewObserver] and give it to every policy's WithObserver option;
// one Observer serves any number of policies. It is safe for concurrent
// use.
//
// Attributes are bounded: a policy's kind and name, the outcome, and the
// error's type ([ErrorType]), never an error's message, a key or an ID.
// An event of a combination seen before records without allocating: its
// attribute set is made once and kept.
type Observer struct {
	calls       metric.Int64Counter
	duration    metric.Float64Histogram
	attempts    metric.Int64Histogram
	retryDelay  metric.Float64Histogram
	transitions metric.Int64Counter
	messages    metric.Int64Counter
	events      metric.Int64Counter
	errorType   func(error) string

	// sets maps a setKey to its *measureOpts; cached counts them.
	sets   sync.Map
	cached atomic.Int64
}

var _ resilience.Observer = (*Observer)(nil)

// NewObserver returns an Observer that records to the meter of
// [WithMeterProvider]'s provider (by default the global one), with errors
// typed by [WithErrorType]'s function (by default [ErrorType]). It returns
// an error if the provider refuses an instrument. It panics if an option is
// nil.
func NewObserver(opts ...Option) (*Observer, error) {
	c := newConfig("NewObserver", opts)
	m := c.meter()
	o := &Observer{errorType: c.errorType}
	var errs [7]error
	o.calls, errs[0] = m.Int64Counter("resilience.calls",
		metric.WithUnit("{call}"),
		metric.WithDescription("Calls through a policy, by outcome."))
	o.duration, errs[1] = m.Float64Histogram("resilience.call.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long calls through a policy took, by outcome."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	o.attempts, errs[2] = m.Int64Histogram("resilience.attempts",
		metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts a call made, recorded once per call, by policies that count them."),
		metric.WithExplicitBucketBoundaries(attemptsBuckets...))
	o.retryDelay, errs[3] = m.Float64Histogram("resilience.retry.delay",
		metric.WithUnit("s"),
		metric.WithDescription("The wait before each retry."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	o.transitions, errs[4] = m.Int64Counter("resilience.circuitbreaker.transitions",
		metric.WithUnit("{transition}"),
		metric.WithDescription("Changes of a circuit breaker's state."))
	o.messages, errs[5] = m.Int64Counter("resilience.outbox.messages",
		metric.WithUnit("{message}"),
		metric.WithDescription("Messages an outbox relay published, failed to publish, gave up on, or found taken over."))
	o.events, errs[6] = m.Int64Counter("resilience.events",
		metric.WithUnit("{event}"),
		metric.WithDescription("Events that no other instrument records, by kind: a retry that gave up, a saga started or compensated, dead items, a component's own errors."))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("resilienceotel: NewObserver: %w", err)
		}
	}
	return o, nil
}

// Observe records e. It is called by the policies; see
// [resilience.Observer].
//
//   - An outbox relay's Success, Failure, Dead and Stale:
//     resilience.outbox.messages, adding the event's Count.
//   - A call's end (Success, Failure, Ignored, Rejected, TimedOut,
//     FellBack): resilience.calls, resilience.call.duration and, when the
//     event counts attempts (Attempt > 0), resilience.attempts.
//   - Retry: resilience.retry.delay.
//   - A circuit breaker's StateChange: resilience.circuitbreaker.transitions.
//   - Any other event: resilience.events, by its kind, adding its Count
//     (at least 1).
//
// Retry, Rejected and StateChange events are also added to the span in ctx,
// if it is recording.
func (o *Observer) Observe(ctx context.Context, e resilience.Event) {
	if e.Policy == resilience.PolicyOutbox && messageOutcome(e.Kind) != "" {
		o.messages.Add(ctx, count(e), o.opts(o.key(e)).add...)
		return
	}
	switch e.Kind {
	case resilience.Success, resilience.Failure, resilience.Ignored,
		resilience.Rejected, resilience.TimedOut, resilience.FellBack:
		m := o.opts(o.key(e))
		o.calls.Add(ctx, 1, m.add...)
		o.duration.Record(ctx, e.Duration.Seconds(), m.rec...)
		if e.Attempt > 0 {
			o.attempts.Record(ctx, int64(e.Attempt), m.rec...)
		}
		if e.Kind == resilience.Rejected {
			addSpanEvent(ctx, e, o.errorType)
		}
	case resilience.Retry:
		o.retryDelay.Record(ctx, e.Delay.Seconds(), o.opts(o.key(e)).rec...)
		addSpanEvent(ctx, e, o.errorType)
	case resilience.StateChange:
		if e.Policy == resilience.PolicyCircuitBreaker {
			o.transitions.Add(ctx, 1, o.opts(o.key(e)).add...)
		} else {
			o.events.Add(ctx, count(e), o.opts(o.key(e)).add...)
		}
		addSpanEvent(ctx, e, o.errorType)
	default:
		o.events.Add(ctx, count(e), o.opts(o.key(e)).add...)
	}
}

// count returns how many items e covers: its Count, or 1.
func count(e resilience.Event) int64 {
	return int64(max(e.Count, 1))
}

// setKey is what an event's attribute set depends on. Which attributes the
// set holds follows from kind and event, as Observe routes them.
type setKey struct {
	kind     resilience.PolicyKind
	event    resilience.EventKind
	cause    resilience.Cause
	name     string
	errType  string
	from, to string
}

// key returns e's setKey. A state change's set has no error.type.
func (o *Observer) key(e resilience.Event) setKey {
	k := setKey{kind: e.Policy, event: e.Kind, name: e.Name}
	if e.Kind == resilience.StateChange {
		k.cause, k.from, k.to = e.Cause, e.From, e.To
	} else if e.Err != nil {
		k.errType = o.errorType(e.Err)
	}
	return k
}

// measureOpts holds an attribute set as the options that pass it to an
// instrument, made once so that passing them allocates nothing.
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// opts returns the options of k's attribute set, made on first use.
func (o *Observer) opts(k setKey) *measureOpts {
	if v, ok := o.sets.Load(k); ok {
		return v.(*measureOpts)
	}
	v := newMeasureOpts(k)
	if o.cached.Load() >= maxCached {
		return v
	}
	w, loaded := o.sets.LoadOrStore(k, v)
	if !loaded {
		o.cached.Add(1)
	}
	return w.(*measureOpts)
}

func newMeasureOpts(k setKey) *measureOpts {
	kvs := make([]attribute.KeyValue, 0, 6)
	switch {
	case k.event == resilience.StateChange && k.kind == resilience.PolicyCircuitBreaker:
		kvs = append(kvs, keyName.String(k.name))
	case k.kind == resilience.PolicyOutbox && messageOutcome(k.event) != "":
		kvs = append(kvs, keyName.String(k.name), keyOutcome.String(messageOutcome(k.event)))
	case callOutcome(k.event) != "":
		kvs = append(kvs, keyKind.String(k.kind.String()), keyName.String(k.name),
			keyOutcome.String(callOutcome(k.event)))
	case k.event == resilience.Retry:
		kvs = append(kvs, keyKind.String(k.kind.String()), keyName.String(k.name))
	default:
		kvs = append(kvs, keyKind.String(k.kind.String()), keyName.String(k.name),
			keyEvent.String(k.event.String()))
	}
	if k.errType != "" {
		kvs = append(kvs, keyErrorType.String(k.errType))
	}
	if k.event == resilience.StateChange {
		kvs = append(kvs, keyFrom.String(k.from), keyTo.String(k.to), keyCause.String(k.cause.String()))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return &measureOpts{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
}

// callOutcome returns the resilience.outcome of a call that ended with an
// event of kind k, or "" for an event that does not end a call.
func callOutcome(k resilience.EventKind) string {
	switch k {
	case resilience.Success:
		return "success"
	case resilience.Failure:
		return "failure"
	case resilience.Ignored:
		return "ignored"
	case resilience.Rejected:
		return "rejected"
	case resilience.TimedOut:
		return "timeout"
	case resilience.FellBack:
		return "fallback"
	}
	return ""
}

// messageOutcome returns the resilience.outcome of an outbox relay's event
// of kind k, or "" for one that does not count messages.
func messageOutcome(k resilience.EventKind) string {
	switch k {
	case resilience.Success:
		return "published"
	case resilience.Failure:
		return "failed"
	case resilience.Dead:
		return "dead"
	case resilience.Stale:
		return "stale"
	}
	return ""
}

// addSpanEvent adds e to the span in ctx, if that span is recording.
func addSpanEvent(ctx context.Context, e resilience.Event, errorType func(error) string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, keyKind.String(e.Policy.String()), keyName.String(e.Name))
	var name string
	switch e.Kind {
	case resilience.Retry:
		name = SpanEventRetry
		attrs = append(attrs, keyAttempt.Int(e.Attempt))
	case resilience.Rejected:
		name = SpanEventRejected
	default:
		name = SpanEventStateChange
		attrs = append(attrs, keyFrom.String(e.From), keyTo.String(e.To), keyCause.String(e.Cause.String()))
	}
	if e.Delay > 0 {
		attrs = append(attrs, keyDelay.Float64(e.Delay.Seconds()))
	}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(errorType(e.Err)))
	}
	opts := []trace.EventOption{trace.WithAttributes(attrs...)}
	if !e.Time.IsZero() {
		opts = append(opts, trace.WithTimestamp(e.Time))
	}
	span.AddEvent(name, opts...)
}
