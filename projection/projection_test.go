package projection_test

import (
	"context"
	"database/sql"
	"fmt"
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
	"github.com/resilience-go/resilience/projection"
)

func dialectNamed(name string) eventstore.Dialect {
	return map[string]eventstore.Dialect{"postgres": eventstore.Postgres, "mysql": eventstore.MySQL, "sqlite": eventstore.SQLite}[name]
}

func rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	return sqlstore.Postgres.Rebind(q)
}

// stock is the read model of the tests: the quantity of each SKU, from
// events of type Received whose payload is "sku quantity".
func stock(dialect string) projection.Projection {
	return projection.Projection{
		Name: "stock",
		Create: func(table string) []string {
			return []string{"CREATE TABLE IF NOT EXISTS " + table + " (sku VARCHAR(64) NOT NULL PRIMARY KEY, quantity BIGINT NOT NULL)"}
		},
		Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			for _, e := range events {
				var (
					sku string
					n   int64
				)
				if _, err := fmt.Sscan(string(e.Payload), &sku, &n); err != nil {
					return fmt.Errorf("event %d: %w", e.Position, err)
				}
				res, err := tx.ExecContext(ctx, rebind(dialect, "UPDATE "+table+" SET quantity = quantity + ? WHERE sku = ?"), n, sku)
				if err != nil {
					return err
				}
				if done, err := res.RowsAffected(); err != nil {
					return err
				} else if done == 1 {
					continue
				}
				if _, err := tx.ExecContext(ctx, rebind(dialect, "INSERT INTO "+table+" (sku, quantity) VALUES (?, ?)"), sku, n); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

type fixture struct {
	db *servicetest.DB
	s  *eventstore.Store
	pr *projection.Projector
}

func forEachDatabase(t *testing.T, f func(t *testing.T, fx fixture)) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			s := eventstore.New(db.DB, dialectNamed(db.Dialect))
			ctx := context.Background()
			require.NoError(t, s.Migrate(ctx))
			pr := projection.New(s, stock(db.Dialect))
			require.NoError(t, pr.Migrate(ctx))
			require.NoError(t, pr.Migrate(ctx), "again: nothing to do")
			f(t, fixture{db, s, pr})
		})
	}
}

// receive appends n events of one unit each of sku, one transaction each.
func receive(t testing.TB, s *eventstore.Store, sku string, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		tx, err := s.DB().BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = s.Append(ctx, tx, "sku-"+sku, eventstore.Any, eventstore.Event{Type: "Received", Payload: []byte(sku + " 1")})
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
	}
}

// quantities reads the view, as readers do.
func quantities(db *sql.DB) (map[string]int64, error) {
	rows, err := db.Query("SELECT sku, quantity FROM stock")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			sku string
			n   int64
		)
		if err := rows.Scan(&sku, &n); err != nil {
			return nil, err
		}
		out[sku] = n
	}
	return out, rows.Err()
}

func total(q map[string]int64) (n int64) {
	for _, v := range q {
		n += v
	}
	return n
}

// A running projection keeps its view up to date, and Status shows how far
// behind it is.
func TestRunFollowsTheStore(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, fx fixture) {
		ctx, cancel := context.WithCancel(context.Background())
		receive(t, fx.s, "a", 3)
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, fx.pr.Run(ctx, eventstore.WithPollInterval(10*time.Millisecond))) })
		receive(t, fx.s, "b", 2)
		require.Eventually(t, func() bool {
			q, err := quantities(fx.db.DB)
			return err == nil && q["a"] == 3 && q["b"] == 2
		}, time.Minute, 5*time.Millisecond)
		states, err := projection.Status(ctx, fx.s)
		require.NoError(t, err)
		require.Len(t, states, 1)
		assert.Equal(t, "stock (table stock_1): at 5 of 5, 0 behind", states[0].String())
		assert.NotEmpty(t, states[0].Owner, "Run holds the lease")
		cancel()
		wg.Wait()

		receive(t, fx.s, "c", 4)
		states, err = projection.Status(context.Background(), fx.s)
		require.NoError(t, err)
		require.Len(t, states, 1)
		assert.Equal(t, int64(4), states[0].Lag)
		assert.Equal(t, int64(9), states[0].Head)
		assert.GreaterOrEqual(t, states[0].LagTime, time.Duration(0))
		assert.Empty(t, states[0].Owner)
		table, err := fx.pr.Table(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "stock_1", table)
	})
}

// A Rebuild replays every event into a new table while the old one serves
// the view, and swaps them: readers never fail and never see less than
// what the view showed when the rebuild began, writes go on all along, and
// in the end the new table holds every event once.
func TestRebuildWhileServing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, fx fixture) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, sku := range []string{"a", "b", "c"} {
			receive(t, fx.s, sku, 40)
		}
		var run sync.WaitGroup
		run.Go(func() { assert.NoError(t, fx.pr.Run(ctx, eventstore.WithPollInterval(10*time.Millisecond))) })
		require.Eventually(t, func() bool {
			q, err := quantities(fx.db.DB)
			return err == nil && total(q) == 120
		}, time.Minute, 5*time.Millisecond)

		var (
			stop    atomic.Bool
			readers sync.WaitGroup
			reads   atomic.Int64
		)
		readers.Go(func() {
			for !stop.Load() {
				q, err := quantities(fx.db.DB)
				if !assert.NoError(t, err, "a read during the rebuild") {
					return
				}
				assert.GreaterOrEqual(t, total(q), int64(120), "the view never shows less than before the rebuild")
				reads.Add(1)
			}
		})
		readers.Go(func() { receive(t, fx.s, "d", 30) }) // writes go on

		require.NoError(t, fx.pr.Rebuild(ctx, eventstore.WithBatchSize(10)))
		table, err := fx.pr.Table(ctx)
		require.NoError(t, err)
		assert.Equal(t, "stock_2", table)
		_, err = fx.db.ExecContext(ctx, "SELECT COUNT(*) FROM stock_1")
		assert.Error(t, err, "the old table is gone")

		require.Eventually(t, func() bool {
			q, err := quantities(fx.db.DB)
			return err == nil && total(q) == 150
		}, time.Minute, 5*time.Millisecond, "Run goes on with the new generation")
		stop.Store(true)
		readers.Wait()
		q, err := quantities(fx.db.DB)
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"a": 40, "b": 40, "c": 40, "d": 30}, q, "each event once")
		assert.Positive(t, reads.Load())

		receive(t, fx.s, "e", 2)
		require.Eventually(t, func() bool {
			q, err := quantities(fx.db.DB)
			return err == nil && q["e"] == 2
		}, time.Minute, 5*time.Millisecond, "and keeps following the store")
		states, err := projection.Status(ctx, fx.s)
		require.NoError(t, err)
		require.Len(t, states, 1)
		assert.Equal(t, int64(2), states[0].Generation)
		assert.False(t, states[0].Rebuilding)
		cancel()
		run.Wait()
		subs, err := fx.s.Subscriptions(context.Background())
		require.NoError(t, err)
		require.Len(t, subs, 1, "the old generation's subscription is gone")
		assert.Equal(t, "projection:stock:2", subs[0].Name)
	})
}

// A rebuild that died midway is run again from scratch, and Status shows
// it while it is under way.
func TestRebuildAgainAfterAFailure(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		receive(t, fx.s, "a", 5)
		failing := stock(fx.db.Dialect)
		apply := failing.Apply
		calls := 0
		stopped, stop := context.WithCancel(ctx)
		failing.Apply = func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			calls++
			if calls == 3 {
				stop() // the rebuild dies here, after two batches
			}
			return apply(ctx, tx, table, events)
		}
		err := projection.New(fx.s, failing).Rebuild(stopped, eventstore.WithBatchSize(2))
		assert.ErrorIs(t, err, context.Canceled)
		states, err := projection.Status(ctx, fx.s)
		require.NoError(t, err)
		require.Len(t, states, 1)
		assert.True(t, states[0].Rebuilding)
		assert.Equal(t, int64(4), states[0].RebuildPosition)
		assert.Equal(t, "stock (table stock_1): at 0 of 5, 5 behind, rebuilding at 4", states[0].String())

		require.NoError(t, fx.pr.Rebuild(ctx))
		q, err := quantities(fx.db.DB)
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"a": 5}, q)
		states, err = projection.Status(ctx, fx.s)
		require.NoError(t, err)
		assert.Equal(t, "stock (table stock_2): at 5 of 5, 0 behind", states[0].String())
	})
}

func TestNewRefusesABadProjection(t *testing.T) {
	db := servicetest.SQLite(t)
	s := eventstore.New(db.DB, eventstore.SQLite)
	p := stock("sqlite")
	assert.PanicsWithValue(t, "projection: New: nil Store", func() { projection.New(nil, p) })
	for _, name := range []string{"", "a.b", "a-b", strings.Repeat("n", 41)} {
		bad := p
		bad.Name = name
		assert.Panics(t, func() { projection.New(s, bad) }, "%q", name)
	}
	bad := p
	bad.Apply = nil
	assert.PanicsWithValue(t, "projection: New: stock: Create and Apply are required", func() { projection.New(s, bad) })
	_, err := projection.New(s, p).Table(context.Background())
	assert.Error(t, err, "before Migrate")
}
