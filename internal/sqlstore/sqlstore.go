// Package sqlstore holds what the outbox and saga packages share about SQL
// databases: the three flavours they run on, placeholders, the database's
// clock, identifier checks, reading a column, storable error text, and
// versioned migrations applied under a lock.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Flavor is a kind of SQL database.
type Flavor uint8

// The flavours. The zero Flavor is none of them.
const (
	Postgres Flavor = iota + 1
	MySQL           // MySQL 8 and MariaDB 10.6 or later
	SQLite
)

func (f Flavor) String() string {
	switch f {
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return "Flavor(" + strconv.Itoa(int(f)) + ")"
}

// Rebind rewrites the ? placeholders of q as $1, $2, ... for PostgreSQL, and
// returns q unchanged for the others. q must not hold a ? inside a literal.
func (f Flavor) Rebind(q string) string {
	if f != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := range len(q) {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// NowMicros returns an SQL expression for the database's clock, in
// microseconds since the Unix epoch, as a 64-bit integer: the time the
// statement started on PostgreSQL (stable within it, so an index can serve
// a condition on it), UTC whatever the session's time zone on MySQL, and
// millisecond resolution on SQLite (3.42 or later).
func (f Flavor) NowMicros() string {
	switch f {
	case Postgres:
		return "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::BIGINT"
	case MySQL:
		return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))"
	}
	return "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
}

// Marks returns n comma-separated placeholders: "?, ?, ?".
func Marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}(\.[A-Za-z_][A-Za-z0-9_]{0,47})?$`)

// ErrBadIdentifier is matched by the error of CheckIdent.
var ErrBadIdentifier = errors.New("not a valid SQL identifier")

// CheckIdent reports an error unless name is a plain SQL identifier, or two
// joined by a dot (schema.table): letters, digits and underscores, not
// starting with a digit, at most 48 characters each, so that a table name
// built from it cannot carry SQL.
func CheckIdent(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrBadIdentifier)
	}
	return nil
}

// Migration is one version of a schema: statements applied in order.
type Migration struct {
	Version    int
	Statements []string
}

// Migrate applies to db the migrations whose version is not recorded in
// versionTable, in order, each recorded once applied, under a lock named
// lockName so that processes that migrate at once do not collide. On
// PostgreSQL and SQLite each version is applied in one transaction; MySQL
// commits DDL statement by statement. Every statement must be safe to
// repeat (CREATE ... IF NOT EXISTS, INSERT ignoring duplicates).
func Migrate(ctx context.Context, db *sql.DB, f Flavor, lockName, versionTable string, migrations []Migration) error {
	if err := CheckIdent(versionTable); err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	unlock, err := lock(ctx, conn, f, lockName)
	if err != nil {
		return fmt.Errorf("lock %s: %w", lockName, err)
	}
	defer unlock()

	create := "CREATE TABLE IF NOT EXISTS " + versionTable + " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
	if _, err := conn.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create %s: %w", versionTable, err)
	}
	applied, err := Column[int](ctx, conn, "SELECT version FROM "+versionTable)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if slices.Contains(applied, m.Version) {
			continue
		}
		if err := apply(ctx, conn, f, versionTable, m); err != nil {
			return fmt.Errorf("migration %d: %w", m.Version, err)
		}
	}
	return nil
}

func apply(ctx context.Context, conn *sql.Conn, f Flavor, versionTable string, m Migration) error {
	// Ignoring a version already recorded makes a migration that raced with
	// another one harmless: every statement is safe to repeat.
	record := f.InsertIgnore(versionTable, []string{"version", "applied_at"}, "?, "+f.NowMicros())
	if f == MySQL {
		for _, st := range m.Statements {
			if _, err := conn.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		_, err := conn.ExecContext(ctx, record, m.Version)
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for _, st := range m.Statements {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, record, m.Version); err != nil {
		return err
	}
	return tx.Commit()
}

// lock takes a lock named name, held on conn until unlock is called:
// PostgreSQL's session advisory lock or MySQL's GET_LOCK. SQLite takes none:
// it has one writer, and its statements are safe to repeat.
func lock(ctx context.Context, conn *sql.Conn, f Flavor, name string) (unlock func(), err error) {
	switch f {
	case Postgres:
		key := int64(Hash32(name))
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return nil, err
		}
		return func() { conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key) }, nil //nolint:errcheck // the session ends the lock anyway
	case MySQL:
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
			return nil, err
		}
		if got.Int64 != 1 {
			return nil, errors.New("GET_LOCK timed out")
		}
		return func() { conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", name) }, nil //nolint:errcheck // the session ends the lock anyway
	}
	return func() {}, nil
}

// Querier is what Column queries through: a *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Column runs query and returns the one column of every row it yields.
func Column[T any](ctx context.Context, q Querier, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Args returns the elements of s as query arguments, to pass as args...
func Args[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// DeleteFirst returns the statement that deletes the first limit rows of
// table, in orderBy's order, of those that where selects; key lists the
// columns that identify a row. MySQL deletes with ORDER BY and LIMIT; the
// others, which cannot, delete the keys a subquery selects.
func (f Flavor) DeleteFirst(table, key, where, orderBy string, limit int) string {
	first := " WHERE " + where + " ORDER BY " + orderBy + " LIMIT " + strconv.Itoa(limit)
	if f == MySQL {
		return "DELETE FROM " + table + first
	}
	return "DELETE FROM " + table + " WHERE (" + key + ") IN (SELECT " + key + " FROM " + table + first + ")"
}

// Hash32 is the FNV-1a hash of s.
func Hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s)) //nolint:errcheck // a hash does not fail
	return h.Sum32()
}

// InsertIgnore returns the statement that inserts one row into table, and
// does nothing when it would break a unique key: ON CONFLICT DO NOTHING,
// INSERT IGNORE or INSERT OR IGNORE.
func (f Flavor) InsertIgnore(table string, columns []string, values string) string {
	cols := strings.Join(columns, ", ")
	switch f {
	case MySQL:
		return "INSERT IGNORE INTO " + table + " (" + cols + ") VALUES (" + values + ")"
	case SQLite:
		return "INSERT OR IGNORE INTO " + table + " (" + cols + ") VALUES (" + values + ")"
	}
	return f.Rebind("INSERT INTO " + table + " (" + cols + ") VALUES (" + values + ") ON CONFLICT DO NOTHING")
}

// MaxText is how much of an error's text (or an operator's note) the stores
// keep.
const MaxText = 2000

// Text makes s storable as text in every flavour: valid UTF-8 (PostgreSQL
// refuses anything else), without NUL bytes (which PostgreSQL's text cannot
// hold), at most MaxText bytes, cut between characters.
func Text(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= MaxText {
		return s
	}
	n := MaxText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
