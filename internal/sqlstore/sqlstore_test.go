package sqlstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

var dialects = map[string]*sqlstore.Dialect{"postgres": sqlstore.Postgres, "mysql": sqlstore.MySQL, "sqlite": sqlstore.SQLite}

func TestRebind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	assert.Equal(t, "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)", sqlstore.Postgres.Rebind(q))
	assert.Equal(t, q, sqlstore.MySQL.Rebind(q))
	assert.Equal(t, q, sqlstore.SQLite.Rebind(q))
	assert.Equal(t, "SELECT 1", sqlstore.Postgres.Rebind("SELECT 1"))
	assert.Equal(t, "?, ?, ?", sqlstore.Marks(3))
	assert.Empty(t, sqlstore.Marks(0))
}

func TestCheckIdent(t *testing.T) {
	for _, ok := range []string{"outbox", "_x1", "app.outbox", "A_b_C"} {
		assert.NoError(t, sqlstore.CheckIdent(ok), ok)
	}
	for _, bad := range []string{"", "1x", "a-b", "a b", "t; DROP TABLE users", "a.b.c", "x'", `x"`, "a.", ".a"} {
		err := sqlstore.CheckIdent(bad)
		assert.ErrorIs(t, err, sqlstore.ErrBadIdentifier, "%q", bad)
	}
}

func TestHash32(t *testing.T) {
	assert.Equal(t, uint32(0x811c9dc5), sqlstore.Hash32(""), "FNV-1a offset basis")
	assert.Equal(t, uint32(0xe40c292c), sqlstore.Hash32("a"))
}

func forEachDatabase(t *testing.T, f func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect)) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			f(t, db, dialects[db.Dialect])
		})
	}
}

// NowMicros reads the database's clock in microseconds.
func TestNowMicros(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		var now int64
		require.NoError(t, db.QueryRowContext(context.Background(), "SELECT "+d.Now).Scan(&now))
		assert.InDelta(t, time.Now().UnixMicro(), now, float64(time.Minute.Microseconds()), "the same clock, in microseconds")
	})
}

func TestInsertIgnore(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, "CREATE TABLE kv (k VARCHAR(16) PRIMARY KEY, v INTEGER NOT NULL)")
		require.NoError(t, err)
		insert := d.InsertIgnore("kv", []string{"k", "v"}, "?, ?")
		for i, want := range []int64{1, 0} {
			res, err := db.ExecContext(ctx, insert, "a", i)
			require.NoError(t, err)
			n, err := res.RowsAffected()
			require.NoError(t, err)
			assert.Equal(t, want, n)
		}
		var v int
		require.NoError(t, db.QueryRowContext(ctx, d.Rebind("SELECT v FROM kv WHERE k = ?"), "a").Scan(&v))
		assert.Zero(t, v, "the first row stays")
	})
}

func TestUpsert(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, "CREATE TABLE kvw (k VARCHAR(16) PRIMARY KEY, v INTEGER NOT NULL, w INTEGER NOT NULL)")
		require.NoError(t, err)
		upsert := d.Upsert("kvw", []string{"k", "v", "w"}, "?, ?, ?", "k", "v")
		for _, row := range [][]any{{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}} {
			_, err := db.ExecContext(ctx, upsert, row...)
			require.NoError(t, err, "%v", row)
		}
		got := map[string][2]int{}
		rows, err := db.QueryContext(ctx, "SELECT k, v, w FROM kvw")
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var (
				k    string
				v, w int
			)
			require.NoError(t, rows.Scan(&k, &v, &w))
			got[k] = [2]int{v, w}
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, map[string][2]int{"a": {3, 1}, "b": {2, 2}}, got, "v updated, w kept")
	})
}

// Processes that migrate at once apply each version once, and a later call
// applies only what is new.
func TestMigrateConcurrently(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		v1 := sqlstore.Migration{Version: 1, Statements: []string{
			"CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name VARCHAR(16) NOT NULL)",
			d.InsertIgnore("things", []string{"id", "name"}, "1, 'first'"),
		}}
		v2 := sqlstore.Migration{Version: 2, Statements: []string{
			d.InsertIgnore("things", []string{"id", "name"}, "2, 'second'"),
		}}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				errs[i] = sqlstore.Migrate(ctx, db.DB, d, "test-lock", "things_versions", []sqlstore.Migration{v1})
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		require.NoError(t, sqlstore.Migrate(ctx, db.DB, d, "test-lock", "things_versions", []sqlstore.Migration{v1, v2}))

		var things, versions int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM things").Scan(&things))
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM things_versions").Scan(&versions))
		assert.Equal(t, 2, things)
		assert.Equal(t, 2, versions)

		err := sqlstore.Migrate(ctx, db.DB, d, "test-lock", "bad name", nil)
		assert.ErrorIs(t, err, sqlstore.ErrBadIdentifier)
	})
}

func TestText(t *testing.T) {
	assert.Equal(t, "plain", sqlstore.Text("plain"))
	assert.Equal(t, "a\uFFFDbc", sqlstore.Text("a\xffb\x00c"), "valid UTF-8, no NUL")
	long := sqlstore.Text(strings.Repeat("é", 1500)) // 3000 bytes
	assert.Len(t, long, sqlstore.MaxText, "cut between characters")
	assert.True(t, utf8.ValidString(long))
	odd := sqlstore.Text("x" + strings.Repeat("é", 1500))
	assert.Len(t, odd, sqlstore.MaxText-1, "a character that would straddle the limit is left out")
}

func TestColumn(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, "CREATE TABLE cols (id INTEGER PRIMARY KEY, name VARCHAR(16) NOT NULL)")
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, "INSERT INTO cols (id, name) VALUES (3, 'c'), (1, 'a'), (2, 'b')")
		require.NoError(t, err)

		ids, err := sqlstore.Column[int64](ctx, db.DB, d.Rebind("SELECT id FROM cols WHERE id >= ? ORDER BY id"), 2)
		require.NoError(t, err)
		assert.Equal(t, []int64{2, 3}, ids)
		names, err := sqlstore.Column[string](ctx, db.DB, "SELECT name FROM cols ORDER BY id")
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b", "c"}, names)
		none, err := sqlstore.Column[int](ctx, db.DB, "SELECT id FROM cols WHERE id > 10")
		require.NoError(t, err)
		assert.Empty(t, none)

		_, err = sqlstore.Column[int](ctx, db.DB, "SELECT name FROM cols")
		assert.Error(t, err, "a name does not scan into an int")
		_, err = sqlstore.Column[int](ctx, db.DB, "SELECT id FROM no_such_table")
		assert.Error(t, err)
	})
}

func TestArgs(t *testing.T) {
	assert.Equal(t, []any{int64(1), int64(2)}, sqlstore.Args([]int64{1, 2}))
	assert.Equal(t, []any{"a"}, sqlstore.Args([]string{"a"}))
	assert.Empty(t, sqlstore.Args[string](nil))
}

func TestDeleteFirst(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, "CREATE TABLE pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (a, b))")
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, "INSERT INTO pairs (a, b, at) VALUES (1, 1, 5), (1, 2, 1), (2, 1, 3), (2, 2, 2), (3, 1, 4)")
		require.NoError(t, err)

		query := d.DeleteFirst("pairs", "a, b", "a < ?", "at", 2)
		res, err := db.ExecContext(ctx, d.Rebind(query), 3)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		left, err := sqlstore.Column[int](ctx, db.DB, "SELECT at FROM pairs ORDER BY at")
		require.NoError(t, err)
		assert.Equal(t, []int{3, 4, 5}, left, "the two earliest of those with a < 3 are gone")
	})
}

func TestCheckTable(t *testing.T) {
	assert.NoError(t, sqlstore.Postgres.CheckTable("app.events", 14))
	assert.ErrorIs(t, sqlstore.Postgres.CheckTable("bad name", 14), sqlstore.ErrBadIdentifier)
	assert.ErrorIs(t, sqlstore.Postgres.CheckTable(strings.Repeat("t", 50), 14), sqlstore.ErrTooLong)
}

func TestUUIDv7(t *testing.T) {
	id := sqlstore.UUIDv7()
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id)
	assert.NotEqual(t, id, sqlstore.UUIDv7())
}
