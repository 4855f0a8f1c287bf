package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
)

// A subscriber's database connection cut while it works: it reports the
// errors, goes on by itself once the database answers, and its
// transactional read model holds every event once, whatever happened to
// the batch in flight when the connection went.
func TestDatabaseConnectionCut(t *testing.T) {
	t.Parallel()
	for _, database := range servicetest.Databases[1:] { // SQLite has no connection to cut
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			direct := database.Open(t)
			s := eventstore.New(direct.DB, dialectNamed(direct.Dialect))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			require.NoError(t, s.Migrate(ctx))
			createApplied(t, direct.DB)
			viaProxy, proxy := servicetest.ThroughProxy(t, direct)
			sub := eventstore.New(viaProxy.DB, dialectNamed(direct.Dialect))
			var errs atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				assert.NoError(t, sub.Subscribe(ctx, "cut", applyInto(direct.Dialect, "a"), eventstore.WithBatchSize(5),
					eventstore.WithPollInterval(5*time.Millisecond), eventstore.WithOnError(func(error) { errs.Add(1) })))
			})
			write := func(n int) {
				for i := range n {
					_, err := appendTx(ctx, s, fmt.Sprint("s", i%3), eventstore.Any, ev("E", ""))
					require.NoError(t, err)
				}
			}
			write(50)
			require.Eventually(t, func() bool { return appliedCount(t, direct.DB) > 0 }, 30*time.Second, time.Millisecond)
			proxy.Cut() // mid-batch, most likely
			write(50)
			require.Eventually(t, func() bool { return errs.Load() > 0 }, 10*time.Second, time.Millisecond, "the subscriber sees the cut")
			time.Sleep(300 * time.Millisecond)
			proxy.Restore()
			require.Eventually(t, func() bool { return appliedCount(t, direct.DB) >= 100 }, 30*time.Second, 5*time.Millisecond,
				"the subscriber recovers on its own")
			cancel()
			wg.Wait()
			checkApplied(t, direct.DB, 100)
		})
	}
}

// A subscriber stopped with SIGSTOP past its lease loses the subscription to
// another, which applies what came meanwhile; continued, the stopped one
// handles a batch from its out-of-date checkpoint, commits none of it (the
// checkpoint's update is fenced), and takes over again from the real
// checkpoint once the other lets go: every event is applied once.
func TestStoppedSubscriberLosesItsLease(t *testing.T) {
	t.Parallel()
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			s := eventstore.New(db.DB, dialectNamed(db.Dialect))
			ctx := context.Background()
			require.NoError(t, s.Migrate(ctx))
			createApplied(t, db.DB)
			write := func(n int) {
				for i := range n {
					_, err := appendTx(ctx, s, fmt.Sprint("s", i%3), eventstore.Any, ev("E", ""))
					require.NoError(t, err)
				}
			}
			write(20)
			child := servicetest.StartChild(t, "TestSubscriberChild", "EVENTSTORE_CHILD_DSN="+db.DSN,
				"EVENTSTORE_CHILD_DRIVER="+db.Driver, "EVENTSTORE_CHILD_DIALECT="+db.Dialect)
			require.Eventually(t, func() bool { return appliedCount(t, db.DB) == 20 }, time.Minute, 5*time.Millisecond,
				"the child applied what there is\n%s", child.Output())
			child.Stop(t) // idle, holding the lease and a checkpoint that will be out of date
			write(20)
			// This subscriber waits out the stopped one's lease, then catches
			// up and lets go.
			require.NoError(t, s.Subscribe(ctx, "crashing", applyInto(db.Dialect, "parent"), eventstore.UntilCaughtUp(),
				eventstore.WithPollInterval(20*time.Millisecond)))
			parent := appliedCount(t, db.DB)
			assert.Equal(t, int64(40), parent, "everything, by the two of them")
			child.Continue()
			write(20)
			require.Eventually(t, func() bool { return appliedCount(t, db.DB) >= 60 }, time.Minute, 5*time.Millisecond,
				"the continued child takes over again\n%s", child.Output())
			child.Kill()
			checkApplied(t, db.DB, 60)
			byChild, err := sqlColumn(db.DB, "SELECT DISTINCT subscriber FROM applied")
			require.NoError(t, err)
			assert.Equal(t, []string{"child", "parent"}, byChild)
		})
	}
}
