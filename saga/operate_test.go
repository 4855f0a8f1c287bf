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

// ids returns the IDs of instances, in order.
func ids(instances []saga.Instance) []string {
	out := []string{}
	for _, in := range instances {
		out = append(out, in.ID)
	}
	return out
}

// age makes the instance id look older by d, as the store sees it.
func age(t *testing.T, s *store, id string, d time.Duration) {
	t.Helper()
	_, err := s.ExecContext(context.Background(), rebind(s.Dialect,
		"UPDATE saga_instances SET created_at = created_at - ?, updated_at = updated_at - ? WHERE id = ?"),
		d.Microseconds(), d.Microseconds(), id)
	require.NoError(t, err)
}

// List selects instances by status, orphanhood, definition and age, and
// says where each stands.
func TestList(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		down := func(context.Context, *saga.Call) error { return errors.New("refund service down") }
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAttempts(1, time.Millisecond, time.Millisecond),
			saga.WithRoundBackoff(time.Hour, time.Hour))

		// In order of creation: one that succeeded, one compensated, one
		// stuck, one whose coordinator crashed, one running, one waiting for
		// its next round of compensations.
		ok := saga.Define("list-ok", 1, saga.Step("a", noop, nil), saga.Step("b", noop, nil))
		require.NoError(t, c.Run(ctx, ok, "l-1", nil))
		fails := saga.Define("list-fails", 1, saga.Step("a", noop, noop), saga.Step("b", func(context.Context, *saga.Call) error {
			return errDeclined
		}, nil))
		require.Error(t, c.Run(ctx, fails, "l-2", nil))
		stuck := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAttempts(1, time.Millisecond, time.Millisecond), saga.WithStuckAfter(1))
		refund := saga.Define("list-refund", 1, saga.Step("a", noop, down), saga.Step("b", func(context.Context, *saga.Call) error {
			return errDeclined
		}, nil))
		require.Error(t, stuck.Run(ctx, refund, "l-3", nil))
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(2)))
		crash(t, s, func() { _ = crashing.Run(ctx, ok, "l-4", nil) })
		entered, release := make(chan struct{}), make(chan struct{})
		blocks := saga.Define("list-blocks", 1, saga.Step("a", noop, nil), saga.Step("b", func(context.Context, *saga.Call) error {
			close(entered)
			<-release
			return nil
		}, nil))
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, blocks, "l-5", nil) }()
		<-entered
		defer func() {
			close(release)
			assert.NoError(t, <-done)
		}()
		require.Error(t, c.Run(ctx, refund, "l-6", nil))
		// l-1 is the oldest by an hour, l-2 by a minute.
		age(t, s, "l-1", time.Hour)
		age(t, s, "l-2", time.Minute)

		all, err := c.List(ctx, saga.Filter{})
		require.NoError(t, err)
		require.Equal(t, []string{"l-1", "l-2", "l-3", "l-4", "l-5", "l-6"}, ids(all))
		type view struct {
			Name     string
			Status   saga.Status
			Orphaned bool
			Step     string
			Attempts int
			Cause    string
			Last     string
			Owned    bool
		}
		var got []view
		for _, in := range all {
			got = append(got, view{in.Name, in.Status, in.Orphaned, in.Step, in.Attempts, in.Cause, in.LastError, in.Owner != ""})
			assert.Equal(t, 1, in.Version)
			assert.False(t, in.Updated.Before(in.Created), in.ID)
			assert.Positive(t, in.Age, in.ID)
		}
		assert.Equal(t, []view{
			{"list-ok", saga.Succeeded, false, "b", 0, "", "", false},
			{"list-fails", saga.Compensated, false, "b", 0, "card declined", "", false},
			{"list-refund", saga.Stuck, false, "b", 1, "card declined", "a compensate: refund service down", false},
			{"list-ok", saga.Running, true, "b", 0, "", "", false}, // the crash (a panic) let its lease go
			{"list-blocks", saga.Running, false, "b", 0, "", "", true},
			{"list-refund", saga.Compensating, false, "b", 1, "card declined", "a compensate: refund service down", false},
		}, got)
		assert.InDelta(t, time.Hour.Seconds(), all[0].Age.Seconds(), time.Minute.Seconds())

		tests := []struct {
			name string
			f    saga.Filter
			want []string
		}{
			{"stuck", saga.Filter{Status: []saga.Status{saga.Stuck}}, []string{"l-3"}},
			{"done", saga.Filter{Status: []saga.Status{saga.Succeeded, saga.Compensated, saga.Resolved}}, []string{"l-1", "l-2"}},
			{"running", saga.Filter{Status: []saga.Status{saga.Running}}, []string{"l-4", "l-5"}},
			{"compensating", saga.Filter{Status: []saga.Status{saga.Compensating}}, []string{"l-6"}},
			{"orphaned", saga.Filter{Orphaned: true}, []string{"l-4"}},
			{"definition", saga.Filter{Definition: "list-refund"}, []string{"l-3", "l-6"}},
			{"older", saga.Filter{OlderThan: 30 * time.Second}, []string{"l-1", "l-2"}},
			{"older still", saga.Filter{OlderThan: 30 * time.Minute}, []string{"l-1"}},
			{"limit", saga.Filter{Limit: 2}, []string{"l-1", "l-2"}},
			{"together", saga.Filter{Definition: "list-ok", Status: []saga.Status{saga.Running}, Limit: 1}, []string{"l-4"}},
			{"none", saga.Filter{Definition: "nobody"}, []string{}},
		}
		for _, tt := range tests {
			got, err := c.List(ctx, tt.f)
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.want, ids(got), "%s: %+v", tt.name, tt.f)
		}
		_, err = c.List(ctx, saga.Filter{Limit: -1})
		assert.EqualError(t, err, "saga: List: Limit -1: want 0 to 10000")
	})
}

// Purge deletes the instances that ended long enough ago, with their
// steps, in batches, while a coordinator runs sagas on the same tables:
// nothing that runs, or ended recently, is deleted.
func TestPurgeWhileSagasRun(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		ok := saga.Define("purge-ok", 1, saga.Step("a", noop, noop), saga.Step("b", noop, noop))
		fails := saga.Define("purge-fails", 1, saga.Step("a", noop, noop), saga.Step("b", func(context.Context, *saga.Call) error {
			return errDeclined
		}, nil))
		down := saga.Define("purge-stuck", 1, saga.Step("a", noop, func(context.Context, *saga.Call) error {
			return errors.New("down")
		}), saga.Step("b", func(context.Context, *saga.Call) error { return errDeclined }, nil))
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithPurgeBatch(3),
			saga.WithAttempts(1, time.Millisecond, time.Millisecond), saga.WithStuckAfter(1))

		// Old: 10 that ended (succeeded, compensated, resolved), one stuck
		// and one running. Purge deletes the 10.
		var old []string
		for i := range 8 {
			id := fmt.Sprint("old-", i)
			def := ok
			if i%2 == 1 {
				def = fails
			}
			_ = c.Run(ctx, def, id, nil)
			old = append(old, id)
		}
		for _, id := range []string{"old-resolved", "old-stuck"} {
			_ = c.Run(ctx, down, id, nil)
		}
		resolved, err := c.MarkResolved(ctx, "old-resolved", "by hand")
		require.NoError(t, err)
		require.True(t, resolved)
		old = append(old, "old-resolved")
		crashing := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithAfterCommit(crashAfter(2)))
		crash(t, s, func() { _ = crashing.Run(ctx, ok, "old-running", nil) })
		for _, id := range append(old, "old-stuck", "old-running") {
			age(t, s, id, 2*time.Hour)
		}
		require.Len(t, old, 9)
		_ = c.Run(ctx, ok, "old-9", nil)
		age(t, s, "old-9", 2*time.Hour)
		old = append(old, "old-9")

		// Sagas run while Purge does: some end, one stays running.
		entered, release := make(chan struct{}), make(chan struct{})
		blocks := saga.Define("purge-blocks", 1, saga.Step("a", noop, nil), saga.Step("b", func(context.Context, *saga.Call) error {
			close(entered)
			<-release
			return nil
		}, nil))
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, c.Run(ctx, blocks, "new-running", nil)) })
		<-entered
		var ran atomic.Int32
		stop := make(chan struct{})
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := c.Run(ctx, ok, fmt.Sprint("new-", i), nil); !assert.NoError(t, err) {
					return
				}
				ran.Add(1)
			}
		})
		var purged int64
		for ran.Load() < 3 || purged == 0 {
			n, err := c.Purge(ctx, time.Hour)
			require.NoError(t, err)
			purged += n
		}
		close(stop)
		close(release)
		wg.Wait()
		assert.Equal(t, int64(len(old)), purged, "every old instance that ended, in batches of 3")

		left, err := c.List(ctx, saga.Filter{Limit: 10000})
		require.NoError(t, err)
		want := []string{"old-stuck", "old-running", "new-running"}
		for i := range int(ran.Load()) {
			want = append(want, fmt.Sprint("new-", i))
		}
		assert.ElementsMatch(t, want, ids(left))
		for _, id := range old {
			var n int
			require.NoError(t, s.QueryRowContext(ctx, rebind(s.Dialect, "SELECT COUNT(*) FROM saga_steps WHERE saga_id = ?"), id).Scan(&n))
			assert.Zero(t, n, "%s: its steps went with it", id)
		}
		n, err := c.Purge(ctx, time.Hour)
		require.NoError(t, err)
		assert.Zero(t, n)
		_, err = c.Purge(ctx, -time.Second)
		assert.EqualError(t, err, "saga: Purge(-1s): want olderThan >= 0")
	})
}

// RunRecovery purges with WithRetention.
func TestRunRecoveryPurges(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		noop := func(context.Context, *saga.Call) error { return nil }
		def := saga.Define("retained", 1, saga.Step("a", noop, nil))
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithRetention(time.Hour))
		require.NoError(t, c.Run(ctx, def, "r-old", nil))
		require.NoError(t, c.Run(ctx, def, "r-new", nil))
		age(t, s, "r-old", 2*time.Hour)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.RunRecovery(rctx, 5*time.Millisecond) }()
		require.Eventually(t, func() bool {
			_, err := c.InstanceStatus(ctx, "r-old")
			return errors.Is(err, saga.ErrNotFound)
		}, time.Minute, 5*time.Millisecond)
		stop()
		assert.NoError(t, <-done)
		status, err := c.InstanceStatus(ctx, "r-new")
		require.NoError(t, err)
		assert.Equal(t, saga.Succeeded, status)
		assert.PanicsWithValue(t, "saga: WithRetention(0s): want d > 0", func() { saga.WithRetention(0) })
	})
}

// The operator's methods of an in-memory coordinator say it has no store.
func TestOperatorMethodsNeedAStore(t *testing.T) {
	ctx := context.Background()
	c := saga.New()
	_, err := c.List(ctx, saga.Filter{})
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.Purge(ctx, time.Hour)
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.ListStuck(ctx, 1)
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.RetryStuck(ctx, "x")
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.MarkResolved(ctx, "x", "")
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.InstanceStatus(ctx, "x")
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	_, err = c.Recover(ctx, 1)
	assert.ErrorIs(t, err, saga.ErrNotDurable)
	assert.ErrorIs(t, c.RunRecovery(ctx, time.Second), saga.ErrNotDurable)
}
