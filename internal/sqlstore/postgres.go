package sqlstore

import (
	"context"
	"database/sql"
	"strings"
)

// Postgres is PostgreSQL, through a driver that takes $n placeholders (pgx,
// lib/pq). Its clock is the time the statement started, stable within it,
// so that an index can serve a condition on it.
var Postgres = &Dialect{
	Name:     "PostgreSQL",
	MaxIdent: 63,
	Now:      "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::BIGINT",
	Rebind:   rebindDollar,
	InsertIgnore: func(table string, columns []string, values string) string {
		return rebindDollar("INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES (" + values + ") ON CONFLICT DO NOTHING")
	},
	Upsert: func(table string, columns []string, values, key string, update ...string) string {
		return rebindDollar(onConflict(table, columns, values, key, update...))
	},
	DeleteFirst: deleteThroughKeys,
	// The candidates are locked, skipping those another claim holds, in a
	// CTE: PostgreSQL evaluates it once, as a query with FOR UPDATE must.
	Claim: func(ctx context.Context, db *sql.DB, c Claim, scan func(*sql.Rows) error) error {
		q := "WITH claim (claimed) AS (SELECT " + c.Key + " FROM " + c.Table + " WHERE " + c.Where +
			" ORDER BY " + c.OrderBy + " LIMIT ? FOR UPDATE SKIP LOCKED) UPDATE " + c.Table + " SET " + c.Set +
			" FROM claim WHERE " + c.Table + "." + c.Key + " = claim.claimed RETURNING " + c.Returning
		args := append(append(append(make([]any, 0, len(c.WhereArgs)+1+len(c.SetArgs)), c.WhereArgs...), c.Limit), c.SetArgs...)
		rows, err := db.QueryContext(ctx, rebindDollar(q), args...)
		if err != nil {
			return err
		}
		return scanAll(rows, scan)
	},
	// A session advisory lock on the hash of the name.
	Lock: func(ctx context.Context, conn *sql.Conn, name string) (func(), error) {
		key := int64(Hash32(name))
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return nil, err
		}
		return func() {
			conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key) //nolint:errcheck // the session ends the lock anyway
		}, nil
	},
	Apply: applyInTx,
	Probe: "SELECT version()",
	// "PostgreSQL 15.19 (Debian 15.19-0+deb12u1) on x86_64-pc-linux-gnu, ..."
	Recognize: func(version string) (string, bool) {
		f := strings.Fields(version)
		if len(f) < 2 || f[0] != "PostgreSQL" {
			return "", false
		}
		return f[0] + " " + f[1], true
	},
}
