package bulkhead_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/internal/policytest"
)

func nop(context.Context) error { return nil }

func TestContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy { return bulkhead.New(16) })
	t.Run("waiting", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return bulkhead.New(4, bulkhead.WithMaxWait(time.Second)) })
	})
}

// call starts b.Do on a goroutine with an op that runs until release is
// closed, and returns where its result will arrive.
func call(b *bulkhead.Bulkhead, ctx context.Context, release <-chan struct{}, running *atomic.Int32) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- b.Do(ctx, func(context.Context) error {
			running.Add(1)
			defer running.Add(-1)
			<-release
			return nil
		})
	}()
	return done
}

func TestFailsFastWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(2)
		release := make(chan struct{})
		var running atomic.Int32
		first, second := call(b, context.Background(), release, &running), call(b, context.Background(), release, &running)
		synctest.Wait()
		require.Equal(t, int32(2), running.Load())
		assert.Equal(t, bulkhead.Metrics{InFlight: 2}, b.Metrics())

		err := b.Do(context.Background(), func(context.Context) error { t.Error("op ran in a full bulkhead"); return nil })
		assert.Equal(t, bulkhead.ErrFull, err)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		_, hinted := resilience.RetryAfter(err)
		assert.False(t, hinted, "no retry-after hint: nobody knows when a slot frees")
		assert.Equal(t, bulkhead.Metrics{InFlight: 2, Rejected: 1}, b.Metrics())

		close(release)
		require.NoError(t, <-first)
		require.NoError(t, <-second)
		assert.Equal(t, bulkhead.Metrics{Rejected: 1}, b.Metrics())
		assert.NoError(t, b.Do(context.Background(), nop))
	})
}

func TestWaitersGetSlotsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Minute))
		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, context.Background(), hold, &running)
		synctest.Wait()

		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := range 5 {
			wg.Go(func() {
				_ = b.Do(context.Background(), func(context.Context) error {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					return nil
				})
			})
			synctest.Wait() // waiter i is queued before waiter i+1 comes
		}
		assert.Equal(t, bulkhead.Metrics{InFlight: 1, Waiting: 5}, b.Metrics())
		// A newcomer with TryDo does not jump the queue, even as the
		// holder leaves.
		close(hold)
		require.NoError(t, <-holder)
		wg.Wait()
		assert.Equal(t, []int{0, 1, 2, 3, 4}, order)
		assert.Equal(t, bulkhead.Metrics{}, b.Metrics())
	})
}

func TestNoBargingPastWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Minute))
		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, context.Background(), hold, &running)
		synctest.Wait()
		waiterHold := make(chan struct{})
		waiter := call(b, context.Background(), waiterHold, &running)
		synctest.Wait()
		close(hold)
		require.NoError(t, <-holder)
		synctest.Wait()
		// The freed slot went to the waiter: a newcomer finds it taken.
		assert.Equal(t, bulkhead.ErrFull, b.TryDo(context.Background(), nop))
		close(waiterHold)
		require.NoError(t, <-waiter)
	})
}

func TestWaitEndsAtMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(2*time.Second))
		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, context.Background(), hold, &running)
		synctest.Wait()
		start := time.Now()
		err := b.Do(context.Background(), nop)
		assert.Equal(t, bulkhead.ErrFull, err)
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Equal(t, bulkhead.Metrics{InFlight: 1, Rejected: 1}, b.Metrics())
		close(hold)
		require.NoError(t, <-holder)
	})
}

func TestWaitEndsWithTheCallersContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Hour))
		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, context.Background(), hold, &running)
		synctest.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		assert.Equal(t, context.DeadlineExceeded, b.Do(ctx, nop), "the caller's deadline, not ErrFull")
		assert.Equal(t, bulkhead.Metrics{InFlight: 1}, b.Metrics(), "the waiter left the queue; not counted as rejected")
		close(hold)
		require.NoError(t, <-holder)
	})
}

func TestQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Hour), bulkhead.WithMaxQueue(2))
		hold := make(chan struct{})
		var running atomic.Int32
		results := []<-chan error{call(b, context.Background(), hold, &running)}
		synctest.Wait()
		for range 2 {
			results = append(results, call(b, context.Background(), hold, &running))
		}
		synctest.Wait()
		start := time.Now()
		assert.Equal(t, bulkhead.ErrFull, b.Do(context.Background(), nop), "a third waiter is refused")
		assert.Zero(t, time.Since(start), "at once")
		close(hold)
		for _, r := range results {
			require.NoError(t, <-r)
		}
	})
}

func TestTryDoNeverWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bulkhead.New(1, bulkhead.WithMaxWait(time.Hour))
		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, context.Background(), hold, &running)
		synctest.Wait()
		start := time.Now()
		assert.Equal(t, bulkhead.ErrFull, b.TryDo(context.Background(), nop))
		assert.Zero(t, time.Since(start))
		close(hold)
		require.NoError(t, <-holder)
		assert.NoError(t, b.TryDo(context.Background(), nop))
	})
}

func TestPanicFreesTheSlot(t *testing.T) {
	b := bulkhead.New(1)
	assert.PanicsWithValue(t, "boom", func() {
		_ = b.Do(context.Background(), func(context.Context) error { panic("boom") })
	})
	assert.Equal(t, bulkhead.Metrics{}, b.Metrics())
	assert.NoError(t, b.Do(context.Background(), nop))
}

// However many goroutines call, no more than the limit run at once, and
// every call either runs or is refused (run with -race).
func TestConcurrencyNeverPassesTheLimit(t *testing.T) {
	for _, opts := range [][]bulkhead.Option{nil, {bulkhead.WithMaxWait(time.Millisecond)}, {bulkhead.WithMaxWait(time.Hour), bulkhead.WithMaxQueue(5)}} {
		b := bulkhead.New(3, opts...)
		var running, peak, ran, refused atomic.Int32
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 200 {
					err := b.Do(context.Background(), func(context.Context) error {
						n := running.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						running.Add(-1)
						ran.Add(1)
						return nil
					})
					if err != nil {
						require.Equal(t, bulkhead.ErrFull, err)
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
		assert.LessOrEqual(t, peak.Load(), int32(3))
		assert.Equal(t, int32(32*200), ran.Load()+refused.Load())
		assert.Equal(t, int64(refused.Load()), b.Metrics().Rejected)
		assert.Equal(t, bulkhead.Metrics{Rejected: int64(refused.Load())}, b.Metrics(), "nothing left running or waiting")
	}
}

func TestAllocations(t *testing.T) {
	ctx := context.Background()
	b := bulkhead.New(1)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, nop) }), "Do, a free slot")
	hold := make(chan struct{})
	started := make(chan struct{})
	go func() { _ = b.Do(ctx, func(context.Context) error { close(started); <-hold; return nil }) }()
	<-started
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, nop) }), "Do, refused")
	close(hold)
}

func TestBadArgumentsPanic(t *testing.T) {
	assert.PanicsWithValue(t, "bulkhead: New(0): want 1 <= maxConcurrent <= 2147483647", func() { bulkhead.New(0) })
	assert.PanicsWithValue(t, "bulkhead: WithMaxWait(-1s): want d >= 0", func() { bulkhead.WithMaxWait(-time.Second) })
	assert.PanicsWithValue(t, "bulkhead: WithMaxQueue(-1): want n >= 0", func() { bulkhead.WithMaxQueue(-1) })
	assert.PanicsWithValue(t, "bulkhead: New: nil Option", func() { bulkhead.New(1, nil) })
	assert.PanicsWithValue(t, "bulkhead: WithObserver: nil Observer", func() { bulkhead.WithObserver(nil) })
}

// A nil op and a zero Bulkhead panic at once, even with a done ctx.
func TestNilOpAndZeroBulkheadPanic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := bulkhead.New(1)
	assert.PanicsWithValue(t, "bulkhead: Bulkhead.Do: nil Op", func() { _ = b.Do(ctx, nil) })
	assert.PanicsWithValue(t, "bulkhead: Bulkhead.TryDo: nil Op", func() { _ = b.TryDo(ctx, nil) })
	assert.Equal(t, bulkhead.Metrics{}, b.Metrics(), "a nil op takes no slot")

	var zero bulkhead.Bulkhead
	const want = "bulkhead: zero Bulkhead; use New"
	assert.PanicsWithValue(t, want, func() { _ = zero.Do(ctx, nop) })
	assert.PanicsWithValue(t, want, func() { _ = zero.TryDo(ctx, nop) })
	assert.PanicsWithValue(t, want, func() { zero.Metrics() })
}

func TestObserved(t *testing.T) {
	newBulkhead := func(name string, o resilience.Observer, opts ...bulkhead.Option) resilience.Policy {
		opts = append(opts, bulkhead.WithName(name))
		if o != nil {
			opts = append(opts, bulkhead.WithObserver(o))
		}
		return bulkhead.New(4, opts...)
	}
	policytest.RunObserved(t, resilience.PolicyBulkhead, func(name string, o resilience.Observer) resilience.Policy {
		return newBulkhead(name, o)
	})
	t.Run("waiting", func(t *testing.T) {
		policytest.RunObserved(t, resilience.PolicyBulkhead, func(name string, o resilience.Observer) resilience.Policy {
			return newBulkhead(name, o, bulkhead.WithMaxWait(time.Second))
		})
	})
	t.Run("TryDo", func(t *testing.T) {
		policytest.RunObserved(t, resilience.PolicyBulkhead, func(name string, o resilience.Observer) resilience.Policy {
			return resilience.PolicyFunc(newBulkhead(name, o).(*bulkhead.Bulkhead).TryDo)
		})
	})
}

// A refusal is a Rejected event, after the wait if there was one; a call
// that waited for its slot counts the wait in its Duration; the observer
// is told once the slot is free.
func TestObserverEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		var b *bulkhead.Bulkhead
		var inFlight []int64 // guarded by mu
		var mu sync.Mutex
		b = bulkhead.New(1, bulkhead.WithName("reports"), bulkhead.WithMaxWait(time.Second), bulkhead.WithMaxQueue(1),
			bulkhead.WithObserver(resilience.ObserverFunc(func(ctx context.Context, e resilience.Event) {
				mu.Lock()
				inFlight = append(inFlight, b.Metrics().InFlight)
				mu.Unlock()
				rec.Observe(ctx, e)
			})))
		type key struct{}
		ctx := context.WithValue(context.Background(), key{}, "call")

		hold := make(chan struct{})
		var running atomic.Int32
		holder := call(b, ctx, hold, &running)
		synctest.Wait()
		time.AfterFunc(300*time.Millisecond, func() { close(hold) })
		require.NoError(t, b.Do(ctx, nop), "admitted once the holder is done")
		require.NoError(t, <-holder)
		assert.Equal(t, []resilience.EventKind{resilience.Success, resilience.Success}, rec.Kinds())
		assert.Equal(t, 300*time.Millisecond, rec.Events()[1].Duration, "the wait for the slot")
		inFlight = nil
		require.NoError(t, b.Do(ctx, nop))
		assert.Equal(t, []int64{0}, inFlight, "slots taken as the observer is told of the only call")

		rec.Reset()
		inFlight = nil
		hold = make(chan struct{})
		holder = call(b, ctx, hold, &running)
		synctest.Wait()
		assert.ErrorIs(t, b.Do(ctx, nop), bulkhead.ErrFull, "the wait runs out")
		assert.ErrorIs(t, b.TryDo(ctx, nop), bulkhead.ErrFull, "TryDo never waits")
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		assert.ErrorIs(t, b.Do(cctx, nop), context.Canceled, "the caller gave up waiting")
		close(hold)
		require.NoError(t, <-holder)
		events := rec.Events()
		require.Equal(t, []resilience.EventKind{resilience.Rejected, resilience.Rejected, resilience.Ignored, resilience.Success},
			rec.Kinds())
		assert.Equal(t, time.Second, events[0].Duration, "refused after the wait")
		assert.Equal(t, bulkhead.ErrFull, events[0].Err)
		assert.Zero(t, events[1].Duration, "refused at once")
		assert.Equal(t, 100*time.Millisecond, events[2].Duration)
		assert.ErrorIs(t, events[2].Err, context.Canceled)
		for i, e := range events {
			assert.Equal(t, "reports", e.Name, "Name of %+v", e)
			assert.Equal(t, resilience.PolicyBulkhead, e.Policy, "Policy of %+v", e)
			assert.Zero(t, e.Delay, "a bulkhead gives no retry-after hint: %+v", e)
			assert.Equal(t, "call", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
		}
	})
}

// With an observer, a call and a refusal allocate nothing.
func TestObservedCallsAllocateNothing(t *testing.T) {
	ctx := context.Background()
	b := bulkhead.New(1, bulkhead.WithObserver(resilience.ObserverFunc(func(context.Context, resilience.Event) {})))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, nop) }), "Do")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.TryDo(ctx, nop) }), "TryDo")
	_ = b.Do(ctx, func(context.Context) error {
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, nop) }), "Do, refused")
		return nil
	})
}
