package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every dialect sets every field; one that leaves a field unset fails Check,
// naming the field.
func TestDialectsAreComplete(t *testing.T) {
	require.Len(t, sqlstore.Dialects, 3)
	for _, d := range sqlstore.Dialects {
		assert.NoError(t, d.Check(), d.Name)
	}
	partial := *sqlstore.Postgres
	partial.Name, partial.Claim, partial.Now = "Partial", nil, ""
	assert.EqualError(t, partial.Check(), `sqlstore: dialect "Partial": not set: Now, Claim`)
}

// Each server says what it is, and a dialect that does not match it says
// so.
func TestIdentify(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		got, server, err := sqlstore.Identify(ctx, db.DB)
		require.NoError(t, err)
		assert.Same(t, d, got, server)
		assert.Regexp(t, `^(PostgreSQL|MySQL|MariaDB|SQLite) [0-9][0-9.]*`, server)
		assert.NoError(t, sqlstore.CheckServer(ctx, db.DB, d))
		for _, other := range sqlstore.Dialects {
			if other != d {
				assert.EqualError(t, sqlstore.CheckServer(ctx, db.DB, other),
					fmt.Sprintf("dialect %s but the server is %s", other.Name, server))
			}
		}
	})
}

func TestRecognize(t *testing.T) {
	tests := []struct {
		d       *sqlstore.Dialect
		version string
		server  string
		ok      bool
	}{
		{sqlstore.Postgres, "PostgreSQL 15.19 (Debian 15.19-0+deb12u1) on x86_64-pc-linux-gnu", "PostgreSQL 15.19", true},
		{sqlstore.Postgres, "10.11.19-MariaDB-0+deb12u1", "", false},
		{sqlstore.MySQL, "10.11.19-MariaDB-0+deb12u1", "MariaDB 10.11.19", true},
		{sqlstore.MySQL, "8.0.36", "MySQL 8.0.36", true},
		{sqlstore.MySQL, "PostgreSQL 15.19", "", false},
		{sqlstore.SQLite, "3.46.0", "SQLite 3.46.0", true},
	}
	for _, tt := range tests {
		server, ok := tt.d.Recognize(tt.version)
		assert.Equal(t, tt.ok, ok, "%s %q", tt.d, tt.version)
		assert.Equal(t, tt.server, server, "%s %q", tt.d, tt.version)
	}
}

func TestCheckLength(t *testing.T) {
	assert.NoError(t, sqlstore.Postgres.CheckLength("app.outbox_messages", 15))
	err := sqlstore.Postgres.CheckLength("a234567890123456789012345678901234567890123456789", 15)
	assert.ErrorIs(t, err, sqlstore.ErrTooLong)
	assert.ErrorContains(t, err, "49 bytes, at most 48 on PostgreSQL")
	assert.NoError(t, sqlstore.MySQL.CheckLength("a234567890123456789012345678901234567890123456789", 15), "64 on MySQL")
	assert.NoError(t, sqlstore.SQLite.CheckLength("a234567890123456789012345678901234567890123456789", 15))
	long := "s2345678901234567890123456789012345678901234567890123456789012345"
	assert.ErrorContains(t, sqlstore.MySQL.CheckLength(long+".t", 15), "schema of 65 bytes, at most 64 on MySQL")
}

// Claims that run at once never take the same row, take rows in order,
// and return what they set.
func TestClaim(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d *sqlstore.Dialect) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, "CREATE TABLE jobs (id INTEGER PRIMARY KEY, owner VARCHAR(16) NULL, due INTEGER NOT NULL)")
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, "CREATE INDEX jobs_due ON jobs (due)")
		require.NoError(t, err)
		const jobs = 200
		for i := range jobs {
			_, err := db.ExecContext(ctx, d.Rebind("INSERT INTO jobs (id, due) VALUES (?, ?)"), i, jobs-i)
			require.NoError(t, err)
		}
		first := map[int]string{}
		claim := func(owner string, limit int) ([]int, error) {
			var ids []int
			err := d.Claim(ctx, db.DB, sqlstore.Claim{Table: "jobs", Key: "id", Set: "owner = ?", SetArgs: []any{owner},
				Where: "owner IS NULL AND due > ?", WhereArgs: []any{0}, OrderBy: "due", Limit: limit,
				Returning: "id, owner", IndexHint: "jobs_due"}, func(rows *sql.Rows) error {
				var (
					id  int
					got string
				)
				if err := rows.Scan(&id, &got); err != nil {
					return err
				}
				if got != owner {
					return fmt.Errorf("job %d returned owner %q, want %q", id, got, owner)
				}
				ids = append(ids, id)
				return nil
			})
			return ids, err
		}
		ids, err := claim("first", 3)
		require.NoError(t, err)
		slices.Sort(ids)
		assert.Equal(t, []int{197, 198, 199}, ids, "the first in due order")
		for _, id := range ids {
			first[id] = "first"
		}

		var (
			mu    sync.Mutex
			taken = map[int]string{}
			wg    sync.WaitGroup
		)
		for w := range 4 {
			wg.Go(func() {
				owner := fmt.Sprint("w", w)
				for {
					ids, err := claim(owner, 7)
					if !assert.NoError(t, err) || len(ids) == 0 {
						return
					}
					mu.Lock()
					for _, id := range ids {
						if prev, ok := taken[id]; ok {
							t.Errorf("job %d taken by %s and %s", id, prev, owner)
						}
						taken[id] = owner
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Len(t, taken, jobs-3, "every job but the first three, once")
		for id := range first {
			assert.NotContains(t, taken, id)
		}
		ids, err = claim("late", 5)
		require.NoError(t, err)
		assert.Empty(t, ids, "nothing left")
	})
}
