package retry

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// nano is one token in the floor's units in budgetModel.
const nano = 1_000_000_000

// budgetModel states a Budget's rules exactly, in integers. A call deposits
// ratio of a token into a pool that holds at most ten seconds' worth of the
// floor, and at least 10 tokens. A floor bucket refills continuously at
// perSec tokens a second and holds at most perSec; a new one is full. A
// retry takes a whole token from the pool or else from the floor; a refund
// puts one back into the pool, within its cap.
type budgetModel struct {
	ratio    int64 // micro-tokens a call deposits
	perSec   int64 // floor tokens refilled a second, and the most the floor holds
	capacity int64 // micro-tokens the pool holds at most

	pool  int64         // micro-tokens
	floor int64         // nano-tokens
	at    time.Duration // when floor was last refilled, on the test's clock
}

func newBudgetModel(ratio float64, minPerSecond int) *budgetModel {
	perSec := int64(minPerSecond)
	return &budgetModel{
		ratio:    int64(math.Round(ratio * micro)),
		perSec:   perSec,
		capacity: max(10, 10*perSec) * micro,
		floor:    perSec * nano,
	}
}

func (m *budgetModel) deposit() { m.pool = min(m.pool+m.ratio, m.capacity) }

func (m *budgetModel) refund() { m.pool = min(m.pool+micro, m.capacity) }

// refill brings the floor up to now: dt seconds add dt·perSec tokens, up
// to perSec.
func (m *budgetModel) refill(now time.Duration) {
	if dt := now - m.at; dt > 0 {
		m.floor = min(m.perSec*nano, m.floor+int64(min(dt, time.Second))*m.perSec)
		m.at = now
	}
}

// withdraw takes a token for a retry at now, and reports whether there was
// one.
func (m *budgetModel) withdraw(now time.Duration) bool {
	if m.pool >= micro {
		m.pool -= micro
		return true
	}
	m.refill(now)
	if m.floor >= nano {
		m.floor -= nano
		return true
	}
	return false
}

// budgetState returns what b holds at now: the pool in micro-tokens, as the
// next withdraw sees it after the cap, and the floor in tokens, refilled.
func budgetState(b *Budget, now time.Time) (pool int64, floor float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pool = min(b.deposits.Sum()-b.spent, b.capacity)
	floor = min(b.perSec, b.floor+max(now.Sub(b.last).Seconds(), 0)*b.perSec)
	return pool, floor
}

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// tick is the step of the model test's clock: 1/512 s, a whole number of
// nanoseconds whose multiples are exact in floating point, so that the
// Budget's floor, a float64, holds exactly what the model's does.
const tick = time.Second / 512

// modelRetrier is a Retrier of the model test with what the model needs to
// know of it.
type modelRetrier struct {
	r           *Retrier
	maxAttempts int
	wait        time.Duration
	onRetry     func() // called by the Retrier's WithOnRetry; set per call
}

var errModel = errors.New("model: failed")

// One or more Retriers share a Budget. Over random sequences of calls that
// fail a number of times, calls whose caller cancels during a retry's wait
// (a refund), healthy spells and time passing, the Budget allows exactly the
// retries the model does, and holds what the model holds after every
// action.
func TestBudgetModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			ratio := rapid.SampledFrom([]float64{0, 0.1, 0.2, 0.25, 0.5, 1, 3}).Draw(rt, "ratio")
			minPerSecond := rapid.SampledFrom([]int{0, 1, 2, 3, 10}).Draw(rt, "minPerSecond")
			if ratio == 0 && minPerSecond == 0 {
				minPerSecond = 1
			}
			start := time.Now()
			b := NewBudget(ratio, minPerSecond)
			m := newBudgetModel(ratio, minPerSecond)

			retriers := make([]*modelRetrier, rapid.IntRange(1, 3).Draw(rt, "retriers"))
			for i := range retriers {
				mr := &modelRetrier{
					maxAttempts: rapid.IntRange(1, 5).Draw(rt, "maxAttempts"),
					wait:        rapid.SampledFrom([]time.Duration{0, tick, 64 * tick, 256 * tick}).Draw(rt, "wait"),
				}
				mr.r = New(WithBudget(b), WithMaxAttempts(mr.maxAttempts), WithBackoff(Constant(mr.wait)),
					WithOnRetry(func(Event) { mr.onRetry() }))
				retriers[i] = mr
			}

			// call runs one call of mr whose op fails failures times, on a
			// goroutine of its own if apart, and cancels its ctx at the
			// cancelAt-th retry (never if 0), and checks it against the model.
			call := func(rt *rapid.T, mr *modelRetrier, failures, cancelAt int, apart bool) {
				// What the model predicts.
				now := time.Since(start)
				m.deposit()
				wantAttempts, wantRetries := 0, 0
				var wantReason Reason
				wantNil := false
				for attempt := 1; ; attempt++ {
					wantAttempts++
					if attempt > failures {
						wantNil = true
						break
					}
					if attempt >= mr.maxAttempts {
						wantReason = MaxAttempts
						break
					}
					if !m.withdraw(now) {
						wantReason = OutOfBudget
						break
					}
					wantRetries++
					if wantRetries == cancelAt {
						m.refund()
						wantReason = Cancelled
						break
					}
					now += mr.wait
				}

				// What the Retrier does.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				attempts, retries := 0, 0
				mr.onRetry = func() {
					if retries++; retries == cancelAt {
						cancel()
					}
				}
				op := func(context.Context) error {
					if attempts++; attempts <= failures {
						return errModel
					}
					return nil
				}
				var err error
				if apart {
					done := make(chan error)
					go func() { done <- mr.r.Do(ctx, op) }()
					err = <-done
				} else {
					err = mr.r.Do(ctx, op)
				}

				if attempts != wantAttempts || retries != wantRetries {
					rt.Fatalf("%d failures, cancel at retry %d: %d attempts and %d retries, model %d and %d (err %v)",
						failures, cancelAt, attempts, retries, wantAttempts, wantRetries, err)
				}
				if wantNil {
					if err != nil {
						rt.Fatalf("%d failures: err %v, model nil", failures, err)
					}
				} else {
					var ex *ExhaustedError
					if !errors.As(err, &ex) || ex.Reason != wantReason || ex.Attempts != wantAttempts {
						rt.Fatalf("%d failures, cancel at retry %d: err %v, model gives up after %d attempts (%v)",
							failures, cancelAt, err, wantAttempts, wantReason)
					}
				}
				if got := time.Since(start); got != now {
					rt.Fatalf("the call ended at %v, model %v", got, now)
				}
			}

			// A held call waits an hour for its retry, while other calls
			// go on, until the caller cancels it: its token is refunded
			// after their deposits.
			held := New(WithBudget(b), WithMaxAttempts(2), WithBackoff(Constant(time.Hour)))
			var (
				release func()
				heldErr chan error
			)
			defer func() {
				if release != nil {
					release()
					<-heldErr
				}
			}()

			rt.Repeat(map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					pool, floor := budgetState(b, time.Now())
					m.refill(time.Since(start))
					if pool != m.pool || floor*nano != float64(m.floor) {
						rt.Fatalf("pool %d µtokens, floor %v tokens; model %d, %v", pool, floor, m.pool, float64(m.floor)/nano)
					}
					if pool < 0 || floor < 0 {
						rt.Fatalf("pool %d µtokens, floor %v tokens: negative", pool, floor)
					}
				},
				"call": func(rt *rapid.T) {
					mr := rapid.SampledFrom(retriers).Draw(rt, "retrier")
					failures := rapid.IntRange(0, 6).Draw(rt, "failures")
					cancelAt := rapid.IntRange(0, 4).Draw(rt, "cancelAt")
					call(rt, mr, failures, cancelAt, rapid.Bool().Draw(rt, "apart"))
				},
				"failing call": func(rt *rapid.T) {
					mr := rapid.SampledFrom(retriers).Draw(rt, "retrier")
					call(rt, mr, math.MaxInt, 0, false)
				},
				"healthy spell": func(rt *rapid.T) {
					mr := rapid.SampledFrom(retriers).Draw(rt, "retrier")
					for range rapid.IntRange(1, 100).Draw(rt, "calls") {
						call(rt, mr, 0, 0, false)
					}
				},
				"hold": func(rt *rapid.T) {
					if release != nil {
						rt.Skip("a call is held")
					}
					m.deposit()
					allowed := m.withdraw(time.Since(start))
					var ctx context.Context
					ctx, release = context.WithCancel(context.Background())
					errc := make(chan error, 1)
					heldErr = errc
					go func() {
						errc <- held.Do(ctx, func(context.Context) error { return errModel })
					}()
					synctest.Wait()
					if allowed {
						return
					}
					var ex *ExhaustedError
					select {
					case err := <-heldErr:
						if !errors.As(err, &ex) || ex.Reason != OutOfBudget {
							rt.Fatalf("held call: err %v, model out of budget", err)
						}
					default:
						rt.Fatalf("held call waits for its retry, model out of budget")
					}
					release()
					release = nil
				},
				"release": func(rt *rapid.T) {
					if release == nil {
						rt.Skip("no call is held")
					}
					release()
					release = nil
					var ex *ExhaustedError
					if err := <-heldErr; !errors.As(err, &ex) || ex.Reason != Cancelled || ex.Attempts != 1 {
						rt.Fatalf("held call: err %v, model cancelled after 1 attempt", err)
					}
					m.refund()
				},
				// Up to two seconds: the floor is full after one. (rapid
				// stops early once its checks have spent a day of the
				// bubble's clock.)
				"sleep": func(rt *rapid.T) {
					time.Sleep(time.Duration(rapid.IntRange(1, 1024).Draw(rt, "ticks")) * tick)
				},
			})
		})
	})
}

// A Retrier made without WithBudget draws from a budget of its own, of
// NewBudget(0.2, 10): against a dependency that fails every call, its
// retries stay within a fifth of the calls plus the floor's ten a second,
// and another such Retrier's budget is untouched.
func TestDefaultBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		retries := 0
		opts := []Option{WithMaxAttempts(100), WithBackoff(Constant(0)), WithOnRetry(func(Event) { retries++ })}
		r, other := New(opts...), New(opts...)
		require.NotNil(t, r.cfg.budget)
		assert.NotSame(t, r.cfg.budget, other.cfg.budget, "each Retrier has a budget of its own")
		want := NewBudget(0.2, 10)
		assert.Equal(t, want.ratio, r.cfg.budget.ratio, "ratio")
		assert.Equal(t, want.perSec, r.cfg.budget.perSec, "minPerSecond")
		assert.Equal(t, want.capacity, r.cfg.budget.capacity, "cap")

		fail := func(context.Context) error { return errModel }
		const calls = 1000
		for range calls {
			_ = r.Do(context.Background(), fail)
		}
		// No time passed: the floor's first ten, then one retry every fifth call.
		assert.Equal(t, calls/5+10, retries, "retries of %d failing calls at once", calls)

		retries = 0
		_ = other.Do(context.Background(), fail)
		assert.Equal(t, 10, retries, "the other Retrier's floor is whole")

		// Eleven rounds of a hundred failing calls, a second apart: the
		// floor's ten at the start and after each second, 0.2·1100 + 10·11.
		retries = 0
		r = New(opts...)
		for range 10 {
			for range 100 {
				_ = r.Do(context.Background(), fail)
			}
			time.Sleep(time.Second)
		}
		for range 100 {
			_ = r.Do(context.Background(), fail)
		}
		assert.Equal(t, 220+110, retries, "retries of 1100 failing calls over ten seconds")
	})
}

// Metrics reports the tokens a budget holds and the retries it allowed and
// refused.
func TestBudgetMetrics(t *testing.T) {
	b := NewBudget(0.5, 0)
	assert.Equal(t, BudgetMetrics{}, b.Metrics(), "a new budget with no floor holds nothing")
	for range 4 {
		b.deposit()
	}
	assert.Equal(t, BudgetMetrics{Available: 2}, b.Metrics(), "four calls at half a token each")
	require.True(t, b.withdraw())
	require.True(t, b.withdraw())
	require.False(t, b.withdraw())
	assert.Equal(t, BudgetMetrics{Available: 0, Retries: 2, Refused: 1}, b.Metrics())
	b.refund()
	assert.Equal(t, BudgetMetrics{Available: 1, Retries: 1, Refused: 1}, b.Metrics(), "a refunded token is back, its retry uncounted")

	floor := NewBudget(0, 3)
	assert.Equal(t, 3.0, floor.Metrics().Available, "a new budget holds its floor")
	assert.PanicsWithValue(t, "retry: zero Budget; use NewBudget", func() { new(Budget).Metrics() })
}
