package eventstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
)

// TestSubscriberChild is the subscriber that TestKilledSubscriberResumes
// kills; it runs only in that test's child processes.
func TestSubscriberChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only in a child process of TestKilledSubscriberResumes")
	}
	dialect := os.Getenv("EVENTSTORE_CHILD_DIALECT")
	db, err := sql.Open(os.Getenv("EVENTSTORE_CHILD_DRIVER"), os.Getenv("EVENTSTORE_CHILD_DSN"))
	require.NoError(t, err)
	s := eventstore.New(db, dialectNamed(dialect))
	require.NoError(t, s.Subscribe(context.Background(), "crashing", applyInto(dialect, "child"), eventstore.WithBatchSize(5),
		eventstore.WithLease(time.Second), eventstore.WithPollInterval(5*time.Millisecond))) // until killed
}

// A subscriber killed with SIGKILL again and again, while writers append,
// half of the times at a random moment after it started and half after it
// applied something, resumes from its checkpoint each time: in the end its
// transactional read model holds every event exactly once.
func TestKilledSubscriberResumes(t *testing.T) {
	t.Parallel()
	const kills = 12
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			s := eventstore.New(db.DB, dialectNamed(db.Dialect))
			ctx := context.Background()
			require.NoError(t, s.Migrate(ctx))
			createApplied(t, db.DB)

			var (
				stop      atomic.Bool
				producers sync.WaitGroup
			)
			for p := range 2 {
				producers.Go(func() {
					for i := 0; !stop.Load(); i++ {
						_, err := appendTx(ctx, s, fmt.Sprint("p", p), eventstore.Any, ev("E", ""), ev("E", ""))
						require.NoError(t, err)
						time.Sleep(time.Millisecond)
					}
				})
			}
			for k := range kills {
				before := appliedCount(t, db.DB)
				child := servicetest.StartChild(t, "TestSubscriberChild", "EVENTSTORE_CHILD_DSN="+db.DSN,
					"EVENTSTORE_CHILD_DRIVER="+db.Driver, "EVENTSTORE_CHILD_DIALECT="+db.Dialect)
				if k%2 == 1 {
					// Killed once it has applied, however long it takes to
					// start, and to wait out the lease of the one before.
					require.Eventually(t, func() bool { return appliedCount(t, db.DB) > before }, time.Minute,
						5*time.Millisecond, "subscriber %d applied nothing\n%s", k, child.Output())
				}
				time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond) // a random moment
				child.Kill()                                                 // SIGKILL: no clean-up, the lease stays
			}
			stop.Store(true)
			producers.Wait()
			byChildren := appliedCount(t, db.DB)

			// A last, clean run, once the lease of the last child ran out.
			require.NoError(t, s.Subscribe(ctx, "crashing", applyInto(db.Dialect, "last"), eventstore.UntilCaughtUp(),
				eventstore.WithPollInterval(20*time.Millisecond)))
			head, err := s.Head(ctx)
			require.NoError(t, err)
			checkApplied(t, db.DB, head)
			t.Logf("%s: %d kills, %d events, %d applied by the killed subscribers", db.Dialect, kills, head, byChildren)
			assert.Positive(t, byChildren, "the children did apply events before they died")
		})
	}
}
