package resilienceotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	resilienceotel "github.com/resilience-go/resilience/contrib/otel"
	"github.com/resilience-go/resilience/retry"
)

// TestObserverMetrics feeds one event of each route through an Observer
// and checks every metric's name, unit, instrument, attribute set and value.
func TestObserverMetrics(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt())
	require.NoError(t, err)
	ctx := context.Background()
	events := []resilience.Event{
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Success, Attempt: 1, Duration: 250 * time.Millisecond},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Success, Attempt: 3, Duration: 750 * time.Millisecond},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Retry, Attempt: 1, Delay: 100 * time.Millisecond, Err: &codeError{503}},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Retry, Attempt: 2, Delay: 200 * time.Millisecond, Err: &codeError{502}},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.GaveUp, Attempt: 3, Err: &retry.ExhaustedError{Attempts: 3}},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Failure, Attempt: 3, Duration: 2 * time.Second, Err: fmt.Errorf("pay: %w", &retry.ExhaustedError{Attempts: 3})},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.Rejected, Delay: time.Second, Err: bulkhead.ErrFull},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.Ignored, Duration: time.Second / 2, Err: context.Canceled},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.FailureRate, Delay: 5 * time.Second},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.StateChange, From: "open", To: "half-open", Cause: resilience.BreakElapsed},
		{Policy: resilience.PolicyTimeout, Name: "", Kind: resilience.TimedOut, Duration: time.Second, Err: context.DeadlineExceeded},
		{Policy: resilience.PolicyTimeout, Kind: resilience.Overrun, Delay: time.Second},
		{Policy: resilience.PolicyFallback, Name: "quote", Kind: resilience.FellBack, Duration: time.Second / 4, Err: errors.New("no quote")},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Success, Count: 3, Subject: "relay-1"},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Success, Count: 2, Subject: "relay-2"},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Failure, Count: 1, Err: errors.New("nack"), Subject: "relay-1"},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Dead, Count: 1, Err: errors.New("nack"), Subject: "relay-1"},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Stale, Count: 4, Subject: "relay-2"},
		{Policy: resilience.PolicyOutbox, Name: "orders", Kind: resilience.Error, Err: fmt.Errorf("claim: %w", context.DeadlineExceeded), Subject: "relay-2"},
		{Policy: resilience.PolicySaga, Name: "checkout", Kind: resilience.Started, Subject: "order-1/reserve"},
		{Policy: resilience.PolicySaga, Name: "checkout", Kind: resilience.Compensated, Subject: "order-1/reserve"},
		{Policy: resilience.PolicySaga, Name: "checkout", Kind: resilience.Dead, Subject: "order-2"},
		{Policy: resilience.PolicyAdaptiveLimiter, Name: "api", Kind: resilience.StateChange, From: "a", To: "b"},
	}
	for _, e := range events {
		obs.Observe(ctx, e)
	}
	got := m.collect(t, false)
	want := []string{
		"resilience.attempts {attempt} histogram {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=3",
		"resilience.attempts {attempt} histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} count=2 sum=4",
		"resilience.call.duration s histogram {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} count=1 sum=2",
		"resilience.call.duration s histogram {error.type=_OTHER resilience.outcome=fallback resilience.policy.kind=fallback resilience.policy.name=quote} count=1 sum=0.25",
		"resilience.call.duration s histogram {error.type=context.Canceled resilience.outcome=ignored resilience.policy.kind=circuitbreaker resilience.policy.name=pay} count=1 sum=0.5",
		"resilience.call.duration s histogram {error.type=context.DeadlineExceeded resilience.outcome=timeout resilience.policy.kind=timeout resilience.policy.name=} count=1 sum=1",
		"resilience.call.duration s histogram {error.type=resilience.Rejection resilience.outcome=rejected resilience.policy.kind=circuitbreaker resilience.policy.name=pay} count=1 sum=0",
		"resilience.call.duration s histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} count=2 sum=1",
		"resilience.calls {call} counter {error.type=*retry.ExhaustedError resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay} 1",
		"resilience.calls {call} counter {error.type=_OTHER resilience.outcome=fallback resilience.policy.kind=fallback resilience.policy.name=quote} 1",
		"resilience.calls {call} counter {error.type=context.Canceled resilience.outcome=ignored resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 1",
		"resilience.calls {call} counter {error.type=context.DeadlineExceeded resilience.outcome=timeout resilience.policy.kind=timeout resilience.policy.name=} 1",
		"resilience.calls {call} counter {error.type=resilience.Rejection resilience.outcome=rejected resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 1",
		"resilience.calls {call} counter {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=pay} 2",
		"resilience.circuitbreaker.transitions {transition} counter {resilience.cause=break elapsed resilience.from_state=open resilience.policy.name=pay resilience.to_state=half-open} 1",
		"resilience.circuitbreaker.transitions {transition} counter {resilience.cause=failure rate resilience.from_state=closed resilience.policy.name=pay resilience.to_state=open} 1",
		"resilience.events {event} counter {error.type=*retry.ExhaustedError resilience.event=gave up resilience.policy.kind=retry resilience.policy.name=pay} 1",
		"resilience.events {event} counter {error.type=context.DeadlineExceeded resilience.event=error resilience.policy.kind=outbox resilience.policy.name=orders} 1",
		"resilience.events {event} counter {resilience.cause=Cause(0) resilience.event=state change resilience.from_state=a resilience.policy.kind=adaptivelimit resilience.policy.name=api resilience.to_state=b} 1",
		"resilience.events {event} counter {resilience.event=compensated resilience.policy.kind=saga resilience.policy.name=checkout} 1",
		"resilience.events {event} counter {resilience.event=dead resilience.policy.kind=saga resilience.policy.name=checkout} 1",
		"resilience.events {event} counter {resilience.event=overrun resilience.policy.kind=timeout resilience.policy.name=} 1",
		"resilience.events {event} counter {resilience.event=started resilience.policy.kind=saga resilience.policy.name=checkout} 1",
		"resilience.outbox.messages {message} counter {error.type=_OTHER resilience.outcome=dead resilience.policy.name=orders} 1",
		"resilience.outbox.messages {message} counter {error.type=_OTHER resilience.outcome=failed resilience.policy.name=orders} 1",
		"resilience.outbox.messages {message} counter {resilience.outcome=published resilience.policy.name=orders} 5",
		"resilience.outbox.messages {message} counter {resilience.outcome=stale resilience.policy.name=orders} 4",
		"resilience.retry.delay s histogram {error.type=*resilienceotel_test.codeError resilience.policy.kind=retry resilience.policy.name=pay} count=2 sum=0.30000000000000004",
	}
	assert.Equal(t, want, got)
}

// TestObserverBuckets checks the bucket boundaries: gRPC A96's for
// attempts, seconds from 5 ms to a minute for durations and waits.
func TestObserverBuckets(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt())
	require.NoError(t, err)
	obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Kind: resilience.Success, Attempt: 2, Duration: 30 * time.Millisecond})
	obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Kind: resilience.Retry, Attempt: 1, Delay: 45 * time.Second})
	got := m.collect(t, true)
	want := []string{
		"resilience.attempts {attempt} histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=} count=1 sum=2 bounds=[1 2 3 4 5] counts=[0 1 0 0 0 0]",
		"resilience.call.duration s histogram {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=} count=1 sum=0.03 bounds=[0.005 0.01 0.025 0.05 0.075 0.1 0.25 0.5 0.75 1 2.5 5 7.5 10 30 60] counts=[0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0]",
		"resilience.calls {call} counter {resilience.outcome=success resilience.policy.kind=retry resilience.policy.name=} 1",
		"resilience.retry.delay s histogram {resilience.policy.kind=retry resilience.policy.name=} count=1 sum=45 bounds=[0.005 0.01 0.025 0.05 0.075 0.1 0.25 0.5 0.75 1 2.5 5 7.5 10 30 60] counts=[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0]",
	}
	assert.Equal(t, want, got)
}

// TestObserverBoundedErrorType feeds failures with 1,000 distinct messages,
// of errors.New, fmt.Errorf and an error type of the program's own, and
// checks that they make one error.type value each, and one series.
func TestObserverBoundedErrorType(t *testing.T) {
	tests := []struct {
		name string
		err  func(i int) error
		want string
	}{
		{"errors.New", func(i int) error { return errors.New("user " + fmt.Sprint(i) + " not found") }, "_OTHER"},
		{"fmt.Errorf", func(i int) error { return fmt.Errorf("key %d: timeout after %dms", i, i*7) }, "_OTHER"},
		{"wrapped type", func(i int) error { return fmt.Errorf("call %d: %w", i, &codeError{500 + i}) }, "*resilienceotel_test.codeError"},
		{"wrapped sentinel", func(i int) error { return fmt.Errorf("call %d: %w", i, context.DeadlineExceeded) }, "context.DeadlineExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMeter()
			obs, err := resilienceotel.NewObserver(m.opt())
			require.NoError(t, err)
			for i := range 1000 {
				obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Name: "pay",
					Kind: resilience.Failure, Attempt: 3, Duration: time.Second, Err: tt.err(i)})
			}
			got := m.collect(t, false)
			want := "{error.type=" + tt.want + " resilience.outcome=failure resilience.policy.kind=retry resilience.policy.name=pay}"
			require.Len(t, got, 3, "one series per instrument: %v", got)
			for _, line := range got {
				assert.Contains(t, line, want)
			}
			assert.True(t, strings.HasSuffix(got[2], " 1000"), "calls: %s", got[2])
		})
	}
}

// TestObserverWithErrorType checks that WithErrorType's function names the
// errors.
func TestObserverWithErrorType(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt(), resilienceotel.WithErrorType(func(err error) string {
		if ce, ok := errors.AsType[*codeError](err); ok {
			return fmt.Sprintf("%dxx", ce.code/100)
		}
		return resilienceotel.ErrorType(err)
	}))
	require.NoError(t, err)
	for _, code := range []int{500, 502, 503, 404} {
		obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.Failure, Err: &codeError{code}})
	}
	got := m.collect(t, false)
	var calls []string
	for _, line := range got {
		if strings.HasPrefix(line, "resilience.calls ") {
			calls = append(calls, line)
		}
	}
	assert.Equal(t, []string{
		"resilience.calls {call} counter {error.type=4xx resilience.outcome=failure resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 1",
		"resilience.calls {call} counter {error.type=5xx resilience.outcome=failure resilience.policy.kind=circuitbreaker resilience.policy.name=pay} 3",
	}, calls)
}

// TestObserverManyNames checks that names past the cache's bound are still
// recorded.
func TestObserverManyNames(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt())
	require.NoError(t, err)
	const n = 5000
	for i := range n {
		obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyFallback, Name: fmt.Sprint("f", i), Kind: resilience.Overrun})
	}
	obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyFallback, Name: "f4999", Kind: resilience.Overrun})
	got := m.collect(t, false)
	// The SDK keeps 2000 series per instrument, the last of them
	// otel.metric.overflow=true for the events past the others.
	require.Len(t, got, 2000)
	assert.Equal(t, "resilience.events {event} counter {otel.metric.overflow=true} 3002", got[0])
}

// TestObserverSpanEvents checks the events added to the caller's span.
func TestObserverSpanEvents(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt())
	require.NoError(t, err)
	sr := tracetest.NewSpanRecorder()
	ctx, span := newTracer(sr).Start(context.Background(), "call")
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range []resilience.Event{
		{Time: at, Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Retry, Attempt: 1, Delay: 100 * time.Millisecond, Err: &codeError{503}},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.ConsecutiveFailures, Delay: 5 * time.Second},
		{Policy: resilience.PolicyCircuitBreaker, Name: "pay", Kind: resilience.Rejected, Delay: 2 * time.Second, Err: bulkhead.ErrFull},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.Success, Attempt: 2},
		{Policy: resilience.PolicyRetry, Name: "pay", Kind: resilience.GaveUp, Err: errors.New("x")},
	} {
		obs.Observe(ctx, e)
	}
	span.End()
	require.Len(t, sr.Ended(), 1)
	got := sr.Ended()[0]
	assert.Equal(t, []string{
		"resilience.retry {error.type=*resilienceotel_test.codeError resilience.attempt=1 resilience.delay=0.1 resilience.policy.kind=retry resilience.policy.name=pay}",
		"resilience.state_change {resilience.cause=consecutive failures resilience.delay=5 resilience.from_state=closed resilience.policy.kind=circuitbreaker resilience.policy.name=pay resilience.to_state=open}",
		"resilience.rejected {error.type=resilience.Rejection resilience.delay=2 resilience.policy.kind=circuitbreaker resilience.policy.name=pay}",
	}, spanEvents(got))
	assert.Equal(t, at, got.Events()[0].Time, "the event's time")
	assert.Equal(t, codes.Unset, got.Status().Code, "the observer leaves the span's status to its owner")

	// No span, or one that does not record: nothing to add, nothing fails.
	obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Kind: resilience.Retry})
	obs.Observe(ctx, resilience.Event{Policy: resilience.PolicyRetry, Kind: resilience.Retry}) // ended
	assert.Len(t, sr.Ended()[0].Events(), 3)
}

// TestNewObserverPanics checks that a nil option is refused at once, with a
// message that names it.
func TestNewObserverPanics(t *testing.T) {
	assert.PanicsWithValue(t, "resilienceotel: NewObserver: nil Option at index 1", func() {
		_, _ = resilienceotel.NewObserver(resilienceotel.WithErrorType(resilienceotel.ErrorType), nil)
	})
	assert.PanicsWithValue(t, "resilienceotel: WithMeterProvider(nil)", func() { resilienceotel.WithMeterProvider(nil) })
	assert.PanicsWithValue(t, "resilienceotel: WithTracerProvider(nil)", func() { resilienceotel.WithTracerProvider(nil) })
	assert.PanicsWithValue(t, "resilienceotel: WithPropagator(nil)", func() { resilienceotel.WithPropagator(nil) })
	assert.PanicsWithValue(t, "resilienceotel: WithErrorType(nil)", func() { resilienceotel.WithErrorType(nil) })
}

// TestObserverConcurrent records from many goroutines at once, under
// -race, and checks that every event is counted.
func TestObserverConcurrent(t *testing.T) {
	m := newMeter()
	obs, err := resilienceotel.NewObserver(m.opt())
	require.NoError(t, err)
	const goroutines, each = 16, 200
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				obs.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyBulkhead,
					Name: fmt.Sprint("b", (g+i)%7), Kind: resilience.Rejected, Err: bulkhead.ErrFull})
			}
		}()
	}
	for range goroutines {
		<-done
	}
	var total int
	for _, line := range m.collect(t, false) {
		if strings.HasPrefix(line, "resilience.calls ") {
			var n int
			_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n)
			require.NoError(t, err)
			total += n
		}
	}
	assert.Equal(t, goroutines*each, total)
}

// TestErrorType checks the names ErrorType gives, and that it allocates
// nothing.
func TestErrorType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"errors.New", errors.New("x"), "_OTHER"},
		{"fmt.Errorf", fmt.Errorf("x %d", 1), "_OTHER"},
		{"joined", errors.Join(&codeError{1}, &codeError{2}), "_OTHER"},
		{"two %w", fmt.Errorf("%w and %w", &codeError{1}, &codeError{2}), "_OTHER"},
		{"type", &codeError{1}, "*resilienceotel_test.codeError"},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", &codeError{1})), "*resilienceotel_test.codeError"},
		{"canceled", context.Canceled, "context.Canceled"},
		{"wrapped deadline", fmt.Errorf("a: %w", context.DeadlineExceeded), "context.DeadlineExceeded"},
		{"rejection", bulkhead.ErrFull, "resilience.Rejection"},
		{"exhausted", &retry.ExhaustedError{Err: &codeError{1}}, "*retry.ExhaustedError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, resilienceotel.ErrorType(tt.err), "ErrorType(%#v)", tt.err)
			assert.Zero(t, testing.AllocsPerRun(100, func() { resilienceotel.ErrorType(tt.err) }), "allocations")
		})
	}
}
