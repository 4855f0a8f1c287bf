package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// MySQL is MySQL 8 and MariaDB 10.6 or later, through
// github.com/go-sql-driver/mysql. Its clock is UTC whatever the session's
// time zone. It commits DDL statement by statement, so a migration is
// applied one statement at a time, each safe to repeat.
var MySQL = &Dialect{
	Name:     "MySQL",
	MaxIdent: 64,
	Now:      "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))",
	Rebind:   unchanged,
	InsertIgnore: func(table string, columns []string, values string) string {
		return "INSERT IGNORE INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES (" + values + ")"
	},
	Upsert: func(table string, columns []string, values, _ string, update ...string) string {
		set := make([]string, len(update))
		for i, c := range update {
			set[i] = c + " = VALUES(" + c + ")"
		}
		return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES " + valueLists(values) +
			" ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
	},
	DeleteFirst: func(table, _, where, orderBy string, limit int) string {
		return "DELETE FROM " + table + " WHERE " + where + " ORDER BY " + orderBy + " LIMIT " + strconv.Itoa(limit)
	},
	// MySQL cannot return what an UPDATE changed: lock the candidates,
	// update them and read them back in one short transaction.
	Claim: func(ctx context.Context, db *sql.DB, c Claim, scan func(*sql.Rows) error) error {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
		from := c.Table
		if c.IndexHint != "" {
			from += " FORCE INDEX (" + c.IndexHint + ")"
		}
		keys, err := Column[any](ctx, tx, "SELECT "+c.Key+" FROM "+from+" WHERE "+c.Where+" ORDER BY "+c.OrderBy+
			" LIMIT ? FOR UPDATE SKIP LOCKED", append(append([]any(nil), c.WhereArgs...), c.Limit)...)
		if err != nil || len(keys) == 0 {
			return err
		}
		in := c.Key + " IN (" + Marks(len(keys)) + ")"
		if _, err := tx.ExecContext(ctx, "UPDATE "+c.Table+" SET "+c.Set+" WHERE "+in,
			append(append([]any(nil), c.SetArgs...), keys...)...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+c.Returning+" FROM "+c.Table+" WHERE "+in, keys...)
		if err != nil {
			return err
		}
		if err := scanAll(rows, scan); err != nil {
			return err
		}
		return tx.Commit()
	},
	// GET_LOCK, held by the session.
	Lock: func(ctx context.Context, conn *sql.Conn, name string) (func(), error) {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
			return nil, err
		}
		if got.Int64 != 1 {
			return nil, errors.New("GET_LOCK timed out")
		}
		return func() {
			conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", name) //nolint:errcheck // the session ends the lock anyway
		}, nil
	},
	Apply: func(ctx context.Context, conn *sql.Conn, m Migration, record string) error {
		for _, st := range m.Statements {
			if _, err := conn.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		_, err := conn.ExecContext(ctx, record, m.Version)
		return err
	},
	Probe: "SELECT VERSION()",
	// "8.0.36", "10.11.19-MariaDB-0+deb12u1"
	Recognize: func(version string) (string, bool) {
		if version == "" || version[0] < '0' || version[0] > '9' {
			return "", false
		}
		number, rest, _ := strings.Cut(version, "-")
		if strings.HasPrefix(rest, "MariaDB") {
			return "MariaDB " + number, true
		}
		return "MySQL " + number, true
	},
}
