package timeout_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/timeout"
)

func TestAdaptiveContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy { return timeout.Adaptive() })
	t.Run("learned", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy {
			a := timeout.Adaptive(timeout.WithMinSamples(1), timeout.WithBounds(time.Millisecond, 2*time.Second))
			_ = a.Do(context.Background(), func(ctx context.Context) error { return sleep(ctx, 500*time.Millisecond) })
			return a
		})
	})
}

func TestAdaptiveObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyAdaptiveTimeout, func(name string, o resilience.Observer) resilience.Policy {
		opts := []timeout.AdaptiveOption{timeout.WithName(name)}
		if o != nil {
			opts = append(opts, timeout.WithObserver(o))
		}
		return timeout.Adaptive(opts...)
	})
}

// Until the window holds enough latencies the timeout is the upper bound;
// then it is the quantile times the multiplier, within the bounds.
func TestAdaptiveLearns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := timeout.Adaptive(timeout.WithBounds(5*time.Millisecond, 3*time.Second), timeout.WithMinSamples(10))
		ok := func(d time.Duration) resilience.Op {
			return func(ctx context.Context) error { return sleep(ctx, d) }
		}
		for i := range 9 {
			require.NoError(t, a.Do(context.Background(), ok(40*time.Millisecond)))
			assert.Equal(t, 3*time.Second, a.Timeout(), "after %d latencies, fewer than 10", i+1)
		}
		// A failure is not a latency to learn from.
		require.Error(t, a.Do(context.Background(), func(context.Context) error { return errors.New("refused") }))
		assert.Equal(t, 3*time.Second, a.Timeout(), "a failure teaches nothing")
		require.NoError(t, a.Do(context.Background(), ok(40*time.Millisecond)))
		// 40ms lies in the bucket [40894464-1<<21... ]; its upper bound is at most 1/16 above.
		got := a.Timeout()
		assert.GreaterOrEqual(t, got, 80*time.Millisecond, "p99.9 × 2 of 40ms")
		assert.LessOrEqual(t, got, 85*time.Millisecond, "p99.9 × 2 of 40ms, within a bucket")
		require.NoError(t, a.Do(context.Background(), ok(0)))
		assert.Equal(t, got, a.Timeout(), "the highest latency sets p99.9")

		// The caller's sooner deadline stands: op gets the caller's ctx.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		err := a.Do(ctx, ok(time.Hour))
		assert.Equal(t, context.DeadlineExceeded, err, "the caller's deadline, its error as it is")
		assert.NotErrorIs(t, err, timeout.ErrExceeded)

		// The timeout falls as the window ages, but never below the lower
		// bound.
		time.Sleep(31 * time.Second)
		for range 10 {
			require.NoError(t, a.Do(context.Background(), ok(time.Millisecond)))
		}
		assert.Equal(t, 5*time.Millisecond, a.Timeout(), "2ms within [5ms, 3s]")
		start := time.Now()
		err = a.Do(context.Background(), ok(time.Hour))
		assert.Equal(t, 5*time.Millisecond, time.Since(start))
		assert.ErrorIs(t, err, timeout.ErrExceeded)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.EqualError(t, err, "timeout: exceeded 5ms: context deadline exceeded")
		// Once the window is empty, the timeout is the upper bound again.
		time.Sleep(31 * time.Second)
		assert.Equal(t, 3*time.Second, a.Timeout(), "an empty window")
	})
}

// A simulated dependency whose latency is lognormal around base, with a
// Pareto tail on 1% of calls.
type dependency struct {
	mu   sync.Mutex
	rng  *rand.Rand
	base time.Duration
}

func (d *dependency) latency() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := math.Exp(0.25 * d.rng.NormFloat64())
	if d.rng.Float64() < 0.01 {
		f *= math.Pow(1-d.rng.Float64(), -1/2.5) // Pareto, α = 2.5
	}
	return time.Duration(float64(d.base) * f)
}

func (d *dependency) setBase(b time.Duration) {
	d.mu.Lock()
	d.base = b
	d.mu.Unlock()
}

// phase is what the simulation saw while the dependency had one latency.
type phase struct {
	base            time.Duration
	calls, timeouts int
	// the deadline of each call, when it started (since the phase
	// began), and whether it timed out, in call order
	deadlines []time.Duration
	at        []time.Duration
	timedOut  []bool
}

// after returns the calls of p that started at least since into the
// phase, and how many of them timed out.
func (p *phase) after(since time.Duration) (calls, timeouts int) {
	for j, at := range p.at {
		if at >= since {
			calls++
			if p.timedOut[j] {
				timeouts++
			}
		}
	}
	return calls, timeouts
}

// simulate calls a through dep from 4 goroutines for each phase's length,
// on virtual time, with the bases in turn.
func simulate(t *testing.T, a *timeout.AdaptiveTimeout, bases []time.Duration, length time.Duration) []phase {
	dep := &dependency{rng: rand.New(rand.NewPCG(7, 11))}
	phases := make([]phase, len(bases))
	for i, b := range bases {
		dep.setBase(b)
		p := &phases[i]
		p.base = b
		start := time.Now()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for time.Since(start) < length {
					l := dep.latency()
					// The deadline is read and recorded under mu, so that
					// the calls are in the order their deadlines were read,
					// whichever of the goroutines that wake at one instant
					// runs first.
					mu.Lock()
					j := len(p.deadlines)
					p.deadlines = append(p.deadlines, a.Timeout())
					p.at = append(p.at, time.Since(start))
					p.timedOut = append(p.timedOut, false)
					mu.Unlock()
					err := a.Do(context.Background(), func(ctx context.Context) error { return sleep(ctx, l) })
					mu.Lock()
					p.calls++
					p.timedOut[j] = err != nil
					if err != nil {
						require.ErrorIs(t, err, timeout.ErrExceeded)
						p.timeouts++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return phases
}

// The timeout follows the latency up from 10ms to 100ms and back down
// within one window, false timeouts stay near the 0.1 % the default p99.9
// aims at, and while the dependency is slow the timeout never falls below
// the latency it sees.
func TestAdaptiveFollowsLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 30 * time.Second
		a := timeout.Adaptive()
		phases := simulate(t, a, []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 10 * time.Millisecond}, 3*window)
		calls, timeouts := 0, 0
		for i, p := range phases {
			calls += p.calls
			timeouts += p.timeouts
			t.Logf("phase %d, base %v: %d calls, %d timed out (%.3f%%)", i, p.base, p.calls, p.timeouts, 100*float64(p.timeouts)/float64(p.calls))
			// After one window of this latency the timeout is between
			// 2× and 8× the base.
			for j, d := range p.deadlines {
				if p.at[j] < window {
					continue
				}
				if !assert.GreaterOrEqual(t, d, 2*p.base, "phase %d at %v", i, p.at[j]) ||
					!assert.LessOrEqual(t, d, 8*p.base, "phase %d at %v", i, p.at[j]) {
					break
				}
			}
		}
		rate := float64(timeouts) / float64(calls)
		t.Logf("false timeouts: %d of %d calls (%.3f%%)", timeouts, calls, 100*rate)
		assert.LessOrEqual(t, rate, 0.002, "false timeouts over the run, shifts included: target 0.1%%")
		assert.Greater(t, calls, 50000, "calls simulated")

		// The slow phase: once the timeout has caught up with 100ms, it
		// never falls below it.
		slow := phases[1]
		caught := -1
		for j, d := range slow.deadlines {
			if d >= slow.base {
				caught = j
				break
			}
		}
		require.GreaterOrEqual(t, caught, 0, "the timeout never caught up with the slow dependency")
		assert.Less(t, slow.at[caught], time.Second, "caught up within a second")
		for j := caught; j < len(slow.deadlines); j++ {
			if !assert.GreaterOrEqual(t, slow.deadlines[j], slow.base, "at %v of the slow phase", slow.at[j]) {
				break
			}
		}
		// Once the window holds one latency only, false timeouts stay
		// under the target.
		for i, p := range phases {
			n, late := p.after(window)
			require.Positive(t, n, "phase %d has calls after its first window", i)
			assert.LessOrEqual(t, float64(late)/float64(n), 0.001, "phase %d after its first window: %d of %d calls timed out", i, late, n)
		}
	})
}

// A dependency that slows down far past the timeout: every call times out
// at first, and a timeout learnt from successes alone would stay where it
// was and time out every call from then on. Counting timed-out calls as
// latencies of their timeout makes it grow until calls succeed again.
func TestAdaptiveDoesNotRatchetDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 30 * time.Second
		a := timeout.Adaptive()
		phases := simulate(t, a, []time.Duration{10 * time.Millisecond, time.Second}, 2*window)
		slow := phases[1]
		t.Logf("slow phase: %d calls, %d timed out", slow.calls, slow.timeouts)
		last := time.Duration(0)
		for j, d := range slow.deadlines {
			if d < slow.base {
				assert.GreaterOrEqual(t, d, last, "at %v, short of the latency, the timeout went down", slow.at[j])
			}
			last = d
		}
		assert.Less(t, slow.timeouts, 100, "calls timed out before the timeout caught up")
		n, late := slow.after(window)
		assert.Zero(t, late, "of the %d calls of the slow phase's second window", n)
		assert.GreaterOrEqual(t, slow.deadlines[len(slow.deadlines)-1], 2*slow.base)
	})
}

func TestAdaptiveAllocations(t *testing.T) {
	ctx := context.Background()
	// A lower bound of 1s, as the static timeout's: with the default 5ms, a
	// call that a loaded machine holds up for 5ms finds its deadline passed
	// and makes no timer.
	static, adaptive := timeout.New(time.Second), timeout.Adaptive(timeout.WithBounds(time.Second, 3*time.Second))
	want := testing.AllocsPerRun(1000, func() { _ = static.Do(ctx, nop) })
	assert.Equal(t, want, testing.AllocsPerRun(1000, func() { _ = adaptive.Do(ctx, nop) }), "Do, as a static timeout's")
}

func TestAdaptiveBadArgumentsPanic(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"timeout: WithQuantile(0): want 0 < q <= 1", func() { timeout.WithQuantile(0) }},
		{"timeout: WithQuantile(1.5): want 0 < q <= 1", func() { timeout.WithQuantile(1.5) }},
		{"timeout: WithQuantile(NaN): want 0 < q <= 1", func() { timeout.WithQuantile(math.NaN()) }},
		{"timeout: WithMultiplier(0.5): want 1 <= m < +Inf", func() { timeout.WithMultiplier(0.5) }},
		{"timeout: WithMultiplier(+Inf): want 1 <= m < +Inf", func() { timeout.WithMultiplier(math.Inf(1)) }},
		{"timeout: WithBounds(0s, 1s): want 0 < min <= max", func() { timeout.WithBounds(0, time.Second) }},
		{"timeout: WithBounds(2s, 1s): want 0 < min <= max", func() { timeout.WithBounds(2*time.Second, time.Second) }},
		{"timeout: WithWindow(5ns): want window >= 6ns", func() { timeout.WithWindow(5) }},
		{"timeout: WithMinSamples(0): want n >= 1", func() { timeout.WithMinSamples(0) }},
		{"timeout: Adaptive: nil Option", func() { timeout.Adaptive(nil) }},
		{"timeout: AdaptiveTimeout.Do: nil Op", func() { _ = timeout.Adaptive().Do(context.Background(), nil) }},
		{"timeout: zero AdaptiveTimeout; use Adaptive", func() { _ = new(timeout.AdaptiveTimeout).Do(context.Background(), nop) }},
		{"timeout: zero AdaptiveTimeout; use Adaptive", func() { new(timeout.AdaptiveTimeout).Timeout() }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}
