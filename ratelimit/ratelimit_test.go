package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/ratelimit"
)

func nop(context.Context) error { return nil }

func TestContract(t *testing.T) {
	// Room for the suite's 100 panicking calls in a row.
	policytest.Run(t, func() resilience.Policy { return ratelimit.New(10, 200) })
	t.Run("waiting", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return ratelimit.New(10, 5, ratelimit.WithMaxWait(time.Second)) })
	})
	t.Run("FromLimiter", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return ratelimit.FromLimiter(rate.NewLimiter(10, 200)) })
	})
	t.Run("Keyed", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return ratelimit.NewKeyed(10, 200).Policy(func(context.Context) string { return "tenant" })
		})
	})
	t.Run("Inf", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return ratelimit.New(rate.Inf, 0) })
	})
}

func TestBurstThenRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(10, 3) // a token every 100ms
		for i := range 3 {
			assert.True(t, l.Allow(), "burst token %d", i)
		}
		assert.False(t, l.Allow(), "the burst is spent")
		time.Sleep(99 * time.Millisecond)
		assert.False(t, l.Allow(), "a token takes 100ms")
		time.Sleep(time.Millisecond)
		assert.True(t, l.Allow(), "one token after 100ms")
		assert.False(t, l.Allow())
		time.Sleep(time.Hour)
		for range 3 {
			assert.True(t, l.Allow())
		}
		assert.False(t, l.Allow(), "an idle hour refills the burst, no more")
	})
}

func TestRefusalCarriesAHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(2, 1) // a token every 500ms
		require.NoError(t, l.Do(context.Background(), nop))
		time.Sleep(200 * time.Millisecond)
		calls := 0
		err := l.Do(context.Background(), func(context.Context) error { calls++; return nil })
		assert.Zero(t, calls)
		assert.ErrorIs(t, err, ratelimit.ErrLimited)
		assert.ErrorIs(t, err, resilience.ErrRejected)
		assert.EqualError(t, err, "ratelimit: limited")
		d, ok := resilience.RetryAfter(fmt.Errorf("send: %w", err))
		assert.True(t, ok)
		assert.Equal(t, 300*time.Millisecond, d)
		assert.Equal(t, ratelimit.Metrics{Rejected: 1}, l.Metrics())
		time.Sleep(d)
		_, ok = resilience.RetryAfter(err)
		assert.False(t, ok, "once the token is due, the refusal's hint of zero is no hint")
		assert.NoError(t, l.Do(context.Background(), nop), "the token the hint announced")
	})
}

func TestMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(10, 1, ratelimit.WithMaxWait(250*time.Millisecond))
		start := time.Now()
		var (
			mu  sync.Mutex
			ran []time.Duration
		)
		op := func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			ran = append(ran, time.Since(start))
			return nil
		}
		for range 3 {
			require.NoError(t, l.Do(context.Background(), op))
		}
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, ran, "each waited for its token")

		// Three callers at once at 200ms: the bucket is empty, the tokens
		// are due at 300, 400 and 500ms; the third would wait 300ms.
		var wg sync.WaitGroup
		var refused atomic.Int32
		errs := make([]error, 3)
		for i := range 3 {
			wg.Go(func() {
				errs[i] = l.Do(context.Background(), op)
				if errs[i] != nil {
					refused.Add(1)
				}
			})
		}
		synctest.Wait()
		assert.Equal(t, int32(1), refused.Load(), "refused at once, not after waiting: %v", errs)
		wg.Wait()
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond}, ran)
	})
}

func TestMaxWaitRespectsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(1, 1, ratelimit.WithMaxWait(time.Minute))
		require.True(t, l.Allow())
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.Do(ctx, nop)
		assert.ErrorIs(t, err, ratelimit.ErrLimited, "the token is due after the deadline")
		assert.Zero(t, time.Since(start), "refused without waiting")

		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		require.NoError(t, l.Do(ctx, nop), "due in 1s, within the 2s deadline")
		assert.Equal(t, time.Second, time.Since(start))
	})
}

func TestCancelDuringWaitGivesTheTokenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(1, 1, ratelimit.WithMaxWait(time.Minute))
		require.True(t, l.Allow())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- l.Do(ctx, func(context.Context) error { t.Error("op ran after the cancel"); return nil })
		}()
		time.Sleep(500 * time.Millisecond)
		cancel()
		assert.Equal(t, context.Canceled, <-done)
		time.Sleep(500 * time.Millisecond)
		assert.True(t, l.Allow(), "the token reserved for the cancelled call is available at 1s")
		assert.False(t, l.Allow())
	})
}

// A call that gives up its wait does not let a later call in ahead of
// those already waiting: with a burst of one, no two calls run at once.
func TestCancelKeepsLaterReservationsInPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(1, 1, ratelimit.WithMaxWait(time.Minute))
		start := time.Now()
		var mu sync.Mutex
		var ran []time.Duration
		op := func(context.Context) error {
			mu.Lock()
			ran = append(ran, time.Since(start))
			mu.Unlock()
			return nil
		}
		require.NoError(t, l.Do(context.Background(), op)) // at 0s
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { assert.Equal(t, context.Canceled, l.Do(ctx, op)) }) // due at 1s
		synctest.Wait()
		wg.Go(func() { assert.NoError(t, l.Do(context.Background(), op)) }) // due at 2s
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		cancel() // the first waiter gives up; the second keeps its time
		synctest.Wait()
		wg.Go(func() { assert.NoError(t, l.Do(context.Background(), op)) })
		wg.Wait()
		assert.Equal(t, []time.Duration{0, 2 * time.Second, 3 * time.Second}, ran)
	})
}

func TestReserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(4, 2) // a token every 250ms
		for _, want := range []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond} {
			r := l.Reserve(time.Second)
			require.True(t, r.OK())
			assert.Equal(t, want, r.Delay())
		}
		r := l.Reserve(700 * time.Millisecond)
		assert.False(t, r.OK(), "the next token is due in 750ms")
		r.Cancel() // cancelling a reservation that is not OK does nothing

		r = l.Reserve(time.Second)
		require.True(t, r.OK())
		assert.Equal(t, 750*time.Millisecond, r.Delay())
		r.Cancel()
		r = l.Reserve(time.Second)
		assert.Equal(t, 750*time.Millisecond, r.Delay(), "the cancelled token is the next one's")
	})
}

func TestFromLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := rate.NewLimiter(2, 1)
		l := ratelimit.FromLimiter(x, ratelimit.WithMaxWait(time.Second))
		require.True(t, l.Allow())
		assert.False(t, x.Allow(), "the token came from the shared limiter")
		start := time.Now()
		require.NoError(t, l.Do(context.Background(), nop))
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "waited for the shared limiter's token")

		strict := ratelimit.FromLimiter(x)
		err := strict.Do(context.Background(), nop)
		assert.ErrorIs(t, err, ratelimit.ErrLimited)
		d, ok := resilience.RetryAfter(err)
		assert.True(t, ok)
		assert.Equal(t, 500*time.Millisecond, d)
	})
}

func TestInf(t *testing.T) {
	l := ratelimit.New(rate.Inf, 0)
	for range 1000 {
		require.True(t, l.Allow())
	}
	assert.True(t, l.Reserve(0).OK())
}

func TestKeysAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := ratelimit.NewKeyed(1, 2)
		for _, key := range []string{"alice", "bob"} {
			assert.True(t, k.AllowKey(key))
			assert.True(t, k.AllowKey(key))
			assert.False(t, k.AllowKey(key), "%s's burst is spent", key)
		}
		err := k.DoKey(context.Background(), "alice", nop)
		assert.ErrorIs(t, err, ratelimit.ErrLimited)
		assert.EqualError(t, err, `ratelimit: limited (key "alice")`)
		var le *ratelimit.LimitedError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, "alice", le.Key())
		assert.Equal(t, time.Second, le.RetryAfter())
		assert.NoError(t, k.DoKey(context.Background(), "carol", nop))
		assert.Equal(t, ratelimit.KeyedMetrics{Rejected: 1, Keys: 3}, k.Metrics())
	})
}

// A gateway that sees a million client addresses keeps a bounded number of
// buckets.
func TestKeyedMemoryIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := ratelimit.NewKeyed(10, 5, ratelimit.WithMaxKeys(1000))
		for i := range 100_000 {
			k.AllowKey(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
			if n := k.Metrics().Keys; n > 1000 {
				t.Fatalf("%d keys kept after %d, the cap is 1000", n, i+1)
			}
		}
		// Idle keys are forgotten: half a second refills every bucket.
		time.Sleep(500 * time.Millisecond)
		for i := range 2000 {
			k.AllowKey(fmt.Sprintf("new-%d", i))
		}
		assert.LessOrEqual(t, k.Metrics().Keys, int64(1000))
	})
}

// Keys met only by reservations that had no time left for a token count
// against the cap too.
func TestKeyedMemoryIsBoundedForRefusedReservations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := ratelimit.NewKeyed(10, 5, ratelimit.WithMaxKeys(1000))
		for i := range 10_000 {
			require.False(t, k.ReserveKey(fmt.Sprint("client-", i), -1).OK())
			if n := k.Metrics().Keys; n > 1000 {
				t.Fatalf("%d keys kept after %d, the cap is 1000", n, i+1)
			}
		}
	})
}

func TestKeyedIdleKeysExpireWithoutTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := ratelimit.NewKeyed(100, 1) // a key's bucket is full 10ms after its last call
		for i := range 10_000 {
			k.AllowKey(fmt.Sprint(i))
		}
		time.Sleep(10 * time.Millisecond)
		for i := range 10_000 {
			k.AllowKey(fmt.Sprint("later-", i))
		}
		assert.LessOrEqual(t, k.Metrics().Keys, int64(10_000), "the first 10000 keys were idle and dropped")
	})
}

func TestKeyedWaitsPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := ratelimit.NewKeyed(10, 1, ratelimit.WithMaxWait(time.Second))
		start := time.Now()
		require.NoError(t, k.DoKey(context.Background(), "a", nop))
		require.NoError(t, k.DoKey(context.Background(), "b", nop))
		assert.Zero(t, time.Since(start), "each key's first token is there")
		require.NoError(t, k.DoKey(context.Background(), "a", nop))
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		r := k.ReserveKey("a", time.Second)
		require.True(t, r.OK())
		assert.Equal(t, 100*time.Millisecond, r.Delay())
	})
}

func TestRefusalAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	l := ratelimit.New(1e-3, 1)
	l.Allow()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = l.Do(ctx, nop) }), "Do, refused")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { l.Allow() }), "Allow, refused")
	fast := ratelimit.New(1e9, 1e9)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = fast.Do(ctx, nop) }), "Do, admitted")
	k := ratelimit.NewKeyed(1e-3, 1)
	k.AllowKey("x")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = k.DoKey(ctx, "x", nop) }), "DoKey, refused")
}

func TestBadArgumentsPanic(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"ratelimit: New(0, 1): want rate.Inf or r >= 1e-6", func() { ratelimit.New(0, 1) }},
		{"ratelimit: New(-1, 1): want rate.Inf or r >= 1e-6", func() { ratelimit.New(-1, 1) }},
		{"ratelimit: New(10, 0): want burst >= 1", func() { ratelimit.New(10, 0) }},
		{"ratelimit: NewKeyed(10, 0): want burst >= 1", func() { ratelimit.NewKeyed(10, 0) }},
		{"ratelimit: FromLimiter: nil *rate.Limiter", func() { ratelimit.FromLimiter(nil) }},
		{"ratelimit: New: nil Option", func() { ratelimit.New(10, 1, nil) }},
		{"ratelimit: NewKeyed: nil Option", func() { ratelimit.NewKeyed(10, 1, nil) }},
		{"ratelimit: FromLimiter: nil Option", func() { ratelimit.FromLimiter(rate.NewLimiter(10, 1), nil) }},
		{"ratelimit: Keyed.Policy: nil keyOf", func() { ratelimit.NewKeyed(10, 1).Policy(nil) }},
		{"ratelimit: WithMaxWait(-1s): want d >= 0", func() { ratelimit.WithMaxWait(-time.Second) }},
		{"ratelimit: WithMaxKeys(0): want n >= 1", func() { ratelimit.WithMaxKeys(0) }},
		{"ratelimit: WithObserver: nil Observer", func() { ratelimit.WithObserver(nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// A nil op, a zero Limiter and a zero Keyed panic at once, even with a done
// ctx.
func TestNilOpAndZeroValuesPanic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.PanicsWithValue(t, "ratelimit: Limiter.Do: nil Op", func() { _ = ratelimit.New(10, 1).Do(ctx, nil) })
	assert.PanicsWithValue(t, "ratelimit: Keyed.DoKey: nil Op", func() { _ = ratelimit.NewKeyed(10, 1).DoKey(ctx, "a", nil) })
	p := ratelimit.NewKeyed(10, 1).Policy(func(context.Context) string { return "a" })
	assert.PanicsWithValue(t, "resilience: PolicyFunc.Do: nil Op", func() { _ = p.Do(ctx, nil) })

	var l ratelimit.Limiter
	const wantLimiter = "ratelimit: zero Limiter; use New"
	assert.PanicsWithValue(t, wantLimiter, func() { l.Allow() })
	assert.PanicsWithValue(t, wantLimiter, func() { _ = l.Do(ctx, nop) })
	assert.PanicsWithValue(t, wantLimiter, func() { l.Reserve(time.Second) })
	assert.PanicsWithValue(t, wantLimiter, func() { l.Metrics() })

	var k ratelimit.Keyed
	const wantKeyed = "ratelimit: zero Keyed; use NewKeyed"
	assert.PanicsWithValue(t, wantKeyed, func() { k.AllowKey("a") })
	assert.PanicsWithValue(t, wantKeyed, func() { _ = k.DoKey(ctx, "a", nop) })
	assert.PanicsWithValue(t, wantKeyed, func() { k.ReserveKey("a", time.Second) })
	assert.PanicsWithValue(t, wantKeyed, func() { k.Policy(func(context.Context) string { return "a" }) })
	assert.PanicsWithValue(t, wantKeyed, func() { k.Metrics() })
}

// The zero Reservation is not OK, and cancelling it does nothing.
func TestZeroReservation(t *testing.T) {
	var r ratelimit.Reservation
	assert.False(t, r.OK())
	assert.Zero(t, r.Delay())
	assert.NotPanics(t, r.Cancel)
}

// Many goroutines share a limiter (run with -race): over a stretch of
// virtual time, they get exactly the tokens the bucket holds.
func TestConcurrentCallersShareTheBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ratelimit.New(100, 10)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 100 {
					if l.Allow() {
						admitted.Add(1)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		// One second of calls: 10 at once, then 100 a second; the last
		// round of calls happens at 990ms.
		assert.Equal(t, int64(10+99), admitted.Load())
		assert.Equal(t, errors.Is(ratelimit.ErrLimited, resilience.ErrRejected), true)
	})
}

func TestObserved(t *testing.T) {
	withObserver := func(name string, o resilience.Observer, opts ...ratelimit.Option) []ratelimit.Option {
		opts = append(opts, ratelimit.WithName(name))
		if o != nil {
			opts = append(opts, ratelimit.WithObserver(o))
		}
		return opts
	}
	tests := []struct {
		name string
		new  func(name string, o resilience.Observer) resilience.Policy
	}{
		{"New", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.New(10, 200, withObserver(name, o)...)
		}},
		{"waiting", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.New(10, 200, withObserver(name, o, ratelimit.WithMaxWait(time.Second))...)
		}},
		{"FromLimiter", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.FromLimiter(rate.NewLimiter(10, 200), withObserver(name, o)...)
		}},
		{"Keyed", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.NewKeyed(10, 200, withObserver(name, o)...).Policy(func(context.Context) string { return "tenant" })
		}},
		{"Inf", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.New(rate.Inf, 0, withObserver(name, o)...)
		}},
		{"Keyed Inf", func(name string, o resilience.Observer) resilience.Policy {
			return ratelimit.NewKeyed(rate.Inf, 0, withObserver(name, o)...).Policy(func(context.Context) string { return "tenant" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { policytest.RunObserved(t, resilience.PolicyRateLimiter, tt.new) })
	}
}

// A refusal is a Rejected event with the retry-after hint; a call that
// waited for its token counts the wait in its Duration.
func TestObserverEvents(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "call")
	tests := []struct {
		name string
		do   func(o resilience.Observer) func(ctx context.Context, op resilience.Op) error
	}{
		{"Limiter", func(o resilience.Observer) func(ctx context.Context, op resilience.Op) error {
			return ratelimit.New(1, 1, ratelimit.WithName("api"), ratelimit.WithMaxWait(time.Second), ratelimit.WithObserver(o)).Do
		}},
		{"Keyed", func(o resilience.Observer) func(ctx context.Context, op resilience.Op) error {
			k := ratelimit.NewKeyed(1, 1, ratelimit.WithName("api"), ratelimit.WithMaxWait(time.Second), ratelimit.WithObserver(o))
			return func(ctx context.Context, op resilience.Op) error { return k.DoKey(ctx, "tenant", op) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec policytest.Recorder
				do := tt.do(&rec)
				require.NoError(t, do(ctx, nop), "the burst's token")
				time.Sleep(500 * time.Millisecond)
				require.NoError(t, do(ctx, nop), "a token half a second away: waits for it")
				cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				err := do(cctx, nop)
				cancel()
				require.ErrorIs(t, err, ratelimit.ErrLimited, "a token a second away, past the deadline")
				cctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
				require.ErrorIs(t, do(cctx, nop), context.Canceled, "the caller gave up waiting")

				events := rec.Events()
				require.Equal(t, []resilience.EventKind{resilience.Success, resilience.Success, resilience.Rejected, resilience.Ignored},
					rec.Kinds())
				assert.Zero(t, events[0].Duration)
				assert.Equal(t, 500*time.Millisecond, events[1].Duration, "the wait for the token")
				assert.Zero(t, events[2].Duration, "refused at once")
				assert.Equal(t, err, events[2].Err)
				assert.Equal(t, time.Second, events[2].Delay, "the refusal's retry-after hint")
				assert.Equal(t, 100*time.Millisecond, events[3].Duration)
				for i, e := range events {
					assert.Equal(t, "api", e.Name, "Name of %+v", e)
					assert.Equal(t, resilience.PolicyRateLimiter, e.Policy, "Policy of %+v", e)
					assert.Equal(t, "call", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
				}
			})
		})
	}
}

// With an observer, an admitted call and a refusal allocate nothing.
func TestObservedCallsAllocateNothing(t *testing.T) {
	ctx := context.Background()
	quiet := ratelimit.WithObserver(resilience.ObserverFunc(func(context.Context, resilience.Event) {}))
	l := ratelimit.New(1e9, 1e9, quiet)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = l.Do(ctx, nop) }), "Limiter.Do")
	k := ratelimit.NewKeyed(10, 1e6, quiet) // a bucket that does not fill again, and so is kept
	_ = k.DoKey(ctx, "a", nop)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = k.DoKey(ctx, "a", nop) }), "Keyed.DoKey")
	refusing := ratelimit.New(1e-6, 1, quiet)
	_ = refusing.Do(ctx, nop)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = refusing.Do(ctx, nop) }), "Limiter.Do, refused")
}
