package eventstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// createApplied creates the read model of the tests: one row per event a
// handler applied, with no key, so that an event applied twice shows.
func createApplied(t testing.TB, db *sql.DB) {
	t.Helper()
	_, err := db.ExecContext(context.Background(), "CREATE TABLE applied (position BIGINT NOT NULL, subscriber VARCHAR(80) NOT NULL)")
	require.NoError(t, err)
}

// applyInto is a handler that writes each event into applied, in the
// batch's transaction.
func applyInto(dialect, subscriber string) eventstore.Handler {
	insert := "INSERT INTO applied (position, subscriber) VALUES (?, ?)"
	if dialect == "postgres" {
		insert = "INSERT INTO applied (position, subscriber) VALUES ($1, $2)"
	}
	return func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
		for _, e := range events {
			if _, err := tx.ExecContext(ctx, insert, e.Position, subscriber); err != nil {
				return err
			}
		}
		return nil
	}
}

// checkApplied asserts that applied holds each of positions 1 to head
// exactly once.
func checkApplied(t *testing.T, db *sql.DB, head int64) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT position FROM applied")
	require.NoError(t, err)
	defer rows.Close()
	counts := map[int64]int{}
	for rows.Next() {
		var p int64
		require.NoError(t, rows.Scan(&p))
		counts[p]++
	}
	require.NoError(t, rows.Err())
	lost, twice := 0, 0
	for p := int64(1); p <= head; p++ {
		switch n := counts[p]; {
		case n == 0:
			lost++
		case n > 1:
			twice++
		}
	}
	assert.Zero(t, lost, "events never applied, of %d", head)
	assert.Zero(t, twice, "events applied more than once, of %d", head)
	assert.Len(t, counts, int(head), "no position beyond the head")
}

func appliedCount(t testing.TB, db *sql.DB) int64 {
	var n int64
	require.NoError(t, db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM applied").Scan(&n))
	return n
}

// Writers whose transactions hold their events for a while, and commit or
// roll back in any order: a reader that follows ReadAll from the last
// position it read, and a subscription, see every committed event once, in
// position order, and the positions have no gaps.
func TestReadAllNeverSkipsALateCommit(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		createApplied(t, db.DB)
		var (
			mu        sync.Mutex
			committed = map[string]bool{}
			writers   sync.WaitGroup
			done      atomic.Bool
		)
		for w := range 4 {
			writers.Go(func() {
				for i := range 25 {
					tx, err := db.BeginTx(ctx, nil)
					require.NoError(t, err)
					var batch []eventstore.Event
					for j := range 1 + i%3 {
						batch = append(batch, eventstore.Event{ID: fmt.Sprintf("w%d-%d-%d", w, i, j), Type: "T"})
					}
					_, err = s.Append(ctx, tx, fmt.Sprint("stream-", w), eventstore.Any, batch...)
					require.NoError(t, err)
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // a commit that comes late
					if i%5 == 4 {
						require.NoError(t, tx.Rollback())
						continue
					}
					require.NoError(t, tx.Commit())
					mu.Lock()
					for _, e := range batch {
						committed[e.ID] = true
					}
					mu.Unlock()
				}
			})
		}
		var subscription sync.WaitGroup
		subscription.Go(func() {
			assert.NoError(t, s.Subscribe(ctx, "late-commits", applyInto(db.Dialect, "one"), eventstore.WithBatchSize(7),
				eventstore.WithPollInterval(5*time.Millisecond)))
		})
		go func() { writers.Wait(); done.Store(true) }()

		// The reader, from the last position it read on.
		var read []eventstore.Event
		next := int64(1)
		for {
			last := done.Load()
			events, err := s.ReadAll(ctx, next, 10)
			require.NoError(t, err)
			for _, e := range events {
				require.Equal(t, next, e.Position, "ReadAll skipped a position or went back")
				next++
			}
			read = append(read, events...)
			if last && len(events) == 0 {
				break
			}
		}
		seen := map[string]bool{}
		for _, e := range read {
			assert.False(t, seen[e.ID], "event %s read twice", e.ID)
			seen[e.ID] = true
			assert.True(t, committed[e.ID], "event %s read but not committed", e.ID)
		}
		assert.Len(t, seen, len(committed), "every committed event read")

		head := int64(len(read))
		require.Eventually(t, func() bool { return appliedCount(t, db.DB) >= head }, time.Minute, 5*time.Millisecond)
		cancel()
		subscription.Wait()
		checkApplied(t, db.DB, head)
	})
}

// A writer that appended first and commits last is not passed over: a
// reader that goes on from the last position it read gets both events,
// once each, at positions 1 and 2. (On MySQL and SQLite the second writer
// waits for the first; on PostgreSQL it commits first, and the first
// writer's event gets the later position.)
func TestALateCommitIsNotPassedOver(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		first, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = s.Append(ctx, first, "a", eventstore.NoStream, ev("First", ""))
		require.NoError(t, err)
		second := make(chan error, 1)
		go func() {
			_, err := appendTx(ctx, s, "b", eventstore.NoStream, ev("Second", ""))
			second <- err
		}()
		if db.Dialect == "postgres" {
			require.NoError(t, <-second, "on PostgreSQL the second writer does not wait")
			second <- nil
		} else {
			time.Sleep(50 * time.Millisecond) // room for the second writer to overtake, if it could
		}
		before, err := s.ReadAll(ctx, 1, 10)
		require.NoError(t, err)
		for _, e := range before {
			assert.Equal(t, "Second", e.Type, "only the second writer can have committed")
		}
		require.NoError(t, first.Commit())
		require.NoError(t, <-second)
		after, err := s.ReadAll(ctx, int64(len(before))+1, 10)
		require.NoError(t, err)
		all := append(before, after...)
		require.Len(t, all, 2, "both events, once each")
		assert.Equal(t, int64(1), all[0].Position)
		assert.Equal(t, int64(2), all[1].Position)
		assert.ElementsMatch(t, []string{"First", "Second"}, []string{all[0].Type, all[1].Type})
		if db.Dialect == "postgres" {
			assert.Equal(t, "Second", all[0].Type, "on PostgreSQL the second writer did not wait")
		} else {
			assert.Equal(t, "First", all[0].Type, "the second writer waited")
		}
	})
}

// A subscription catches up on what is there, goes on with what comes, and
// resumes from its checkpoint.
func TestSubscribeCatchesUpThenGoesLive(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		createApplied(t, db.DB)
		for i := range 10 {
			_, err := appendTx(ctx, s, fmt.Sprint("order-", i%3), eventstore.Any, ev("Placed", ""), ev("Paid", ""), ev("Shipped", ""))
			require.NoError(t, err)
		}
		require.NoError(t, s.Subscribe(ctx, "orders", applyInto(db.Dialect, "a"), eventstore.WithBatchSize(7), eventstore.UntilCaughtUp()))
		assert.Equal(t, int64(30), appliedCount(t, db.DB), "caught up")
		pos, err := s.Checkpoint(ctx, "orders")
		require.NoError(t, err)
		assert.Equal(t, int64(30), pos)

		live, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			assert.NoError(t, s.Subscribe(live, "orders", applyInto(db.Dialect, "a"), eventstore.WithPollInterval(time.Hour)))
		})
		for i := range 5 {
			_, err := appendTx(ctx, s, "order-9", eventstore.Any, ev("Placed", fmt.Sprint(i)))
			require.NoError(t, err)
		}
		// The poll interval is an hour: only Append's wakeup brings them.
		require.Eventually(t, func() bool { return appliedCount(t, db.DB) == 35 }, time.Minute, 5*time.Millisecond)
		cancel()
		wg.Wait()
		checkApplied(t, db.DB, 35)

		statuses, err := s.Subscriptions(ctx)
		require.NoError(t, err)
		require.Len(t, statuses, 1)
		assert.Equal(t, "orders", statuses[0].Name)
		assert.Equal(t, int64(35), statuses[0].Position)
		assert.Equal(t, int64(35), statuses[0].Head)
		assert.Zero(t, statuses[0].Lag)
		assert.Empty(t, statuses[0].Owner, "the lease was given back")
	})
}

// A subscription whose ctx ends just before its batch commits fails the
// commit, which leaves the subscriber unsure of its checkpoint; it still
// gives the lease back as it returns, and the next subscriber handles the
// batch again.
func TestSubscribeGivesTheLeaseBackWhenCancelledBeforeACommit(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		createApplied(t, db.DB)
		for i := range 3 {
			_, err := appendTx(ctx, s, fmt.Sprint("order-", i), eventstore.Any, ev("Placed", ""))
			require.NoError(t, err)
		}
		live, cancel := context.WithCancel(ctx)
		defer cancel()
		// The checkpoint's update is the batch's last statement before
		// the commit.
		cancelling := eventstore.New(cancelAfter(t, db, "_subscriptions SET position", cancel), dialectNamed(db.Dialect))
		var errs []error
		require.NoError(t, cancelling.Subscribe(live, "orders", applyInto(db.Dialect, "a"),
			eventstore.WithOnError(func(err error) { errs = append(errs, err) })))
		require.Error(t, live.Err(), "the ctx ended in the batch")
		assert.Empty(t, errs)
		assert.Zero(t, appliedCount(t, db.DB), "the batch rolled back")
		statuses, err := s.Subscriptions(ctx)
		require.NoError(t, err)
		require.Len(t, statuses, 1)
		assert.Zero(t, statuses[0].Position)
		assert.Empty(t, statuses[0].Owner, "the lease was given back")

		require.NoError(t, s.Subscribe(ctx, "orders", applyInto(db.Dialect, "b"), eventstore.UntilCaughtUp()))
		checkApplied(t, db.DB, 3)
	})
}

// cancelAfter returns a handle on db's database whose connections call
// cancel once a statement that contains match has run on them, as if the
// caller's ctx ended just then.
func cancelAfter(t *testing.T, db *servicetest.DB, match string, cancel context.CancelFunc) *sql.DB {
	dsn := db.DSN
	if db.Dialect == "mysql" {
		dsn += "&interpolateParams=true" // statements with arguments run as ExecContext
	}
	var c driver.Connector = dsnConnector{db.DB.Driver(), dsn}
	if dc, ok := db.DB.Driver().(driver.DriverContext); ok {
		var err error
		c, err = dc.OpenConnector(dsn)
		require.NoError(t, err)
	}
	h := sql.OpenDB(cancellingConnector{c, match, cancel})
	t.Cleanup(func() { h.Close() })
	return h
}

type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

type cancellingConnector struct {
	driver.Connector
	match  string
	cancel context.CancelFunc
}

func (c cancellingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return cancellingConn{conn, c.match, c.cancel}, nil
}

// cancellingConn is a driver's connection, with the interfaces that
// database/sql uses of the three drivers of the tests.
type cancellingConn struct {
	driver.Conn
	match  string
	cancel context.CancelFunc
}

func (c cancellingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	if err == nil && strings.Contains(query, c.match) {
		c.cancel()
	}
	return res, err
}

func (c cancellingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c cancellingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c cancellingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c cancellingConn) CheckNamedValue(v *driver.NamedValue) error {
	if nc, ok := c.Conn.(driver.NamedValueChecker); ok {
		return nc.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (c cancellingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// A handler that fails has its batch rolled back and handed over again: its
// writes to the read model count once.
func TestSubscribeRetriesAFailedBatch(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		createApplied(t, db.DB)
		for range 4 {
			_, err := appendTx(ctx, s, "s", eventstore.Any, ev("E", ""), ev("E", ""), ev("E", ""))
			require.NoError(t, err)
		}
		apply := applyInto(db.Dialect, "a")
		calls := 0
		boom := errors.New("read model refused")
		var reported []error
		h := func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
			calls++
			if err := apply(ctx, tx, events); err != nil {
				return err
			}
			if calls == 2 {
				return boom // after writing: the writes must roll back
			}
			return nil
		}
		require.NoError(t, s.Subscribe(ctx, "flaky", h, eventstore.WithBatchSize(5), eventstore.UntilCaughtUp(),
			eventstore.WithOnError(func(err error) { reported = append(reported, err) })))
		checkApplied(t, db.DB, 12)
		assert.Equal(t, 4, calls, "3 batches, one of them twice")
		require.Len(t, reported, 1)
		assert.ErrorIs(t, reported[0], boom)
		assert.EqualError(t, reported[0], `eventstore: subscription "flaky": handler, events 6 to 10: read model refused`)
	})
}

// Subscribers of one name in several places take turns: one drives the
// subscription at a time, and each event takes effect once.
func TestOneSubscriberAtATime(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		createApplied(t, db.DB)
		var (
			active, most atomic.Int32
			wg           sync.WaitGroup
			owners       sync.Map
		)
		for i := range 3 {
			apply := applyInto(db.Dialect, fmt.Sprint("sub-", i))
			wg.Go(func() {
				// Each its own Store, as in processes of their own.
				other := eventstore.New(db.DB, dialectNamed(db.Dialect))
				assert.NoError(t, other.Subscribe(ctx, "shared", func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
					n := active.Add(1)
					defer active.Add(-1)
					if n > most.Load() {
						most.Store(n)
					}
					owners.Store(i, true)
					return apply(ctx, tx, events)
				}, eventstore.WithBatchSize(3), eventstore.WithPollInterval(5*time.Millisecond), eventstore.WithSubscriberID(fmt.Sprint("sub-", i))))
			})
		}
		for i := range 20 {
			_, err := appendTx(ctx, s, fmt.Sprint("s", i%4), eventstore.Any, ev("E", ""), ev("E", ""))
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return appliedCount(t, db.DB) >= 40 }, time.Minute, 5*time.Millisecond)
		statuses, err := s.Subscriptions(ctx)
		require.NoError(t, err)
		require.Len(t, statuses, 1)
		assert.Regexp(t, `^sub-[0-2]$`, statuses[0].Owner)
		cancel()
		wg.Wait()
		checkApplied(t, db.DB, 40)
		assert.Equal(t, int32(1), most.Load(), "never two handlers at once")
		n := 0
		owners.Range(func(any, any) bool { n++; return true })
		assert.Equal(t, 1, n, "the subscriber that took the lease kept it")
	})
}

// A subscriber that lost its lease while it handled a batch commits
// nothing: its batch rolls back, and the new owner applies it.
func TestStaleSubscriberCommitsNothing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		createApplied(t, db.DB)
		_, err := appendTx(ctx, s, "s", eventstore.NoStream, ev("E", ""), ev("E", ""))
		require.NoError(t, err)
		var reported []error
		stale := applyInto(db.Dialect, "stale")
		first := true
		h := func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
			if first {
				first = false
				// While this subscriber stalls, its lease runs out and
				// another subscriber takes the subscription over and
				// applies the events.
				_, err := db.ExecContext(ctx, rebind(db.Dialect, "UPDATE events_subscriptions SET lease_until = 0 WHERE name = ?"), "fenced")
				require.NoError(t, err)
				require.NoError(t, s.Subscribe(ctx, "fenced", applyInto(db.Dialect, "new"), eventstore.UntilCaughtUp()))
			}
			return stale(ctx, tx, events)
		}
		require.NoError(t, s.Subscribe(ctx, "fenced", h, eventstore.UntilCaughtUp(), eventstore.WithLease(time.Second),
			eventstore.WithPollInterval(10*time.Millisecond),
			eventstore.WithOnError(func(err error) { reported = append(reported, err) })))
		checkApplied(t, db.DB, 2)
		subscribers, err := sqlColumn(db.DB, "SELECT DISTINCT subscriber FROM applied")
		require.NoError(t, err)
		assert.Equal(t, []string{"new"}, subscribers)
		require.NotEmpty(t, reported)
		assert.ErrorIs(t, reported[0], eventstore.ErrLeaseLost)
	})
}

func rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	return sqlstore.Postgres.Rebind(q)
}

func sqlColumn(db *sql.DB, q string) ([]string, error) {
	rows, err := db.Query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, rows.Err()
}

func TestSubscribeRefusesBadInput(t *testing.T) {
	db := servicetest.SQLite(t)
	s := eventstore.New(db.DB, eventstore.SQLite)
	nop := func(context.Context, *sql.Tx, []eventstore.Event) error { return nil }
	err := s.Subscribe(context.Background(), "", nop)
	assert.EqualError(t, err, `eventstore: Subscribe: name "": want 1 to 255 bytes`)
	assert.PanicsWithValue(t, "eventstore: Subscribe: nil Handler", func() { _ = s.Subscribe(context.Background(), "x", nil) })
	assert.PanicsWithValue(t, "eventstore: WithBatchSize(0): want 1 <= n <= 10000", func() { eventstore.WithBatchSize(0) })
	assert.PanicsWithValue(t, "eventstore: WithLease(10ms): want d >= 1s", func() { eventstore.WithLease(10 * time.Millisecond) })
	assert.PanicsWithValue(t, "eventstore: WithPollInterval(0s): want d > 0", func() { eventstore.WithPollInterval(0) })
	assert.PanicsWithValue(t, `eventstore: WithSubscriberID(""): want 1 to 80 bytes`, func() { eventstore.WithSubscriberID("") })
	assert.PanicsWithValue(t, "eventstore: WithOnError(nil)", func() { eventstore.WithOnError(nil) })
	assert.PanicsWithValue(t, "eventstore: WithWaker(nil)", func() { eventstore.WithWaker(nil) })
}

// Head and ReadAll see every event committed before they were called, even
// while other readers of the log are busy with it.
func TestReadsSeeEveryEarlierCommit(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var readers sync.WaitGroup
		for range 3 {
			readers.Go(func() {
				for ctx.Err() == nil {
					_, err := s.ReadAll(ctx, 1, 1)
					if ctx.Err() == nil {
						assert.NoError(t, err)
					}
				}
			})
		}
		for i := range 40 {
			_, err := appendTx(ctx, s, fmt.Sprint("s", i%4), eventstore.Any, ev("E", ""))
			require.NoError(t, err)
			head, err := s.Head(ctx)
			require.NoError(t, err)
			require.Equal(t, int64(i+1), head, "the head after commit %d", i+1)
			all, err := s.ReadAll(ctx, int64(i+1), 10)
			require.NoError(t, err)
			require.Len(t, all, 1, "the event just committed")
		}
		cancel()
		readers.Wait()
	})
}
