package policytest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
)

// Recorder is a [resilience.Observer] that keeps the events it is given,
// and the ctx of each, for a test to read back. It is safe for concurrent
// use; its zero value is ready to use.
type Recorder struct {
	mu     sync.Mutex
	events []resilience.Event
	ctxs   []context.Context
}

// Observe keeps e and ctx.
func (r *Recorder) Observe(ctx context.Context, e resilience.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
}

// Events returns the events kept so far, oldest first.
func (r *Recorder) Events() []resilience.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Contexts returns the ctx of each event kept so far, oldest first.
func (r *Recorder) Contexts() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ctxs)
}

// Kinds returns the kinds of the events kept so far, oldest first.
func (r *Recorder) Kinds() []resilience.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds := make([]resilience.EventKind, len(r.events))
	for i, e := range r.events {
		kinds[i] = e.Kind
	}
	return kinds
}

// Reset forgets the events kept so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.events, r.ctxs = nil, nil
	r.mu.Unlock()
}

// Ends reports whether k is a kind of event that ends a call through a
// policy: Success, Failure, Ignored, Rejected, TimedOut or FellBack.
func Ends(k resilience.EventKind) bool {
	switch k {
	case resilience.Success, resilience.Failure, resilience.Ignored, resilience.Rejected,
		resilience.TimedOut, resilience.FellBack:
		return true
	}
	return false
}

// observedName is the name RunObserved gives the policies it makes.
const observedName = "observed"

// RunObserved checks, in one subtest per rule, that a policy of kind that
// newPolicy makes tells its observer of each call as [resilience.Event]
// says:
//
//   - Success: a call whose op succeeds after a second ends with one
//     event of those that end a call ([Ends]), the last, a Success of the
//     policy's kind and name (see [resilience.Event]), with a Duration of a
//     second and the Time at which Do returns.
//   - Failure: a call whose op fails ends with a Failure, TimedOut or
//     FellBack event, the only event that ends it, whose Err matches the
//     op's error.
//   - CallerCancelled: a call whose caller cancels its ctx while op runs
//     ends with Ignored.
//   - DoneContext: a call whose ctx is done before it starts makes no
//     event.
//   - CallContext: each event of a call comes with the call's ctx, or a
//     child of it.
//   - NoAllocs: the observer adds no allocation to a call that succeeds or
//     fails: its events are values.
//
// newPolicy makes a policy named name that tells o, or, for a nil o, a
// policy with no observer, configured alike. The policy must let an op that
// succeeds run at once, must admit calls while their op fails, and must
// hand the op's error to the caller or to a fallback. Every check runs in a
// [synctest] bubble, and newPolicy is called inside it.
func RunObserved(t *testing.T, kind resilience.PolicyKind, newPolicy func(name string, o resilience.Observer) resilience.Policy) {
	t.Helper()
	checks := []struct {
		name  string
		check func(*testing.T, resilience.PolicyKind, func(string, resilience.Observer) resilience.Policy)
	}{
		{"Success", checkObservedSuccess},
		{"Failure", checkObservedFailure},
		{"CallerCancelled", checkObservedCallerCancelled},
		{"DoneContext", checkObservedDoneContext},
		{"CallContext", checkObservedCallContext},
		{"NoAllocs", checkObservedNoAllocs},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { c.check(t, kind, newPolicy) })
		})
	}
}

// ending returns the events of events that end a call.
func ending(events []resilience.Event) []resilience.Event {
	var out []resilience.Event
	for _, e := range events {
		if Ends(e.Kind) {
			out = append(out, e)
		}
	}
	return out
}

// checkEnd checks that events end with one event that ends the call, of
// the policy's kind and name, and returns it.
func checkEnd(t *testing.T, kind resilience.PolicyKind, events []resilience.Event) (resilience.Event, bool) {
	t.Helper()
	ends := ending(events)
	if !assert.Len(t, ends, 1, "events that end the call, of %v", events) ||
		!assert.Equal(t, ends[0], events[len(events)-1], "the event that ends the call is the last of %v", events) {
		return resilience.Event{}, false
	}
	e := ends[0]
	assert.Equal(t, kind, e.Policy, "Policy of %+v", e)
	assert.Equal(t, observedName, e.Name, "Name of %+v", e)
	return e, true
}

func checkObservedSuccess(t *testing.T, kind resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	var rec Recorder
	p := newPolicy(observedName, &rec)
	err := p.Do(context.Background(), func(ctx context.Context) error { return sleep(ctx, time.Second) })
	require.NoError(t, err)
	e, ok := checkEnd(t, kind, rec.Events())
	if !ok {
		return
	}
	assert.Equal(t, resilience.Success, e.Kind, "the event that ends a call that succeeded: %+v", e)
	assert.Equal(t, time.Second, e.Duration, "Duration of a call whose op took a second: %+v", e)
	assert.True(t, e.Time.Equal(time.Now()), "Time %v of the event that ends the call, which ended at %v", e.Time, time.Now())
	assert.NoError(t, e.Err, "Err of %+v", e)
}

func checkObservedFailure(t *testing.T, kind resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	var rec Recorder
	p := newPolicy(observedName, &rec)
	opErr := &testError{id: 10}
	_ = p.Do(context.Background(), func(context.Context) error { return opErr })
	e, ok := checkEnd(t, kind, rec.Events())
	if !ok {
		return
	}
	assert.Contains(t, []resilience.EventKind{resilience.Failure, resilience.TimedOut, resilience.FellBack}, e.Kind,
		"the event that ends a call whose op failed: %+v", e)
	assert.ErrorIs(t, e.Err, opErr, "Err of %+v", e)
}

func checkObservedCallerCancelled(t *testing.T, kind resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	var rec Recorder
	p := newPolicy(observedName, &rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = p.Do(ctx, func(ctx context.Context) error {
		cancel()
		return ctx.Err()
	})
	if e, ok := checkEnd(t, kind, rec.Events()); ok {
		assert.Equal(t, resilience.Ignored, e.Kind, "the event that ends a call whose caller cancelled: %+v", e)
		assert.ErrorIs(t, e.Err, context.Canceled, "Err of %+v", e)
	}
}

func checkObservedDoneContext(t *testing.T, _ resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	var rec Recorder
	p := newPolicy(observedName, &rec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Do(ctx, func(context.Context) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, rec.Events(), "events of a call whose ctx was done before it started")
}

// callKey is the key of the value that marks the ctx of a call.
type callKey struct{}

func checkObservedCallContext(t *testing.T, _ resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	var rec Recorder
	p := newPolicy(observedName, &rec)
	opErr := &testError{id: 11}
	for i, run := range []func(context.Context) error{
		func(context.Context) error { return nil },
		func(context.Context) error { return opErr },
	} {
		rec.Reset()
		ctx := context.WithValue(context.Background(), callKey{}, i)
		_ = p.Do(ctx, run)
		ctxs := rec.Contexts()
		require.NotEmpty(t, ctxs, "call %d made no event", i)
		for j, c := range ctxs {
			assert.Equal(t, i, c.Value(callKey{}), "call %d: the ctx of its event %+v", i, rec.Events()[j])
		}
	}
}

func checkObservedNoAllocs(t *testing.T, _ resilience.PolicyKind, newPolicy func(string, resilience.Observer) resilience.Policy) {
	if RaceEnabled {
		t.Skip("the race detector allocates on its own; make test runs the allocation tests without it")
	}
	nop := resilience.ObserverFunc(func(context.Context, resilience.Event) {})
	opErr := &testError{id: 12}
	ctx := context.Background()
	for _, run := range []struct {
		name string
		op   resilience.Op
	}{
		{"succeeds", func(context.Context) error { return nil }},
		{"fails", func(context.Context) error { return opErr }},
	} {
		bare, observed := newPolicy(observedName, nil), newPolicy(observedName, nop)
		want := testing.AllocsPerRun(50, func() { _ = bare.Do(ctx, run.op) })
		got := testing.AllocsPerRun(50, func() { _ = observed.Do(ctx, run.op) })
		assert.Equal(t, want, got, "allocations of a call whose op %s, with a no-op observer and without", run.name)
	}
}
