package saga_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/saga"
)

// A durable 3-step saga commits once to begin and once per step: the intent
// of each step goes with the result of the one before. One that fails
// commits once more to record the failure before compensating, and once
// for all the compensations.
func TestDurableRunCommits(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		ok := saga.Define("checkout", 1, p.step("reserve", nil), p.step("charge", nil), p.step("ship", nil))
		c := saga.New(saga.WithStore(s.DB.DB, s.d))
		require.NoError(t, c.Run(ctx, ok, "order-1", []byte("input")))
		assert.Equal(t, int64(4), c.Stats().Commits)
		assert.Equal(t, saga.Succeeded, checkAllOrNothing(t, s, c, "order-1", []string{"reserve", "charge", "ship"}, false))

		fails := saga.Define("checkout-fails", 1, p.step("reserve", nil), p.step("charge", nil), p.step("ship", errDeclined))
		c = saga.New(saga.WithStore(s.DB.DB, s.d))
		err := c.Run(ctx, fails, "order-2", nil)
		assert.ErrorIs(t, err, errDeclined)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensated, se.Status)
		assert.Equal(t, int64(5), c.Stats().Commits)
		assert.Equal(t, saga.Compensated, checkAllOrNothing(t, s, c, "order-2", []string{"reserve", "charge", "ship"}, false))
		assert.Equal(t, map[string]int{"reserve/action": 1, "charge/action": 1, "reserve/compensate": 1, "charge/compensate": 1},
			effects(t, s.DB.DB, s.Dialect, "order-2"), "ship's failed action took no effect, and its compensation was a null one")

		// An instance runs once: the same ID again runs nothing, and returns
		// the outcome the instance recorded; of another definition, it is
		// refused.
		commits := c.Stats().Commits
		assert.NoError(t, c.Run(ctx, ok, "order-1", nil))
		assert.EqualError(t, c.Run(ctx, fails, "order-2", nil), "saga order-2: step ship: card declined; compensated")
		err = c.Run(ctx, fails, "order-1", nil)
		assert.ErrorIs(t, err, saga.ErrExists)
		assert.EqualError(t, err, "saga: an instance with this ID exists: of definition checkout version 1")
		assert.Equal(t, commits, c.Stats().Commits)
		assert.Equal(t, 1, effects(t, s.DB.DB, s.Dialect, "order-1")["reserve/action"])

		// Nothing is left to recover.
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}

// An instance whose coordinator died is recovered once its lease has run
// out, and not before.
func TestDurableLeaseRunsOut(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		def := saga.Define("leased", 1, saga.Step("a", noop, nil, saga.Idempotent()))
		for _, tc := range []struct {
			id    string
			lease time.Duration
		}{{"long", time.Minute}, {"short", time.Second}} {
			// A crash right after the first write: nothing released the
			// lease.
			crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithLease(tc.lease), saga.WithAfterCommit(crashAfter(1)))
			require.True(t, runCrashing(func() { _ = crashing.Run(ctx, def, tc.id, nil) }))
		}
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		time.Sleep(1100 * time.Millisecond) // the short lease runs out
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		for id, want := range map[string]saga.Status{"long": saga.Running, "short": saga.Succeeded} {
			status, err := c.InstanceStatus(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, want, status, id)
		}
	})
}

// Outputs recorded by actions survive a crash and reach the compensations
// that recovery runs.
func TestDurableOutputsReachCompensationsAfterACrash(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		var refunded atomic.Value
		def := saga.Define("pay", 1,
			saga.Step("charge", func(ctx context.Context, c *saga.Call) error {
				c.SetOutput([]byte("payment-77"))
				return nil
			}, func(ctx context.Context, c *saga.Call) error {
				refunded.Store(string(c.Output))
				return nil
			}),
			saga.Step("ship", func(ctx context.Context, c *saga.Call) error { return nil }, nil),
		)
		// Crash right after the second write: charge's result and ship's
		// intent. Ship is not idempotent, so recovery compensates.
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(2)))
		crash(t, s, func() { _ = crashing.Run(ctx, def, "p-1", nil) })

		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		status, err := c.InstanceStatus(ctx, "p-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Compensated, status)
		assert.Equal(t, "payment-77", refunded.Load())
	})
}

// A step that started with no recorded result runs again if it is
// idempotent; otherwise the saga compensates.
func TestDurableRecoveryOfAStartedStep(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		for _, idempotent := range []bool{true, false} {
			var calls atomic.Int32
			var opts []saga.StepOption
			if idempotent {
				opts = append(opts, saga.Idempotent())
			}
			def := saga.Define(fmt.Sprint("started-", idempotent), 1,
				saga.Step("a", func(ctx context.Context, c *saga.Call) error { calls.Add(1); return nil }, nil, opts...))
			id := fmt.Sprint("s-", idempotent)
			// Crash after the first write, the intent of step a.
			crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(1)))
			crash(t, s, func() { _ = crashing.Run(ctx, def, id, nil) })
			assert.Zero(t, calls.Load())

			c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
			_, err := c.Recover(ctx, 10)
			require.NoError(t, err)
			status, err := c.InstanceStatus(ctx, id)
			require.NoError(t, err)
			if idempotent {
				assert.Equal(t, saga.Succeeded, status)
				assert.Equal(t, int32(1), calls.Load())
			} else {
				assert.Equal(t, saga.Compensated, status, "an action of unknown outcome is compensated, not run again")
				assert.Zero(t, calls.Load())
			}
		}
	})
}

// The saga's deadline is recorded: an instance recovered after it passed
// compensates.
func TestDurableDeadlineHoldsAcrossACrash(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		def := saga.Define("deadline", 1, saga.Timeout(time.Hour),
			p.step("a", nil, saga.Idempotent()), p.step("b", nil, saga.Idempotent()))
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(2)))
		crash(t, s, func() { _ = crashing.Run(ctx, def, "d-1", nil) })
		var deadline int64
		require.NoError(t, s.QueryRowContext(ctx, rebind(s.Dialect, "SELECT deadline_at FROM saga_instances WHERE id = ?"), "d-1").Scan(&deadline))
		assert.InDelta(t, time.Now().Add(time.Hour).UnixMicro(), deadline, float64(time.Minute.Microseconds()), "an hour from the start")
		// The hour passes, as the store sees it.
		_, err := s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET deadline_at = ? WHERE id = ?"), deadline-time.Hour.Microseconds(), "d-1")
		require.NoError(t, err)

		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		_, err = c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, saga.Compensated, checkAllOrNothing(t, s, c, "d-1", []string{"a", "b"}, false))
		assert.Equal(t, map[string]int{"a/action": 1, "a/compensate": 1}, effects(t, s.DB.DB, s.Dialect, "d-1"))
	})
}

// An instance of a definition version the coordinator does not know is left
// alone and reported, never guessed.
func TestDurableUnknownVersionIsRefused(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		v1 := saga.Define("order", 1, saga.Step("a", noop, nil, saga.Idempotent()), saga.Step("b", noop, nil))
		v2 := saga.Define("order", 2, saga.Step("a", noop, nil, saga.Idempotent()))
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(1)))
		crash(t, s, func() { _ = crashing.Run(ctx, v1, "o-1", nil) })

		var events []saga.Event
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(v2),
			saga.WithOnEvent(func(e saga.Event) { events = append(events, e) }))
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Zero(t, n)
		require.Len(t, events, 1)
		assert.Equal(t, saga.UnknownDefinition, events[0].Kind)
		assert.EqualError(t, events[0].Err, "saga: unknown definition order version 1")
		status, err := c.InstanceStatus(ctx, "o-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Running, status, "left as it was")
		n, err = c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Zero(t, n, "and not claimed again at once")
	})
}

// Compensations that keep failing are retried in rounds with a persisted
// backoff; an alert fires after WithAlertAfter rounds and the instance is
// parked as stuck after WithStuckAfter, for an operator to retry or resolve.
func TestDurableStuckCompensation(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		var refundDown atomic.Bool
		refundDown.Store(true)
		errRefund := errors.New("refund service down")
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error {
					if refundDown.Load() {
						return errRefund
					}
					return nil
				}),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		var mu sync.Mutex
		var events []saga.Event
		c := saga.New(saga.WithStore(s.DB.DB, s.d),
			saga.WithAttempts(2, time.Millisecond, time.Millisecond),
			saga.WithRoundBackoff(time.Millisecond, 2*time.Millisecond),
			saga.WithAlertAfter(2), saga.WithStuckAfter(3),
			saga.WithOnEvent(func(e saga.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))

		err := c.Run(ctx, def, "r-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensating, se.Status, "left to recovery, not reported done")
		assert.ErrorIs(t, err, errRefund)
		assert.ErrorIs(t, err, errDeclined)

		for range 100 {
			if stuck, _ := c.ListStuck(ctx, 10); len(stuck) > 0 {
				break
			}
			_, err := c.Recover(ctx, 10)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		stuck, err := c.ListStuck(ctx, 10)
		require.NoError(t, err)
		require.Len(t, stuck, 1)
		assert.Equal(t, saga.StuckSaga{ID: "r-1", Name: "refund", Version: 1, Attempts: 3,
			LastError: "charge compensate: refund service down", Owed: saga.Compensating}, stuck[0])
		mu.Lock()
		var kinds []saga.EventKind
		for _, e := range events {
			kinds = append(kinds, e.Kind)
		}
		mu.Unlock()
		assert.Equal(t, []saga.EventKind{saga.Alert, saga.StuckEvent}, kinds)

		// Run with its ID reports it stuck, and runs nothing.
		err = c.Run(ctx, def, "r-1", nil)
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Stuck, se.Status)
		assert.ErrorContains(t, err, "charge compensate: refund service down")

		// Stuck instances are not recovered on their own.
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Zero(t, n)

		// The operator fixes the refund service and retries.
		refundDown.Store(false)
		retried, err := c.RetryStuck(ctx, "r-1")
		require.NoError(t, err)
		assert.True(t, retried)
		n, err = c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		status, err := c.InstanceStatus(ctx, "r-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Compensated, status)
		retried, err = c.RetryStuck(ctx, "r-1")
		require.NoError(t, err)
		assert.False(t, retried, "only a stuck instance is retried")

		// Another is marked resolved by hand.
		refundDown.Store(true)
		_ = c.Run(ctx, def, "r-2", nil)
		for range 100 {
			if stuck, _ := c.ListStuck(ctx, 10); len(stuck) > 0 {
				break
			}
			_, err := c.Recover(ctx, 10)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		resolved, err := c.MarkResolved(ctx, "r-2", "refunded by hand, ticket 42")
		require.NoError(t, err)
		assert.True(t, resolved)
		status, err = c.InstanceStatus(ctx, "r-2")
		require.NoError(t, err)
		assert.Equal(t, saga.Resolved, status)
	})
}

// The backoff between rounds is in the store, not in a process: a
// coordinator that recovers does not retry before it is due.
func TestDurableBackoffIsPersisted(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { return errors.New("down") }),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		opts := []saga.Option{saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def),
			saga.WithAttempts(1, time.Millisecond, time.Millisecond), saga.WithRoundBackoff(time.Hour, time.Hour)}
		_ = saga.New(opts...).Run(ctx, def, "b-1", nil)
		n, err := saga.New(opts...).Recover(ctx, 10)
		require.NoError(t, err)
		assert.Zero(t, n, "due in half an hour at the earliest")
		status, err := saga.New(opts...).InstanceStatus(ctx, "b-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Compensating, status)
		// Run with its ID, as a retried submit, reports it as its last round
		// left it, and does not hurry the round.
		err = saga.New(opts...).Run(ctx, def, "b-1", nil)
		assert.EqualError(t, err, "saga b-1: step ship: card declined; compensating: charge compensate: down")
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, saga.Compensating, se.Status)
	})
}

// A coordinator that lost its lease (stalled past it, say) stops: its
// writes are refused, and its late step call meets the barrier of the
// compensation that the new owner ran, so it takes no effect.
func TestDurableLeaseFencing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		entered, release := make(chan struct{}), make(chan struct{})
		def := saga.Define("fenced", 1,
			p.step("a", nil),
			saga.Step("b", func(ctx context.Context, c *saga.Call) error {
				close(entered)
				<-release // stalled
				return p.apply(context.WithoutCancel(ctx), c.Key, nil)
			}, func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) }),
		)
		var lost atomic.Int32
		stalled := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithOwner("stalled"), saga.WithLease(time.Minute),
			saga.WithOnEvent(func(e saga.Event) {
				if e.Kind == saga.LeaseLost {
					lost.Add(1)
				}
			}))
		done := make(chan error, 1)
		go func() { done <- stalled.Run(ctx, def, "f-1", nil) }()
		<-entered

		// The stalled coordinator's lease runs out: a minute passes, as the
		// store sees it.
		_, err := s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET lease_until = 0 WHERE id = ?"), "f-1")
		require.NoError(t, err)
		other := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithOwner("other"), saga.WithDefinitions(def))
		n, err := other.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		close(release)
		assert.ErrorIs(t, <-done, saga.ErrLeaseLost)
		assert.Equal(t, int32(1), lost.Load())
		assert.Equal(t, saga.Compensated, checkAllOrNothing(t, s, other, "f-1", []string{"a", "b"}, false))
		assert.Equal(t, map[string]int{"a/action": 1, "a/compensate": 1}, effects(t, s.DB.DB, s.Dialect, "f-1"),
			"b's late action met its compensation's barrier")
	})
}

// Coordinators recovering at once never drive the same instance together:
// every call runs once, none two at a time.
func TestDurableConcurrentRecovery(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		const instances = 24
		var (
			mu       sync.Mutex
			calls    = map[saga.Key]int{}
			inFlight = map[saga.Key]bool{}
		)
		track := func(ctx context.Context, c *saga.Call) error {
			mu.Lock()
			if inFlight[c.Key] {
				mu.Unlock()
				t.Errorf("%v runs twice at once", c.Key)
				return nil
			}
			inFlight[c.Key] = true
			calls[c.Key]++
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			delete(inFlight, c.Key)
			mu.Unlock()
			return nil
		}
		def := saga.Define("fan", 1,
			saga.Step("a", track, track, saga.Idempotent()),
			saga.Step("b", track, track, saga.Idempotent()),
			saga.Step("c", track, track, saga.Idempotent()))
		for i := range instances {
			crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(1+i%3)))
			crash(t, s, func() { _ = crashing.Run(ctx, def, fmt.Sprint("i-", i), nil) })
		}
		mu.Lock()
		clear(calls)
		mu.Unlock()

		var wg sync.WaitGroup
		var driven atomic.Int32
		for k := range 3 {
			c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def), saga.WithOwner(fmt.Sprint("r", k)))
			wg.Go(func() {
				for {
					n, err := c.Recover(ctx, 2)
					if !assert.NoError(t, err) || n == 0 {
						return
					}
					driven.Add(int32(n))
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(instances), driven.Load(), "each instance driven once")
		c := saga.New(saga.WithStore(s.DB.DB, s.d))
		for i := range instances {
			status, err := c.InstanceStatus(ctx, fmt.Sprint("i-", i))
			require.NoError(t, err)
			assert.Equal(t, saga.Succeeded, status)
		}
		mu.Lock()
		defer mu.Unlock()
		for k, n := range calls {
			assert.Equal(t, 1, n, "%v", k)
		}
	})
}
