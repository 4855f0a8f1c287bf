package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
)

// trace records the calls of a test's steps, in order.
type trace struct {
	mu    sync.Mutex
	calls []string
}

func (tr *trace) add(s string) {
	tr.mu.Lock()
	tr.calls = append(tr.calls, s)
	tr.mu.Unlock()
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.calls)
}

// step returns a step that records its calls and fails with failWith, if set.
func (tr *trace) step(name string, failWith error) saga.Item {
	return saga.Step(name,
		func(ctx context.Context, c *saga.Call) error {
			tr.add(name)
			c.SetOutput([]byte(name + "-out"))
			return failWith
		},
		func(ctx context.Context, c *saga.Call) error {
			tr.add("undo " + name + " " + string(c.Output))
			return nil
		})
}

var errDeclined = errors.New("card declined")

func TestSuccessRunsStepsInOrder(t *testing.T) {
	tr := &trace{}
	def := saga.Define("checkout", 1, tr.step("reserve", nil), tr.step("charge", nil), tr.step("ship", nil))
	require.NoError(t, saga.New().Run(context.Background(), def, "o-1", []byte("order")))
	assert.Equal(t, []string{"reserve", "charge", "ship"}, tr.get())
}

func TestFailureCompensatesInReverse(t *testing.T) {
	tr := &trace{}
	def := saga.Define("checkout", 1, tr.step("reserve", nil), tr.step("charge", errDeclined), tr.step("ship", nil))
	err := saga.New().Run(context.Background(), def, "o-1", nil)
	assert.ErrorIs(t, err, errDeclined, "the step's error is matchable")
	var se *saga.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, saga.Error{SagaID: "o-1", Step: "charge", Err: errDeclined, Status: saga.Compensated}, *se)
	assert.EqualError(t, err, "saga o-1: step charge: card declined; compensated")
	// The failed step is compensated too: a call that returned an error may
	// have taken effect. Its output is what it recorded before failing.
	assert.Equal(t, []string{"reserve", "charge", "undo charge charge-out", "undo reserve reserve-out"}, tr.get())
}

func TestCallCarriesKeyInputAndOutputs(t *testing.T) {
	var got []string
	def := saga.Define("pay", 1,
		saga.Step("quote", func(ctx context.Context, c *saga.Call) error {
			c.SetOutput([]byte("42.00"))
			return nil
		}, nil),
		saga.Step("charge", func(ctx context.Context, c *saga.Call) error {
			k, ok := saga.IdempotencyKey(ctx)
			require.True(t, ok)
			got = append(got, k.String(), string(c.Input), string(c.StepOutput("quote")), c.Key.String())
			return errDeclined
		}, func(ctx context.Context, c *saga.Call) error {
			k, _ := saga.IdempotencyKey(ctx)
			got = append(got, k.String())
			return nil
		}),
	)
	_ = saga.New().Run(context.Background(), def, "p-9", []byte("in"))
	assert.Equal(t, []string{"p-9/charge/action", "in", "42.00", "p-9/charge/action", "p-9/charge/compensate"}, got)
}

func TestParallelGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &trace{}
		var inFlight, peak atomic.Int32
		slow := func(name string, d time.Duration, fail error) saga.StepItem {
			return saga.Step(name, func(ctx context.Context, c *saga.Call) error {
				n := inFlight.Add(1)
				if n > peak.Load() {
					peak.Store(n)
				}
				defer inFlight.Add(-1)
				timer := time.NewTimer(d)
				defer timer.Stop()
				select {
				case <-timer.C:
				case <-ctx.Done():
					tr.add(name + " cancelled")
					return ctx.Err()
				}
				tr.add(name)
				return fail
			}, func(ctx context.Context, c *saga.Call) error {
				tr.add("undo " + name)
				return nil
			})
		}
		def := saga.Define("fan-out", 1,
			tr.step("first", nil),
			saga.Parallel(slow("a", time.Second, nil), slow("b", 2*time.Second, errDeclined), slow("c", time.Hour, nil)),
			tr.step("last", nil),
		)
		start := time.Now()
		err := saga.New().Run(context.Background(), def, "f-1", nil)
		assert.ErrorIs(t, err, errDeclined)
		assert.Equal(t, int32(3), peak.Load(), "the group's steps run at once")
		assert.Equal(t, 2*time.Second, time.Since(start), "b's failure cancels c")
		calls := tr.get()
		assert.Equal(t, []string{"first", "a", "b", "c cancelled"}, calls[:4])
		assert.ElementsMatch(t, []string{"undo a", "undo b", "undo c"}, calls[4:7], "the whole group is compensated")
		assert.Equal(t, "undo first first-out", calls[7], "before the groups before it")
		assert.NotContains(t, calls, "last")
	})
}

func TestStepPolicyRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		def := saga.Define("flaky", 1, saga.Step("call", func(ctx context.Context, c *saga.Call) error {
			attempts++
			if attempts < 3 {
				return errors.New("503")
			}
			return nil
		}, nil, saga.WithPolicy(retry.New(retry.WithMaxAttempts(3)))))
		require.NoError(t, saga.New().Run(context.Background(), def, "x", nil))
		assert.Equal(t, 3, attempts)
	})
}

func TestSagaTimeoutCompensates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &trace{}
		def := saga.Define("slow", 1, saga.Timeout(5*time.Second),
			tr.step("reserve", nil),
			saga.Step("wait", func(ctx context.Context, c *saga.Call) error {
				<-ctx.Done()
				assert.ErrorIs(t, context.Cause(ctx), saga.ErrDeadline)
				return ctx.Err()
			}, func(context.Context, *saga.Call) error { tr.add("undo wait"); return nil }),
		)
		start := time.Now()
		err := saga.New().Run(context.Background(), def, "s-1", nil)
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.ErrorIs(t, err, saga.ErrDeadline)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.EqualError(t, err, "saga s-1: step wait: context deadline exceeded (deadline passed); compensated",
			"no saga: inside the saga's error")
		assert.Equal(t, []string{"reserve", "undo wait", "undo reserve reserve-out"}, tr.get())
	})
}

// The caller's cancellation stops the saga going forward, but not its
// compensations.
func TestCompensationsOutliveTheCallersCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var compCtxErr error
		def := saga.Define("cancelled", 1,
			saga.Step("book", func(context.Context, *saga.Call) error { return nil },
				func(ctx context.Context, c *saga.Call) error {
					time.Sleep(time.Second) // a compensation that takes a while
					compCtxErr = ctx.Err()
					return nil
				}),
			saga.Step("pay", func(ctx context.Context, c *saga.Call) error {
				cancel()
				<-ctx.Done()
				return ctx.Err()
			}, nil),
		)
		err := saga.New().Run(ctx, def, "c-1", nil)
		assert.ErrorIs(t, err, context.Canceled)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensated, se.Status)
		assert.NoError(t, compCtxErr, "the compensation's ctx was not cancelled with the caller's")
	})
}

func TestCompensationRetriedThenStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		undo := 0
		errRefund := errors.New("refund service down")
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { undo++; return errRefund }),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		var events []saga.Event
		c := saga.New(saga.WithAttempts(4, 100*time.Millisecond, time.Second),
			saga.WithOnEvent(func(e saga.Event) { events = append(events, e) }))
		start := time.Now()
		err := c.Run(context.Background(), def, "r-1", nil)
		assert.Equal(t, 4, undo, "four attempts")
		// Backoffs of half to all of 100ms, 200ms and 400ms between them.
		assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond)
		assert.LessOrEqual(t, time.Since(start), 700*time.Millisecond)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Stuck, se.Status, "without a store, nobody tries again: never reported as done")
		assert.ErrorIs(t, err, errRefund)
		assert.ErrorIs(t, err, errDeclined)
		require.NotEmpty(t, events)
		assert.Equal(t, saga.StuckEvent, events[len(events)-1].Kind)
	})
}

func TestStepPanicCompensatesThenPanics(t *testing.T) {
	tr := &trace{}
	def := saga.Define("panics", 1, tr.step("reserve", nil),
		saga.Step("bug", func(context.Context, *saga.Call) error { panic("nil map") }, nil))
	assert.PanicsWithValue(t, "nil map", func() { _ = saga.New().Run(context.Background(), def, "b-1", nil) })
	assert.Equal(t, []string{"reserve", "undo reserve reserve-out"}, tr.get(), "compensated before the panic went on")
}

func TestTCC(t *testing.T) {
	tests := []struct {
		name    string
		failTry string
		want    []string
		ok      bool
	}{
		{"all tries succeed", "", []string{"try a", "try b", "confirm a", "confirm b"}, true},
		{"second try fails", "b", []string{"try a", "try b", "cancel b", "cancel a"}, false},
		{"first try fails", "a", []string{"try a", "cancel a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &trace{}
			p := func(name string) saga.TCCItem {
				return saga.Participant(name,
					func(context.Context, *saga.Call) error {
						tr.add("try " + name)
						if name == tt.failTry {
							return errDeclined
						}
						return nil
					},
					func(context.Context, *saga.Call) error { tr.add("confirm " + name); return nil },
					func(context.Context, *saga.Call) error { tr.add("cancel " + name); return nil })
			}
			def := saga.DefineTCC("transfer", 1, p("a"), p("b"))
			err := saga.New().Run(context.Background(), def, "t-1", nil)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
			got := tr.get()
			if tt.ok { // the confirms run at once, in any order
				assert.Equal(t, tt.want[:2], got[:2])
				assert.ElementsMatch(t, tt.want[2:], got[2:])
				return
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTCCConfirmRetriedUntilItSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		confirms := 0
		def := saga.DefineTCC("transfer", 1, saga.Participant("a",
			func(context.Context, *saga.Call) error { return nil },
			func(context.Context, *saga.Call) error {
				confirms++
				if confirms < 3 {
					return errors.New("try later")
				}
				return nil
			},
			func(context.Context, *saga.Call) error { return nil }))
		require.NoError(t, saga.New().Run(context.Background(), def, "t-2", nil))
		assert.Equal(t, 3, confirms)
	})
}

func TestDefinePanicsOnBadDefinitions(t *testing.T) {
	ok := func(context.Context, *saga.Call) error { return nil }
	a := saga.Step("a", ok, nil)
	tests := []struct {
		want string
		f    func()
	}{
		{`saga: Define(""): want a name of 1 to 128 bytes of UTF-8`, func() { saga.Define("", 1, a) }},
		{`saga: Define("x", 0): want version >= 1`, func() { saga.Define("x", 0, a) }},
		{`saga: Define("x"): no step`, func() { saga.Define("x", 1) }},
		{`saga: Define("x"): no step`, func() { saga.Define("x", 1, saga.Timeout(time.Second)) }},
		{`saga: DefineTCC("x"): no step`, func() { saga.DefineTCC("x", 1) }},
		{`saga: Define("x"): item 2 names step "a", as item 1 does`, func() { saga.Define("x", 1, a, a) }},
		{`saga: Define("x"): item 2 names step "a", as item 1 does`, func() {
			saga.Define("x", 1, a, saga.Parallel(saga.Step("b", ok, nil), a))
		}},
		{`saga: Define("x"): item 1 names step "a" twice`, func() { saga.Define("x", 1, saga.Parallel(a, a)) }},
		{`saga: DefineTCC("x"): item 3 names step "p", as item 1 does`, func() {
			saga.DefineTCC("x", 1, saga.Participant("p", ok, ok, ok), saga.Timeout(time.Second), saga.Participant("p", ok, ok, ok))
		}},
		{`saga: Define("x"): item 2 is nil`, func() { saga.Define("x", 1, a, nil) }},
		{`saga: DefineTCC("x"): item 1 is nil`, func() { saga.DefineTCC("x", 1, nil) }},
		{`saga: Define("x"): item 1 is a zero StepItem; use Step`, func() { saga.Define("x", 1, saga.StepItem{}) }},
		{`saga: Define("x"): item 1 (Parallel), step 2, is a zero StepItem; use Step`, func() {
			saga.Define("x", 1, saga.Parallel(a, saga.StepItem{}))
		}},
		{`saga: Define("x"): item 1 is a *saga.StepItem`, func() { saga.Define("x", 1, &a) }},
		{`saga: Define("x"): item 3 is a second Timeout; item 1 is the first`, func() {
			saga.Define("x", 1, saga.Timeout(time.Second), a, saga.Timeout(time.Minute))
		}},
		{`saga: DefineTCC("x"): item 1 is a zero TimeoutItem; use Timeout`, func() { saga.DefineTCC("x", 1, saga.TimeoutItem{}) }},
		{`saga: Step(""): want a name of 1 to 64 bytes of UTF-8`, func() { saga.Step("", ok, nil) }},
		{`saga: Step("a"): nil action`, func() { saga.Step("a", nil, nil) }},
		{`saga: Step("a"): nil StepOption`, func() { saga.Step("a", ok, nil, nil) }},
		{`saga: Participant("p"): try, confirm and cancel are required`, func() { saga.Participant("p", ok, nil, ok) }},
		{`saga: Participant("p"): nil StepOption`, func() { saga.Participant("p", ok, ok, ok, nil) }},
		{`saga: Parallel(): no step`, func() { saga.Parallel() }},
		{`saga: Timeout(0s): want d > 0`, func() { saga.Timeout(0) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// The wrong mixes of items do not compile: a Step or a Parallel group in
// DefineTCC, a Participant in Define, anything but a Step in Parallel.
func TestItemTypesKeepTheMixesApart(t *testing.T) {
	ok := func(context.Context, *saga.Call) error { return nil }
	tests := []struct {
		name string
		item any
		saga bool // an Item of Define
		tcc  bool // a TCCItem of DefineTCC
	}{
		{"Step", saga.Step("a", ok, nil), true, false},
		{"Parallel", saga.Parallel(saga.Step("a", ok, nil)), true, false},
		{"Participant", saga.Participant("p", ok, ok, ok), false, true},
		{"Timeout", saga.Timeout(time.Second), true, true},
	}
	for _, tt := range tests {
		_, isItem := tt.item.(saga.Item)
		_, isTCC := tt.item.(saga.TCCItem)
		assert.Equal(t, tt.saga, isItem, "%s is an Item", tt.name)
		assert.Equal(t, tt.tcc, isTCC, "%s is a TCCItem", tt.name)
		_, isStep := tt.item.(saga.StepItem)
		assert.Equal(t, tt.name == "Step", isStep, "%s is what Parallel takes", tt.name)
	}
}

func TestRunRefusesBadIDs(t *testing.T) {
	def := saga.Define("x", 1, saga.Step("a", func(context.Context, *saga.Call) error { return nil }, nil))
	assert.ErrorIs(t, saga.New().Run(context.Background(), def, "", nil), saga.ErrNoID)
	assert.Error(t, saga.New().Run(context.Background(), def, string(make([]byte, 129)), nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Equal(t, context.Canceled, saga.New().Run(ctx, def, "y", nil))
	_, err := saga.New().Recover(context.Background(), 1)
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	assert.Equal(t, "compensate", saga.Compensate.String())
	assert.Equal(t, "stuck", saga.Stuck.String())
	assert.Equal(t, "Phase(9)", saga.Phase(9).String())
	assert.Equal(t, "Status(9)", saga.Status(9).String())
	assert.ErrorContains(t, saga.New().Run(context.Background(), def, "bad\xff", nil), "want valid UTF-8")
}

// A step's policy wraps its compensation too, and the call's key reaches
// the ctx the policy hands on.
func TestPolicyWrapsCompensations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		undo := 0
		var keys []string
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(ctx context.Context, c *saga.Call) error {
					k, _ := saga.IdempotencyKey(ctx)
					keys = append(keys, k.String())
					if undo++; undo < 3 {
						return errors.New("503")
					}
					return nil
				}, saga.WithPolicy(retry.New(retry.WithMaxAttempts(3)))),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		err := saga.New(saga.WithAttempts(1, time.Second, time.Second)).Run(context.Background(), def, "p-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensated, se.Status, "the policy's retries, within one attempt of the coordinator")
		assert.Equal(t, []string{"p-1/charge/compensate", "p-1/charge/compensate", "p-1/charge/compensate"}, keys)
	})
}

// A panic goes through the step's policy as panics do: a retry does not
// retry it.
func TestPanicGoesThroughThePolicy(t *testing.T) {
	calls := 0
	def := saga.Define("panics", 1, saga.Step("bug", func(context.Context, *saga.Call) error {
		calls++
		panic("nil map")
	}, nil, saga.WithPolicy(retry.New(retry.WithMaxAttempts(3)))))
	assert.PanicsWithValue(t, "nil map", func() { _ = saga.New().Run(context.Background(), def, "b-1", nil) })
	assert.Equal(t, 1, calls)
}

// A compensation that panics fails its attempt and is retried; Run does not
// panic for it.
func TestCompensationPanicIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		undo := 0
		def := saga.Define("undo-panics", 1,
			saga.Step("a", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error {
					if undo++; undo == 1 {
						panic("flaky")
					}
					return nil
				}),
			saga.Step("b", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		err := saga.New().Run(context.Background(), def, "u-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensated, se.Status)
		assert.Equal(t, 2, undo)
	})
}

// An in-memory saga allocates once per step beyond a fixed cost.
func TestInMemoryAllocations(t *testing.T) {
	if policytest.RaceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	noop := func(context.Context, *saga.Call) error { return nil }
	run := func(n int) float64 {
		var items []saga.Item
		for i := range n {
			items = append(items, saga.Step(fmt.Sprint("s", i), noop, noop))
		}
		def := saga.Define("allocs", 1, items...)
		c := saga.New()
		ctx := context.Background()
		return testing.AllocsPerRun(100, func() {
			if err := c.Run(ctx, def, "id", nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	one, four := run(1), run(4)
	assert.Equal(t, 3.0, four-one, "one allocation per step")
	assert.LessOrEqual(t, one, 6.0)
}

// Each attempt of a compensation runs under a deadline of its own.
func TestSettleTimeoutBoundsEachAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var budgets []time.Duration
		def := saga.Define("hung-refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(ctx context.Context, c *saga.Call) error {
					deadline, ok := ctx.Deadline()
					require.True(t, ok)
					budgets = append(budgets, time.Until(deadline))
					<-ctx.Done() // a refund service that never answers
					return ctx.Err()
				}),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		c := saga.New(saga.WithSettleTimeout(2*time.Second), saga.WithAttempts(2, time.Second, time.Second))
		err := c.Run(context.Background(), def, "h-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Stuck, se.Status)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, []time.Duration{2 * time.Second, 2 * time.Second}, budgets)
	})
}

func TestEventKindString(t *testing.T) {
	tests := []struct {
		k    saga.EventKind
		want string
	}{
		{saga.Alert, "alert"},
		{saga.StuckEvent, "stuck"},
		{saga.LeaseLost, "lease lost"},
		{saga.UnknownDefinition, "unknown definition"},
		{saga.StoreError, "store error"},
		{0, "EventKind(0)"},
		{6, "EventKind(6)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.k.String(), "%d", uint8(tt.k))
	}
}

// Bad options panic in New, or at once; so do the methods of a zero
// Coordinator or Barrier.
func TestMisusePanics(t *testing.T) {
	ctx := context.Background()
	noop := func(context.Context, *saga.Call) error { return nil }
	def := saga.Define("x", 1, saga.Step("a", noop, nil))
	var zero saga.Coordinator
	var barrier saga.Barrier
	tests := []struct {
		want string
		f    func()
	}{
		{"saga: New: nil Option", func() { saga.New(saga.WithOwner("a"), nil) }},
		{"saga: WithOnEvent: nil func", func() { saga.WithOnEvent(nil) }},
		{"saga: WithObserver: nil Observer", func() { saga.WithObserver(nil) }},
		{"saga: WithPolicy(nil)", func() { saga.WithPolicy(nil) }},
		{"saga: zero Coordinator; use New", func() { _ = zero.Run(ctx, def, "x", nil) }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.Recover(ctx, 1) }},
		{"saga: zero Coordinator; use New", func() { _ = zero.RunRecovery(ctx, time.Second) }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.List(ctx, saga.Filter{}) }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.Purge(ctx, time.Hour) }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.ListStuck(ctx, 1) }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.RetryStuck(ctx, "x") }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.MarkResolved(ctx, "x", "") }},
		{"saga: zero Coordinator; use New", func() { _, _ = zero.InstanceStatus(ctx, "x") }},
		{"saga: zero Coordinator; use New", func() { _ = zero.Stats() }},
		{"saga: zero Barrier; use NewBarrier", func() {
			_ = barrier.Call(ctx, nil, saga.Key{SagaID: "x", Step: "a", Phase: saga.Action}, nil)
		}},
		{"saga: zero Barrier; use NewBarrier", func() { _, _ = barrier.Sweep(ctx, nil, time.Hour) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// The saga's own errors inside an Error go without their "saga: ": the
// Error names the saga already.
func TestErrorHasOnePrefix(t *testing.T) {
	tests := []struct {
		err  saga.Error
		want string
	}{
		{saga.Error{SagaID: "o-1", Err: saga.ErrDeadline, Status: saga.Compensated}, "saga o-1: deadline passed; compensated"},
		{saga.Error{SagaID: "o-1", Step: "b", Err: saga.ErrNotConfirmed, Status: saga.Confirming, Compensation: errors.New("b confirm: down")},
			"saga o-1: step b: confirms owed; confirming: b confirm: down"},
		{saga.Error{SagaID: "o-1", Step: "pay", Err: errDeclined, Status: saga.Stuck, Compensation: saga.ErrLeaseLost},
			"saga o-1: step pay: card declined; stuck: lease lost to another coordinator"},
	}
	for _, tt := range tests {
		assert.EqualError(t, &tt.err, tt.want)
	}
}
