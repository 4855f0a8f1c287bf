package resilience_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
)

// Every kind, event kind and cause has a name of its own, and a value out of
// range says what it is.
func TestEventNames(t *testing.T) {
	names := map[string]bool{}
	for k := resilience.PolicyCircuitBreaker; k <= resilience.PolicyTwoPhase; k++ {
		assert.NotContains(t, k.String(), "PolicyKind(", "kind %d", k)
		assert.False(t, names["p"+k.String()], "%s twice", k)
		names["p"+k.String()] = true
	}
	for k := resilience.Success; k <= resilience.Action; k++ {
		assert.NotContains(t, k.String(), "EventKind(", "event kind %d", k)
		assert.False(t, names["e"+k.String()], "%s twice", k)
		names["e"+k.String()] = true
	}
	for c := resilience.FailureRate; c <= resilience.Reset; c++ {
		assert.NotContains(t, c.String(), "Cause(", "cause %d", c)
		assert.False(t, names["c"+c.String()], "%s twice", c)
		names["c"+c.String()] = true
	}
	assert.Equal(t, "PolicyKind(0)", resilience.PolicyKind(0).String())
	assert.Equal(t, "PolicyKind(200)", resilience.PolicyKind(200).String())
	assert.Equal(t, "EventKind(0)", resilience.EventKind(0).String())
	assert.Equal(t, "EventKind(99)", resilience.EventKind(99).String())
	assert.Equal(t, "Cause(0)", resilience.Cause(0).String())
	assert.Equal(t, "Cause(77)", resilience.Cause(77).String())
	assert.Equal(t, "circuitbreaker", resilience.PolicyCircuitBreaker.String())
	assert.Equal(t, "state change", resilience.StateChange.String())
	assert.Equal(t, "failure rate", resilience.FailureRate.String())
}

func TestObservers(t *testing.T) {
	var got []string
	a := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) { got = append(got, "a:"+e.Name) })
	b := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) { got = append(got, "b:"+e.Name) })
	resilience.Observers(a, b).Observe(context.Background(), resilience.Event{Name: "x"})
	assert.Equal(t, []string{"a:x", "b:x"}, got)

	got = nil
	resilience.Observers(b).Observe(context.Background(), resilience.Event{Name: "y"})
	assert.Equal(t, []string{"b:y"}, got)

	resilience.Observers().Observe(context.Background(), resilience.Event{}) // observes nothing, and does not panic
	assert.PanicsWithValue(t, "resilience: Observers: nil Observer at index 1", func() { resilience.Observers(a, nil) })
	assert.PanicsWithValue(t, "resilience: SlogObserver: nil Logger", func() { resilience.SlogObserver(nil) })
}

// logged returns the records o wrote to buf as JSON, one map a record.
func logged(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// The log an operator reads: a breaker that opens is a warning with its
// cause, one that closes is news, a retry is detail, and a success is not
// there at all.
func TestSlogObserverLevels(t *testing.T) {
	var buf bytes.Buffer
	o := resilience.SlogObserver(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	boom := errors.New("boom")

	tests := []struct {
		event resilience.Event
		level string // "" when not logged
		attrs map[string]any
	}{
		{resilience.Event{Time: at, Policy: resilience.PolicyCircuitBreaker, Name: "payments", Kind: resilience.StateChange,
			From: "closed", To: "open", Cause: resilience.FailureRate, Delay: 5 * time.Second},
			"WARN", map[string]any{"resilience.from": "closed", "resilience.to": "open", "resilience.cause": "failure rate", "resilience.delay": float64(5 * time.Second)}},
		{resilience.Event{Time: at, Policy: resilience.PolicyCircuitBreaker, Name: "payments", Kind: resilience.StateChange,
			From: "half-open", To: "closed", Cause: resilience.ProbesSucceeded},
			"INFO", map[string]any{"resilience.to": "closed", "resilience.cause": "probes succeeded"}},
		{resilience.Event{Time: at, Policy: resilience.PolicyRetry, Name: "payments", Kind: resilience.Retry, Attempt: 2, Delay: time.Second, Err: boom},
			"DEBUG", map[string]any{"resilience.attempt": float64(2), "error": "boom"}},
		{resilience.Event{Time: at, Policy: resilience.PolicyBulkhead, Kind: resilience.Rejected, Err: boom}, "DEBUG", nil},
		{resilience.Event{Time: at, Policy: resilience.PolicyOutbox, Kind: resilience.Dead, Count: 3, Subject: "relay-1"},
			"WARN", map[string]any{"resilience.count": float64(3), "resilience.subject": "relay-1"}},
		{resilience.Event{Time: at, Policy: resilience.PolicyRetry, Kind: resilience.Success, Attempt: 1}, "", nil},
		{resilience.Event{Time: at, Policy: resilience.PolicyRetry, Kind: resilience.Ignored, Err: boom}, "", nil},
	}
	for _, tt := range tests {
		o.Observe(context.Background(), tt.event)
		records := logged(t, &buf)
		if tt.level == "" {
			assert.Empty(t, records, "%v is not logged", tt.event.Kind)
			continue
		}
		require.Len(t, records, 1, "%v", tt.event.Kind)
		r := records[0]
		assert.Equal(t, tt.level, r["level"], "%v", tt.event.Kind)
		assert.Equal(t, "resilience: "+tt.event.Kind.String(), r["msg"])
		assert.Equal(t, at.Format(time.RFC3339), r["time"], "the record's time is the event's")
		assert.Equal(t, tt.event.Policy.String(), r["resilience.policy"])
		assert.Equal(t, tt.event.Name, r["resilience.name"])
		assert.Equal(t, tt.event.Kind.String(), r["resilience.event"])
		for k, v := range tt.attrs {
			assert.Equal(t, v, r[k], "%v: %s", tt.event.Kind, k)
		}
		if tt.event.Attempt == 0 {
			assert.NotContains(t, r, "resilience.attempt", "unset fields are left out")
		}
	}
}

// Below the logger's level an event costs no allocation.
func TestSlogObserverBelowLevelAllocatesNothing(t *testing.T) {
	o := resilience.SlogObserver(slog.New(slog.NewTextHandler(io.Discard, nil))) // Info
	e := resilience.Event{Time: time.Now(), Policy: resilience.PolicyRetry, Kind: resilience.Retry, Attempt: 1, Err: io.EOF}
	assert.Zero(t, testing.AllocsPerRun(100, func() { o.Observe(context.Background(), e) }))
}

func BenchmarkSlogObserver(b *testing.B) {
	e := resilience.Event{Time: time.Now(), Policy: resilience.PolicyCircuitBreaker, Name: "payments",
		Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.FailureRate}
	b.Run("logged", func(b *testing.B) {
		o := resilience.SlogObserver(slog.New(slog.NewTextHandler(io.Discard, nil)))
		b.ReportAllocs()
		for b.Loop() {
			o.Observe(context.Background(), e)
		}
	})
	b.Run("below level", func(b *testing.B) {
		o := resilience.SlogObserver(slog.New(slog.NewTextHandler(io.Discard, nil)))
		e := e
		e.Kind, e.From, e.To = resilience.Retry, "", ""
		b.ReportAllocs()
		for b.Loop() {
			o.Observe(context.Background(), e)
		}
	})
}

func ExampleSlogObserver() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // left out, so that the output is the same every run
			}
			return a
		},
	}))
	o := resilience.SlogObserver(logger)
	o.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "payments",
		Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.FailureRate, Delay: 5 * time.Second})
	o.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Name: "payments",
		Kind: resilience.Retry, Attempt: 1, Delay: 100 * time.Millisecond}) // Debug: below Info
	// Output:
	// level=WARN msg="resilience: state change" resilience.policy=circuitbreaker resilience.name=payments resilience.event="state change" resilience.delay=5s resilience.from=closed resilience.to=open resilience.cause="failure rate"
}

func ExampleObserverFunc() {
	opened := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		if e.Kind == resilience.StateChange && e.To == "open" {
			fmt.Printf("%s %s opened: %v\n", e.Policy, e.Name, e.Cause)
		}
	})
	opened.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyCircuitBreaker, Name: "payments",
		Kind: resilience.StateChange, From: "closed", To: "open", Cause: resilience.ConsecutiveFailures})
	// Output:
	// circuitbreaker payments opened: consecutive failures
}
