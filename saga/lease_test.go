package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

// A durable saga whose caller cancels records the failure and compensates,
// as an in-memory one does: the caller's cancellation does not reach the
// journal or the compensations.
func TestDurableCallerCancelCompensates(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		p := newParticipant(s)
		ctx, cancel := context.WithCancel(context.Background())
		def := saga.Define("cancelled", 1,
			p.step("a", nil),
			saga.Step("b", func(ctx context.Context, c *saga.Call) error {
				cancel()
				<-ctx.Done()
				return ctx.Err()
			}, func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) }),
		)
		c := saga.New(saga.WithStore(s.DB.DB, s.d))
		err := c.Run(ctx, def, "c-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, saga.Compensated, se.Status)
		assert.Equal(t, saga.Compensated, checkAllOrNothing(t, s, c, "c-1", []string{"a", "b"}, false))
		assert.Equal(t, map[string]int{"a/action": 1, "a/compensate": 1}, effects(t, s.DB.DB, s.Dialect, "c-1"))
	})
}

// A coordinator that loses the lease while it compensates stops at once:
// its compensation's ctx is cancelled with ErrLeaseLost, it makes no more
// attempts, and Run says so; the new owner finishes the instance.
func TestDurableLeaseLostDuringCompensation(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		var calls atomic.Int32
		var cause atomic.Value
		entered := make(chan struct{}, 1)
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(ctx context.Context, c *saga.Call) error {
					if calls.Add(1) == 1 {
						entered <- struct{}{}
						<-ctx.Done() // stalled until the lease is lost
						cause.Store(context.Cause(ctx))
						return ctx.Err()
					}
					return nil
				}),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		// Both coordinators have one name: the claims' tokens tell them apart.
		first := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithOwner("host-1"), saga.WithLease(time.Second),
			saga.WithAttempts(5, time.Millisecond, time.Millisecond))
		done := make(chan error, 1)
		go func() { done <- first.Run(ctx, def, "l-1", nil) }()
		<-entered
		_, err := s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET lease_until = 0 WHERE id = ?"), "l-1")
		require.NoError(t, err)
		second := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithOwner("host-1"), saga.WithDefinitions(def))
		n, err := second.Recover(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		// The first coordinator's next renewal finds the instance taken.
		assert.ErrorIs(t, <-done, saga.ErrLeaseLost)
		assert.ErrorIs(t, cause.Load().(error), saga.ErrLeaseLost)
		assert.Equal(t, int32(2), calls.Load(), "the stalled attempt, and the new owner's: no retry after the loss")
		status, err := second.InstanceStatus(ctx, "l-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Compensated, status)
	})
}

// Recover takes each claimed instance over before it drives it: one that
// another coordinator took while this one drove the claim's earlier
// instances is left to it.
func TestRecoverLeavesWhatAnotherTook(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		var mu sync.Mutex
		ran := map[string]int{}
		release := make(chan struct{})
		entered := make(chan struct{}, 1)
		def := saga.Define("batch", 1, saga.Step("a", func(ctx context.Context, c *saga.Call) error {
			mu.Lock()
			ran[c.SagaID]++
			mu.Unlock()
			if c.SagaID == "b-1" {
				entered <- struct{}{}
				<-release
			}
			return nil
		}, nil, saga.Idempotent()))
		for _, id := range []string{"b-1", "b-2"} {
			crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(1)))
			crash(t, s, func() { _ = crashing.Run(ctx, def, id, nil) })
		}
		// b-1 is due first.
		_, err := s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET next_attempt_at = 1 WHERE id = ?"), "b-1")
		require.NoError(t, err)
		_, err = s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET next_attempt_at = 2 WHERE id = ?"), "b-2")
		require.NoError(t, err)

		first := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		got := make(chan int, 1)
		go func() {
			n, err := first.Recover(ctx, 2)
			assert.NoError(t, err)
			got <- n
		}()
		<-entered
		// While the first drives b-1, b-2's claim runs out and another
		// coordinator finishes it.
		_, err = s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET lease_until = 0 WHERE id = ?"), "b-2")
		require.NoError(t, err)
		second := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		n, err := second.Recover(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		close(release)
		assert.Equal(t, 1, <-got, "the first drove b-1 only")
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, map[string]int{"b-1": 1, "b-2": 1}, ran)
	})
}

// RunRecovery finishes an abandoned instance on its own, and returns when
// its ctx ends.
func TestRunRecovery(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		def := saga.Define("background", 1, p.step("a", nil, saga.Idempotent()), p.step("b", nil, saga.Idempotent()))
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(2)))
		crash(t, s, func() { _ = crashing.Run(ctx, def, "r-1", nil) })

		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.RunRecovery(rctx, 5*time.Millisecond) }()
		require.Eventually(t, func() bool {
			status, err := c.InstanceStatus(ctx, "r-1")
			return err == nil && status == saga.Succeeded
		}, time.Minute, 5*time.Millisecond)
		stop()
		assert.NoError(t, <-done)
		assert.Equal(t, saga.Succeeded, checkAllOrNothing(t, s, c, "r-1", []string{"a", "b"}, false))

		assert.ErrorContains(t, c.RunRecovery(ctx, 0), "want interval > 0")
		_, err := c.Recover(ctx, 0)
		assert.ErrorContains(t, err, "want batch >= 1")
		_, err = c.ListStuck(ctx, 0)
		assert.ErrorContains(t, err, "want limit >= 1")
		_, err = c.InstanceStatus(ctx, "nobody")
		assert.ErrorIs(t, err, saga.ErrNotFound)
	})
}

// Tables under a prefix of one's own, or in a schema, work the same.
func TestPrefix(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		d, err := s.d.WithPrefix("orders_saga")
		require.NoError(t, err)
		require.NoError(t, saga.Migrate(ctx, s.DB.DB, d))
		require.NoError(t, saga.Migrate(ctx, s.DB.DB, d), "Migrate is safe to repeat")
		noop := func(context.Context, *saga.Call) error { return nil }
		def := saga.Define("prefixed", 1, saga.Step("a", noop, nil))
		c := saga.New(saga.WithStore(s.DB.DB, d))
		require.NoError(t, c.Run(ctx, def, "p-1", nil))
		var n int
		require.NoError(t, s.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders_saga_instances").Scan(&n))
		assert.Equal(t, 1, n)
		_, err = saga.New(saga.WithStore(s.DB.DB, s.d)).InstanceStatus(ctx, "p-1")
		assert.ErrorIs(t, err, saga.ErrNotFound, "the default tables are others")

		for _, bad := range []string{"", "a-b", "x; DROP TABLE t", "a.b.c"} {
			_, err := s.d.WithPrefix(bad)
			assert.Error(t, err, bad)
		}
	})
}

// IDs and step names are compared byte for byte on every database.
func TestKeysAreExact(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		def := saga.Define("exact", 1, p.step("a", nil))
		c := saga.New(saga.WithStore(s.DB.DB, s.d))
		for _, id := range []string{"Kq7x", "kQ7X", "Kq7x ", "Kq7x\u00e9"} {
			require.NoError(t, c.Run(ctx, def, id, nil), "%q", id)
			assert.Equal(t, map[string]int{"a/action": 1}, effects(t, s.DB.DB, s.Dialect, id), "%q", id)
		}
		assert.NoError(t, c.Run(ctx, def, "Kq7x", nil), "the outcome of the instance that ran")
		assert.Equal(t, map[string]int{"a/action": 1}, effects(t, s.DB.DB, s.Dialect, "Kq7x"), "ran once")
	})
}

// The text of an error is stored whatever it holds: long, cut inside a
// character, invalid UTF-8, NUL bytes.
func TestDurableStoresAnyErrorText(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		ugly := errors.New(strings.Repeat("é", 1500) + "\xff\x00end")
		def := saga.Define("ugly", 1,
			saga.Step("a", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { return ugly }),
			saga.Step("b", func(context.Context, *saga.Call) error { return ugly }, nil),
		)
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAttempts(1, time.Millisecond, time.Millisecond),
			saga.WithStuckAfter(1))
		var se *saga.Error
		require.ErrorAs(t, c.Run(ctx, def, "u-1", nil), &se)
		assert.Equal(t, saga.Stuck, se.Status, "the setback was recorded")
		stuck, err := c.ListStuck(ctx, 10)
		require.NoError(t, err)
		require.Len(t, stuck, 1)
		assert.True(t, strings.HasPrefix(stuck[0].LastError, "a compensate: éé"))
		assert.LessOrEqual(t, len(stuck[0].LastError), 2000)
	})
}

// A TCC saga whose confirms keep failing is parked as stuck with its
// confirms owed, and never reported done; a retry confirms it.
func TestDurableConfirmStuck(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		var down atomic.Bool
		down.Store(true)
		ok := func(context.Context, *saga.Call) error { return nil }
		def := saga.DefineTCC("transfer", 1,
			saga.Participant("a", ok, ok, ok),
			saga.Participant("b", ok, func(context.Context, *saga.Call) error {
				if down.Load() {
					return errors.New("ledger down")
				}
				return nil
			}, ok))
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAttempts(1, time.Millisecond, time.Millisecond),
			saga.WithStuckAfter(1))
		err := c.Run(ctx, def, "t-1", nil)
		var se *saga.Error
		require.ErrorAs(t, err, &se)
		assert.ErrorIs(t, err, saga.ErrNotConfirmed)
		assert.Equal(t, saga.Stuck, se.Status)
		assert.Equal(t, "b", se.Step)
		assert.EqualError(t, err, "saga t-1: step b: confirms owed; stuck: b confirm: ledger down")
		stuck, err := c.ListStuck(ctx, 10)
		require.NoError(t, err)
		require.Len(t, stuck, 1)
		assert.Equal(t, saga.Confirming, stuck[0].Owed)

		resolved, err := c.MarkResolved(ctx, "nobody", "")
		require.NoError(t, err)
		assert.False(t, resolved)

		down.Store(false)
		retried, err := c.RetryStuck(ctx, "t-1")
		require.NoError(t, err)
		require.True(t, retried)
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		status, err := c.InstanceStatus(ctx, "t-1")
		require.NoError(t, err)
		assert.Equal(t, saga.Succeeded, status)
	})
}

// An instance whose log names a step its definition does not have is left
// alone and reported, and the rest of the batch is recovered.
func TestRecoverLeavesAMismatchedLogAlone(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		def := saga.Define("order", 1, saga.Step("a", noop, nil, saga.Idempotent()))
		for _, id := range []string{"m-1", "m-2"} {
			crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(1)))
			crash(t, s, func() { _ = crashing.Run(ctx, def, id, nil) })
		}
		_, err := s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_steps SET step = 'renamed' WHERE saga_id = ?"), "m-1")
		require.NoError(t, err)
		var events []saga.Event
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def),
			saga.WithOnEvent(func(e saga.Event) { events = append(events, e) }))
		n, err := c.Recover(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		require.Len(t, events, 1)
		assert.Equal(t, saga.UnknownDefinition, events[0].Kind)
		assert.Equal(t, "m-1", events[0].SagaID)
		for id, want := range map[string]saga.Status{"m-1": saga.Running, "m-2": saga.Succeeded} {
			status, err := c.InstanceStatus(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, want, status, id)
		}
	})
}

// A coordinator refuses a second, different definition of the same name
// and version.
func TestDefinitionConflict(t *testing.T) {
	noop := func(context.Context, *saga.Call) error { return nil }
	v1 := saga.Define("order", 1, saga.Step("a", noop, nil))
	other := saga.Define("order", 1, saga.Step("b", noop, nil))
	c := saga.New(saga.WithDefinitions(v1))
	require.NoError(t, c.Run(context.Background(), v1, "x", nil))
	assert.EqualError(t, c.Run(context.Background(), other, "y", nil),
		"saga: another definition order version 1 is registered; give a changed definition a new version")
	assert.PanicsWithValue(t, "saga: another definition order version 1 is registered; give a changed definition a new version",
		func() { saga.New(saga.WithDefinitions(v1, other)) })
	assert.PanicsWithValue(t, "saga: WithDefinitions: nil Definition", func() { saga.WithDefinitions(nil) })
	assert.Equal(t, "order", v1.Name())
	assert.Equal(t, 1, v1.Version())
}

// Migrate with the dialect of another database says so, before it writes
// anything.
func TestMigrateWithTheWrongDialect(t *testing.T) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			for _, d := range []saga.Dialect{saga.Postgres, saga.MySQL, saga.SQLite} {
				err := saga.Migrate(context.Background(), db.DB, d)
				if d == dialectNamed(db.Dialect) {
					assert.NoError(t, err)
					continue
				}
				assert.Regexp(t, `^saga: Migrate: dialect `+strings.Split(d.String(), ":")[0]+
					` but the server is (PostgreSQL|MySQL|MariaDB|SQLite) [0-9.]+$`, err)
			}
		})
	}
}
