package hedge_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/retry"
)

func TestPolicy(t *testing.T) {
	t.Run("Learning", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return hedge.New() }, policytest.Overlapping())
	})
	t.Run("Hedging", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			return hedge.New(hedge.WithDelay(10*time.Millisecond), hedge.WithMaxHedges(2), hedge.WithMaxExtraLoad(4))
		}, policytest.Overlapping())
	})
	policytest.RunObserved(t, resilience.PolicyHedge, func(name string, o resilience.Observer) resilience.Policy {
		opts := []hedge.Option{hedge.WithName(name), hedge.WithDelay(10 * time.Millisecond), hedge.WithMaxExtraLoad(4)}
		if o != nil {
			opts = append(opts, hedge.WithObserver(o))
		}
		return hedge.New(opts...)
	})
}

// sleep waits d of virtual time, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// script is an op whose attempts, numbered from 0 in the order they
// start, take the time and end with the error their step says, each
// returning its number as its value.
type script struct {
	steps   []step
	mu      sync.Mutex
	started []time.Duration // when each attempt started, since t0
	t0      time.Time
}

type step struct {
	takes time.Duration
	err   error
}

func newScript(steps ...step) *script { return &script{steps: steps, t0: time.Now()} }

func (s *script) fn(ctx context.Context) (int, error) {
	s.mu.Lock()
	i := len(s.started)
	s.started = append(s.started, time.Since(s.t0))
	s.mu.Unlock()
	st := s.steps[i]
	if err := sleep(ctx, st.takes); err != nil {
		return i, err
	}
	return i, st.err
}

func (s *script) starts() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.started...)
}

var (
	errSlow  = errors.New("slow")
	errFatal = errors.New("fatal")
)

// discarded collects the values a hedger hands to its discard hook.
type discarded struct {
	mu     sync.Mutex
	values []any
}

func (d *discarded) discard(v any) {
	d.mu.Lock()
	d.values = append(d.values, v)
	d.mu.Unlock()
}

func (d *discarded) all() []any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]any(nil), d.values...)
}

func TestHedges(t *testing.T) {
	ms := time.Millisecond
	notFatal := hedge.WithRetryIf(func(err error) bool { return !errors.Is(err, errFatal) })
	tests := []struct {
		name    string
		opts    []hedge.Option
		steps   []step
		want    int             // the value Do returns
		wantErr error           // and its error
		starts  []time.Duration // when the attempts started
		took    time.Duration
	}{
		{"the first ends before the delay", nil,
			[]step{{5 * ms, nil}}, 0, nil, []time.Duration{0}, 5 * ms},
		{"a hedge wins", nil,
			[]step{{100 * ms, nil}, {10 * ms, nil}}, 1, nil, []time.Duration{0, 20 * ms}, 30 * ms},
		{"the first wins after the hedge started", nil,
			[]step{{30 * ms, nil}, {50 * ms, nil}}, 0, nil, []time.Duration{0, 20 * ms}, 30 * ms},
		{"a failure starts the next at once", nil,
			[]step{{5 * ms, errSlow}, {10 * ms, nil}}, 1, nil, []time.Duration{0, 5 * ms}, 15 * ms},
		{"an error not worth another try wins", []hedge.Option{notFatal},
			[]step{{100 * ms, nil}, {10 * ms, errFatal}}, 1, errFatal, []time.Duration{0, 20 * ms}, 30 * ms},
		{"every attempt fails: the last error", nil,
			[]step{{50 * ms, errSlow}, {40 * ms, errFatal}}, 1, errFatal, []time.Duration{0, 20 * ms}, 60 * ms},
		{"three hedges, one after another", []hedge.Option{hedge.WithMaxHedges(3)},
			[]step{{time.Second, nil}, {time.Second, nil}, {time.Second, nil}, {15 * ms, nil}}, 3, nil,
			[]time.Duration{0, 20 * ms, 40 * ms, 60 * ms}, 75 * ms},
		{"no more than the hedges allowed", nil,
			[]step{{5 * ms, errSlow}, {5 * ms, errSlow}}, 1, errSlow, []time.Duration{0, 5 * ms}, 10 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var d discarded
				opts := append([]hedge.Option{hedge.WithDelay(20 * ms), hedge.WithMaxExtraLoad(4), hedge.WithDiscard(d.discard)}, tt.opts...)
				h := hedge.New(opts...)
				s := newScript(tt.steps...)
				start := time.Now()
				v, err := resilience.Do(context.Background(), h, s.fn)
				assert.Equal(t, tt.took, time.Since(start), "how long Do took")
				assert.Equal(t, tt.want, v, "the value Do returned")
				if tt.wantErr == nil {
					assert.NoError(t, err)
				} else {
					assert.ErrorIs(t, err, tt.wantErr)
				}
				assert.Equal(t, tt.starts, s.starts(), "when the attempts started")
				var losers []any
				for i := range s.starts() {
					if i != tt.want {
						losers = append(losers, i)
					}
				}
				assert.ElementsMatch(t, losers, d.all(), "the values handed to the discard hook")
			})
		})
	}
}

// A loser that returns a value and an error once it is cancelled after a
// non-retryable error won must not replace the winner's value: the bug a
// "last value wins" rule would have.
func TestLoserValueNeverReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d discarded
		h := hedge.New(hedge.WithDelay(time.Millisecond), hedge.WithMaxExtraLoad(4), hedge.WithDiscard(d.discard),
			hedge.WithRetryIf(func(err error) bool { return !errors.Is(err, errFatal) }))
		var n atomic.Int64
		v, err := resilience.Do(context.Background(), h, func(ctx context.Context) (string, error) {
			if n.Add(1) == 1 {
				<-ctx.Done() // cancelled when the hedge fails for good
				return "loser", ctx.Err()
			}
			return "winner", errFatal
		})
		assert.ErrorIs(t, err, errFatal)
		assert.Equal(t, "winner", v)
		assert.Equal(t, []any{"loser"}, d.all())

		// A loser that succeeds after the winner's failure does not
		// either.
		d.values = nil
		n.Store(0)
		release := make(chan struct{})
		v, err = resilience.Do(context.Background(), h, func(ctx context.Context) (string, error) {
			if n.Add(1) == 1 {
				<-release
				return "late success", nil
			}
			close(release)
			return "winner", errFatal
		})
		assert.ErrorIs(t, err, errFatal)
		assert.Equal(t, "winner", v)
		assert.Equal(t, []any{"late success"}, d.all())
	})
}

func TestCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hedge.New(hedge.WithDelay(10*time.Millisecond), hedge.WithMaxExtraLoad(4))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Millisecond)
		defer cancel()
		s := newScript(step{time.Hour, nil}, step{time.Hour, nil})
		start := time.Now()
		_, err := resilience.Do(ctx, h, s.fn)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 15*time.Millisecond, time.Since(start))
		assert.Len(t, s.starts(), 2)
	})
}

func TestPanicInHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hedge.New(hedge.WithDelay(10*time.Millisecond), hedge.WithMaxExtraLoad(4))
		var n atomic.Int64
		var firstReturned atomic.Bool
		got := func() (v any) {
			defer func() { v = recover() }()
			_ = h.Do(context.Background(), func(ctx context.Context) error {
				if n.Add(1) == 2 {
					panic("in the hedge")
				}
				<-ctx.Done()
				firstReturned.Store(true)
				return ctx.Err()
			})
			return nil
		}()
		assert.Equal(t, "in the hedge", got)
		assert.True(t, firstReturned.Load(), "the first attempt returned before the panic reached the caller")
	})
}

func TestExtraLoadCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hedge.New(hedge.WithDelay(0)) // every call wants a hedge at once
		var calls atomic.Int64
		op := func(ctx context.Context) error {
			calls.Add(1)
			return sleep(ctx, time.Millisecond)
		}
		for range 1000 {
			require.NoError(t, h.Do(context.Background(), op))
		}
		assert.Equal(t, int64(1050), calls.Load(), "attempts of 1000 calls at 5% extra load")
	})
}

// TestAtOnceConcurrently hedges every call at once, from many goroutines
// in a bubble: each call is answered, and the hedges run beside the first
// attempts.
func TestAtOnceConcurrently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hedge.New(hedge.WithDelay(0), hedge.WithMaxHedges(2), hedge.WithMaxExtraLoad(4))
		var attempts atomic.Int64
		op := func(ctx context.Context) error {
			attempts.Add(1)
			return sleep(ctx, time.Millisecond)
		}
		const goroutines, callsEach = 64, 50
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range callsEach {
					assert.NoError(t, h.Do(context.Background(), op))
				}
			})
		}
		wg.Wait()
		n := attempts.Load()
		assert.Greater(t, n, int64(goroutines*callsEach), "hedges ran")
		assert.LessOrEqual(t, n, int64(3*goroutines*callsEach), "at most two hedges a call")
	})
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.NewBudget(0.01, 0)
		h := hedge.New(hedge.WithDelay(0), hedge.WithBudget(b), hedge.WithMaxExtraLoad(1))
		var calls atomic.Int64
		op := func(ctx context.Context) error {
			calls.Add(1)
			return sleep(ctx, time.Millisecond)
		}
		for range 1000 {
			require.NoError(t, h.Do(context.Background(), op))
		}
		assert.Equal(t, int64(1010), calls.Load(), "attempts of 1000 calls with a budget of 1%")
		assert.Equal(t, int64(10), b.Metrics().Retries, "hedges drawn from the budget")
	})
}

func TestQuantileDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hedge.New(hedge.WithMaxExtraLoad(0.001))
		_, ok := h.Delay()
		assert.False(t, ok, "a delay before any latency is known")
		// Latencies 1..100 ms, each once, in a shuffled order: the 95th
		// percentile is 95 ms.
		for i := range 128 {
			d := time.Duration((i*37)%100+1) * time.Millisecond
			require.NoError(t, h.Do(context.Background(), func(ctx context.Context) error { return sleep(ctx, d) }))
		}
		d, ok := h.Delay()
		require.True(t, ok, "a delay after 128 latencies")
		assert.GreaterOrEqual(t, d, 95*time.Millisecond)
		assert.LessOrEqual(t, d, 95*time.Millisecond*17/16, "the 95th percentile, within a bucket's width")

		// A window later with no call, the latencies are forgotten.
		time.Sleep(30 * time.Second)
		_, ok = h.Delay()
		assert.False(t, ok, "a delay after a window without a call")
	})
}

func TestObserverStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		h := hedge.New(hedge.WithName("db"), hedge.WithObserver(&rec), hedge.WithDelay(10*time.Millisecond),
			hedge.WithMaxExtraLoad(4))
		s := newScript(step{time.Hour, nil}, step{5 * time.Millisecond, nil})
		start := time.Now()
		_, err := resilience.Do(context.Background(), h, s.fn)
		require.NoError(t, err)
		events := rec.Events()
		require.Len(t, events, 2)
		assert.Equal(t, resilience.Event{Time: start.Add(10 * time.Millisecond), Policy: resilience.PolicyHedge, Name: "db",
			Kind: resilience.Started, Attempt: 2, Delay: 10 * time.Millisecond}, events[0])
		assert.Equal(t, resilience.Event{Time: start.Add(15 * time.Millisecond), Policy: resilience.PolicyHedge, Name: "db",
			Kind: resilience.Success, Attempt: 2, Duration: 15 * time.Millisecond}, events[1])
	})
}

// A retry around a hedger: resilience.Do returns the value of the winner
// of the last hedged call.
func TestRetryAroundHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d discarded
		h := hedge.New(hedge.WithDelay(10*time.Millisecond), hedge.WithMaxExtraLoad(4), hedge.WithDiscard(d.discard))
		r := retry.New(retry.WithMaxAttempts(2), retry.WithBackoff(retry.Exponential(time.Millisecond, time.Millisecond)))
		// Call 1: both attempts fail; call 2: the hedge wins.
		s := newScript(step{12 * time.Millisecond, errSlow}, step{1 * time.Millisecond, errSlow},
			step{time.Hour, nil}, step{1 * time.Millisecond, nil})
		v, err := resilience.Do(context.Background(), resilience.Chain(r, h), s.fn)
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		assert.ElementsMatch(t, []any{1, 2}, d.all(), "the losers of each hedged call: of the first, the hedge that failed first")
	})
}

func TestOptionsPanic(t *testing.T) {
	tests := []struct {
		want string
		opt  func() hedge.Option
	}{
		{"hedge: WithDelay(-1s): want 0 <= d <= 1h", func() hedge.Option { return hedge.WithDelay(-time.Second) }},
		{"hedge: WithQuantileDelay(0.2, 30s): want 0.5 <= q <= 0.9999, 1s <= window <= 1h", func() hedge.Option {
			return hedge.WithQuantileDelay(0.2, 30*time.Second)
		}},
		{"hedge: WithQuantileDelay(0.95, 10ms): want 0.5 <= q <= 0.9999, 1s <= window <= 1h", func() hedge.Option {
			return hedge.WithQuantileDelay(0.95, 10*time.Millisecond)
		}},
		{"hedge: WithMaxHedges(5): want 1 <= n <= 4", func() hedge.Option { return hedge.WithMaxHedges(5) }},
		{"hedge: WithMaxExtraLoad(0): want 0.001 <= ratio <= 4", func() hedge.Option { return hedge.WithMaxExtraLoad(0) }},
		{"hedge: WithBudget: nil Budget", func() hedge.Option { return hedge.WithBudget(nil) }},
		{"hedge: WithRetryIf: nil f", func() hedge.Option { return hedge.WithRetryIf(nil) }},
		{"hedge: WithDiscard: nil f", func() hedge.Option { return hedge.WithDiscard(nil) }},
		{"hedge: WithObserver: nil Observer", func() hedge.Option { return hedge.WithObserver(nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, func() { tt.opt() })
	}
	assert.PanicsWithValue(t, "hedge: New: nil Option", func() { hedge.New(nil) })
	assert.PanicsWithValue(t, "hedge: zero Hedger; use New", func() {
		_ = new(hedge.Hedger).Do(context.Background(), func(context.Context) error { return nil })
	})
}

// A call whose first attempt ends before the delay allocates only the
// attempt's ctx: the call and its timer are reused.
func TestNoHedgeAllocs(t *testing.T) {
	if policytest.RaceEnabled {
		t.Skip("the race detector allocates on its own; make test runs the allocation tests without it")
	}
	ctx := context.Background()
	for _, h := range []*hedge.Hedger{hedge.New(hedge.WithDelay(time.Hour)), hedge.New()} {
		for range 200 {
			_ = h.Do(ctx, nop)
		}
		allocs := testing.AllocsPerRun(100, func() { _ = h.Do(ctx, nop) })
		assert.LessOrEqual(t, allocs, 2.0, "allocations of a call that no hedge followed")
	}
}
