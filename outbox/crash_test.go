package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// sinkPublisher stands for a broker: it records every message it accepts in
// a table of its own, in autocommit, so that what it accepted survives a
// relay killed before its acknowledgement.
type sinkPublisher struct {
	db      *sql.DB
	dialect string
}

func (p sinkPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	args := make([]any, len(msgs))
	for i, m := range msgs {
		args[i] = m.ID
	}
	q := rebind(p.dialect, "INSERT INTO sink (message_id) VALUES "+strings.Repeat("(?), ", len(msgs)-1)+"(?)")
	if _, err := p.db.ExecContext(ctx, q, args...); err != nil {
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return nil
}

// TestRelayChild is the relay that TestCrashedRelaysLoseNothing kills; it
// runs only in that test's child processes.
func TestRelayChild(t *testing.T) {
	dsn := os.Getenv("OUTBOX_CHILD_DSN")
	if dsn == "" {
		t.Skip("runs only in a child process of TestCrashedRelaysLoseNothing")
	}
	db, err := sql.Open(os.Getenv("OUTBOX_CHILD_DRIVER"), dsn)
	require.NoError(t, err)
	dialect := os.Getenv("OUTBOX_CHILD_DIALECT")
	relay := outbox.New(db, dialectNamed(dialect)).NewRelay(sinkPublisher{db, dialect}, outbox.WithBatchSize(20), outbox.WithLease(time.Second),
		outbox.WithPublishTimeout(400*time.Millisecond), outbox.WithPollInterval(5*time.Millisecond))
	require.NoError(t, relay.Run(context.Background())) // until killed
}

// A relay killed with SIGKILL 50 times while producers keep enqueueing, half
// of the times at a random moment after it started and half at a random
// moment after it first published, loses nothing: after a last clean run
// every committed message was published at least once, and no rolled-back
// one ever was.
func TestCrashedRelaysLoseNothing(t *testing.T) {
	const kills = 50
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			ob := outboxOf(t, db)
			ctx := context.Background()
			sinkType := map[string]string{"postgres": "VARCHAR(64)", "mysql": "VARCHAR(64)", "sqlite": "TEXT"}[db.Dialect]
			_, err := db.ExecContext(ctx, "CREATE TABLE sink (message_id "+sinkType+" NOT NULL)")
			require.NoError(t, err)

			// Producers: commit most transactions, roll back some.
			var (
				mu         sync.Mutex
				committed  = map[string]bool{}
				rolledBack = map[string]bool{}
				stop       atomic.Bool
				producers  sync.WaitGroup
			)
			for p := range 2 {
				producers.Go(func() {
					for i := 0; !stop.Load(); i++ {
						tx, err := db.BeginTx(ctx, nil)
						require.NoError(t, err)
						ids := []outbox.Message{
							{ID: fmt.Sprintf("p%d-%d-a", p, i), Topic: "t"},
							{ID: fmt.Sprintf("p%d-%d-b", p, i), Topic: "t", Key: fmt.Sprint("k", i%5)},
						}
						require.NoError(t, ob.Enqueue(ctx, tx, ids...))
						keep := i%10 != 0
						if keep {
							require.NoError(t, tx.Commit())
						} else {
							require.NoError(t, tx.Rollback())
						}
						mu.Lock()
						for _, m := range ids {
							if keep {
								committed[m.ID] = true
							} else {
								rolledBack[m.ID] = true
							}
						}
						mu.Unlock()
						time.Sleep(time.Millisecond)
					}
				})
			}

			sunk := func() (n int) {
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sink").Scan(&n); err != nil {
					return -1
				}
				return n
			}
			for k := range kills {
				cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), "OUTBOX_CHILD_DSN="+db.DSN, "OUTBOX_CHILD_DRIVER="+db.Driver,
					"OUTBOX_CHILD_DIALECT="+db.Dialect)
				before := sunk()
				require.NoError(t, cmd.Start())
				if k%2 == 1 {
					// Every other relay is killed once it has published,
					// however long it takes to start on a busy machine.
					require.Eventually(t, func() bool { return sunk() > before }, time.Minute,
						5*time.Millisecond, "relay %d published nothing", k)
				}
				time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond) // a random moment
				require.NoError(t, cmd.Process.Kill())                       // SIGKILL: no clean-up
				_ = cmd.Wait()
			}
			stop.Store(true)
			producers.Wait()

			var byChildren int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sink").Scan(&byChildren))

			// A last, clean run: wait out the leases of the killed relays.
			relay := ob.NewRelay(sinkPublisher{db.DB, db.Dialect}, outbox.WithBatchSize(200))
			require.Eventually(t, func() bool {
				drain(t, relay)
				return count(t, ob) == 0
			}, 30*time.Second, 100*time.Millisecond)

			rows, err := db.QueryContext(ctx, "SELECT message_id FROM sink")
			require.NoError(t, err)
			defer rows.Close()
			published := map[string]int{}
			for rows.Next() {
				var id string
				require.NoError(t, rows.Scan(&id))
				published[id]++
			}
			require.NoError(t, rows.Err())
			duplicates := 0
			for id, n := range published {
				assert.False(t, rolledBack[id], "rolled-back message %s was published", id)
				duplicates += n - 1
			}
			lost := 0
			for id := range committed {
				if published[id] == 0 {
					lost++
				}
			}
			assert.Zero(t, lost, "committed messages never published")
			t.Logf("%s: %d kills, %d committed messages (%d published by the killed relays), %d rolled back, %d duplicates",
				db.Dialect, kills, len(committed), byChildren, len(rolledBack), duplicates)
			assert.LessOrEqual(t, duplicates, kills*20, "duplicates are bounded by the batches in flight at each kill")
		})
	}
}
