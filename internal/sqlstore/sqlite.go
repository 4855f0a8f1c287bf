package sqlstore

import (
	"context"
	"database/sql"
	"strings"
)

// SQLite is SQLite 3.42 or later, through a pure-Go driver such as
// modernc.org/sqlite, in WAL mode with a busy timeout. Its clock counts
// milliseconds. It has one writer at a time, so a claim needs no lock to
// skip what another holds, and migrations need no lock of their own.
var SQLite = &Dialect{
	Name:     "SQLite",
	MaxIdent: 1 << 16, // SQLite sets no limit of its own
	Now:      "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
	Rebind:   unchanged,
	InsertIgnore: func(table string, columns []string, values string) string {
		return "INSERT OR IGNORE INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES (" + values + ")"
	},
	Upsert:      onConflict,
	DeleteFirst: deleteThroughKeys,
	Claim: func(ctx context.Context, db *sql.DB, c Claim, scan func(*sql.Rows) error) error {
		q := "UPDATE " + c.Table + " SET " + c.Set + " WHERE " + c.Key + " IN (SELECT " + c.Key + " FROM " + c.Table +
			" WHERE " + c.Where + " ORDER BY " + c.OrderBy + " LIMIT ?) RETURNING " + c.Returning
		args := append(append(append(make([]any, 0, len(c.SetArgs)+len(c.WhereArgs)+1), c.SetArgs...), c.WhereArgs...), c.Limit)
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		return scanAll(rows, scan)
	},
	Lock: func(context.Context, *sql.Conn, string) (func(), error) {
		return func() {}, nil
	},
	Apply:     applyInTx,
	Probe:     "SELECT sqlite_version()",
	Recognize: func(version string) (string, bool) { return "SQLite " + version, version != "" },
}
