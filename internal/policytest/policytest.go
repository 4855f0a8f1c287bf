// Package policytest checks that a [resilience.Policy] keeps the contract
// written in the resilience package documentation. Every policy package in
// this module calls [Run] from its tests, and [RunObserved], which checks
// the events it tells its [resilience.Observer], with a [Recorder].
package policytest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/wait"
)

// Goroutines and calls in the concurrent check.
const (
	goroutines = 64
	callsEach  = 16
)

// Run checks, in one subtest per rule, that the policies newPolicy returns
// keep the contract of [resilience.Policy]:
//
//   - Synchronous: Do returns only after every call to op has returned, even
//     a call that ignores its ctx, and calls to op never overlap, unless
//     [Overlapping] says they may.
//   - ContextPropagated: every call to op receives ctx or a child of it:
//     values, the deadline and cancellation all reach it, on later attempts
//     too.
//   - DoneContext: a ctx that is already done is returned as ctx.Err()
//     without a call to op.
//   - ErrorKept: op's error comes back matching errors.Is.
//   - PanicPropagates: a panic in op reaches the caller with the same value,
//     after exactly one call to op, and what the policy held is released
//     (after 100 panics, a call succeeds).
//   - NoLeakedGoroutines: every goroutine the policy started has returned when
//     Do returns.
//   - Concurrent: 64 goroutines share one policy; each gets its own result
//     (run it under -race).
//   - NilOp: Do with a nil op panics at once with a message that ends in
//     ": nil Op", as the contract's rule for nil values says, not with a
//     nil dereference.
//
// Every check runs in a [synctest] bubble, so the policy's timers run on
// virtual time, and every check looks for goroutines left behind. newPolicy is
// called inside the bubble, once per check. The policy it makes must admit a
// single call and let an op that succeeds succeed, must let errors through
// (a fallback that answers every error hides them), and must still admit a
// call after 100 calls that panicked: configure it with room.
// Under concurrency it may refuse calls, with errors that match
// [resilience.ErrRejected].
func Run(t *testing.T, newPolicy func() resilience.Policy, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	checks := []struct {
		name  string
		check func(*testing.T, resilience.Policy)
	}{
		{"Synchronous", func(t *testing.T, p resilience.Policy) { checkSynchronous(t, p, o.overlap) }},
		{"ContextPropagated", checkContextPropagated},
		{"DoneContext", checkDoneContext},
		{"ErrorKept", checkErrorKept},
		{"PanicPropagates", checkPanicPropagates},
		{"NoLeakedGoroutines", checkNoLeakedGoroutines},
		{"Concurrent", checkConcurrent},
		{"NilOp", checkNilOp},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				before := bubbleGoroutines()
				p := newPolicy()
				require.NotNil(t, p, "newPolicy returned nil")
				c.check(t, p)
				assertNoNewGoroutines(t, before)
			})
		})
	}
}

// An Option changes what [Run] checks.
type Option func(*options)

type options struct {
	overlap bool
}

// Overlapping lets the calls to op that one Do makes run at once, for a
// policy documented to do so, such as a hedge: Run checks the rest of the
// contract as for any policy.
func Overlapping() Option { return func(o *options) { o.overlap = true } }

// probe is an Op that records how it is called.
type probe struct {
	calls     atomic.Int64
	active    atomic.Int64
	maxActive atomic.Int64
	// run is what one call does.
	run func(ctx context.Context) error
}

func (pr *probe) op(ctx context.Context) error {
	pr.calls.Add(1)
	n := pr.active.Add(1)
	for {
		m := pr.maxActive.Load()
		if n <= m || pr.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	defer pr.active.Add(-1)
	return pr.run(ctx)
}

// sleep waits for d of (virtual) time or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if !wait.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// testError is an error no policy can make up.
type testError struct{ id int }

func (e *testError) Error() string { return fmt.Sprintf("policytest: op error %d", e.id) }

func checkSynchronous(t *testing.T, p resilience.Policy, overlap bool) {
	opErr := &testError{id: 1}
	tests := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"succeeds at once", func(context.Context) error { return nil }},
		{"fails at once", func(context.Context) error { return opErr }},
		{"fails slowly", func(ctx context.Context) error {
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return err
			}
			return opErr
		}},
		{"succeeds slowly", func(ctx context.Context) error { return sleep(ctx, 50*time.Millisecond) }},
		{"ignores its ctx", func(context.Context) error {
			_ = sleep(context.Background(), 5*time.Second) // a call that does not honour cancellation
			return opErr
		}},
	}
	for _, tt := range tests {
		pr := &probe{run: tt.run}
		err := p.Do(context.Background(), pr.op)
		assert.Zero(t, pr.active.Load(), "op (%s) was still running when Do returned %v", tt.name, err)
		if !overlap {
			assert.LessOrEqual(t, pr.maxActive.Load(), int64(1), "calls to op (%s) overlapped", tt.name)
		}
		assert.Positive(t, pr.calls.Load(), "op (%s) was never called; Do returned %v", tt.name, err)
	}
}

type ctxKey struct{}

func checkContextPropagated(t *testing.T, p resilience.Policy) {
	// Values and the deadline reach every call, the later ones too: op
	// fails twice, so that a policy that calls it again does.
	marker := new(int)
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), ctxKey{}, marker), deadline)
	defer cancel()
	var missing atomic.Int64
	var n atomic.Int64
	pr := &probe{run: func(ctx context.Context) error {
		if ctx.Value(ctxKey{}) != marker {
			missing.Add(1)
		}
		if d, ok := ctx.Deadline(); !ok || d.After(deadline) {
			missing.Add(1)
		}
		if n.Add(1) <= 2 {
			return &testError{id: 4}
		}
		return nil
	}}
	_ = p.Do(ctx, pr.op)
	require.Positive(t, pr.calls.Load(), "op was never called")
	assert.Zero(t, missing.Load(), "of %d calls to op, some lacked the value or the deadline of Do's ctx: not ctx or a child of it", pr.calls.Load())

	// Cancellation reaches op at once, on the first call and on a later
	// one.
	for _, failFirst := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var doneAt atomic.Pointer[time.Time]
		var calls atomic.Int64
		pr := &probe{run: func(ctx context.Context) error {
			if calls.Add(1) == 1 && failFirst {
				return &testError{id: 5}
			}
			err := sleep(ctx, time.Hour)
			now := time.Now()
			doneAt.Store(&now)
			if err == nil {
				return errors.New("policytest: op's ctx was not cancelled within an hour of the caller's cancel")
			}
			return err
		}}
		result := make(chan error, 1)
		go func() { result <- p.Do(ctx, pr.op) }()
		// Wait, on virtual time, for op to block on its ctx, or for Do to
		// return (a policy that makes no second call).
		var err error
		returned := false
		for range 600 {
			synctest.Wait()
			if pr.active.Load() == 1 && (!failFirst || calls.Load() >= 2) {
				break
			}
			select {
			case err = <-result:
				returned = true
			default:
				time.Sleep(100 * time.Millisecond)
				continue
			}
			break
		}
		if returned {
			cancel()
			require.True(t, failFirst, "Do returned %v before op waited on its ctx", err)
			continue // no second call to check
		}
		require.Equal(t, int64(1), pr.active.Load(), "op is not running while the caller is waiting in Do")
		cancelledAt := time.Now()
		cancel()
		err = <-result
		if at := doneAt.Load(); assert.NotNil(t, at, "op did not return") {
			assert.Equal(t, cancelledAt, *at, "call %d: op's ctx was done %v after the caller cancelled", calls.Load(), at.Sub(cancelledAt))
		}
		assert.ErrorIs(t, err, context.Canceled, "Do's error after the caller cancelled")
	}
}

func checkDoneContext(t *testing.T, p resilience.Policy) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"past its deadline", expired, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		pr := &probe{run: func(context.Context) error { return nil }}
		err := p.Do(tt.ctx, pr.op)
		assert.ErrorIs(t, err, tt.want, "Do with a ctx that is %s", tt.name)
		assert.Zero(t, pr.calls.Load(), "op was called with a ctx that is %s", tt.name)
	}
}

func checkErrorKept(t *testing.T, p resilience.Policy) {
	opErr := &testError{id: 2}
	pr := &probe{run: func(context.Context) error { return opErr }}
	err := p.Do(context.Background(), pr.op)
	assert.ErrorIs(t, err, opErr, "Do's error after op failed with %q", opErr)
}

// panicValue is what op panics with.
type panicValue struct{ n int }

func checkPanicPropagates(t *testing.T, p resilience.Policy) {
	for i := range 100 {
		want := &panicValue{n: i}
		pr := &probe{run: func(context.Context) error { panic(want) }}
		got, err := catch(func() error { return p.Do(context.Background(), pr.op) })
		if !assert.Same(t, want, got, "call %d: the value Do panicked with (Do returned %v)", i, err) ||
			!assert.Equal(t, int64(1), pr.calls.Load(), "call %d: op calls before the panic came back", i) ||
			!assert.Zero(t, pr.active.Load(), "call %d: op was still running after Do panicked", i) {
			return
		}
	}
	pr := &probe{run: func(context.Context) error { return nil }}
	err := p.Do(context.Background(), pr.op)
	assert.NoError(t, err, "Do with an op that succeeds, after 100 calls that panicked: the policy kept what it held")
}

// catch calls f and returns the value it panicked with, or f's error.
func catch(f func() error) (v any, err error) {
	defer func() { v = recover() }()
	return nil, f()
}

func checkNoLeakedGoroutines(t *testing.T, p resilience.Policy) {
	opErr := &testError{id: 3}
	runs := []func(context.Context) error{
		func(context.Context) error { return nil },
		func(context.Context) error { return opErr },
		func(ctx context.Context) error { return sleep(ctx, time.Second) },
	}
	for i, run := range runs {
		before := bubbleGoroutines()
		pr := &probe{run: run}
		err := p.Do(context.Background(), pr.op)
		if !assertNoNewGoroutines(t, before) {
			t.Logf("op %d; Do returned %v", i, err)
		}
	}
}

func checkConcurrent(t *testing.T, p resilience.Policy) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			own := &testError{id: 1000 + g}
			for i := range callsEach {
				fail := (g+i)%3 == 0
				pr := &probe{run: func(context.Context) error {
					if fail {
						return own
					}
					return nil
				}}
				err := p.Do(context.Background(), pr.op)
				assert.Zero(t, pr.active.Load(), "goroutine %d call %d: op still running after Do returned", g, i)
				if errors.Is(err, resilience.ErrRejected) {
					continue
				}
				if fail {
					assert.ErrorIs(t, err, own, "goroutine %d call %d: op failed", g, i)
				} else {
					assert.NoError(t, err, "goroutine %d call %d: op succeeded", g, i)
				}
				var other *testError
				if errors.As(err, &other) {
					assert.Same(t, own, other, "goroutine %d call %d: got another goroutine's error", g, i)
				}
			}
		})
	}
	wg.Wait()
}

// bubbleGoroutines returns the stacks of the goroutines in the calling
// goroutine's synctest bubble, keyed by goroutine header line without state.
func bubbleGoroutines() map[string]string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	blocks := strings.Split(string(buf), "\n\n")
	// The calling goroutine comes first; its header names the bubble.
	_, bubble, ok := strings.Cut(strings.SplitN(blocks[0], "\n", 2)[0], ", synctest bubble ")
	if !ok {
		panic("policytest: bubbleGoroutines called outside a synctest bubble")
	}
	tag := ", synctest bubble " + bubble // e.g. ", synctest bubble 3]:"
	gs := make(map[string]string)
	for _, b := range blocks[1:] {
		header := strings.SplitN(b, "\n", 2)[0]
		if !strings.HasSuffix(header, tag) {
			continue
		}
		id, _, _ := strings.Cut(header, " [")
		gs[id] = b
	}
	return gs
}

// assertNoNewGoroutines waits for the bubble to settle and fails t if it
// holds goroutines that were not there before.
func assertNoNewGoroutines(t *testing.T, before map[string]string) bool {
	t.Helper()
	synctest.Wait()
	var leaked []string
	for id, stack := range bubbleGoroutines() {
		if _, ok := before[id]; !ok {
			leaked = append(leaked, stack)
		}
	}
	if len(leaked) == 0 {
		return true
	}
	assert.Fail(t, "goroutines still running after Do returned", "%d goroutines:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	// Let leaked goroutines that wait on timers finish, so that the bubble
	// can end and later checks still run.
	time.Sleep(24 * time.Hour)
	return false
}

func checkNilOp(t *testing.T, p resilience.Policy) {
	var v any
	func() {
		defer func() { v = recover() }()
		_ = p.Do(t.Context(), nil)
	}()
	msg, ok := v.(string)
	assert.True(t, ok && strings.HasSuffix(msg, ": nil Op"),
		"Do(ctx, nil) panicked with %#v; want a message that ends in \": nil Op\"", v)
}
