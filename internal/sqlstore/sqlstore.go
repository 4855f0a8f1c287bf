// Package sqlstore holds what the outbox, saga and eventstore packages
// share about SQL databases: a [Dialect] per database with everything that
// differs between them (placeholders, the clock, inserts that ignore or
// update a row that exists, bounded deletes, claims that skip locked rows,
// the migration lock, how a server says what it is), and what does not
// differ: identifier checks, reading a column, storable error text, IDs,
// and versioned migrations applied under a lock.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Marks returns n comma-separated placeholders: "?, ?, ?".
func Marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// ErrBadIdentifier is matched by the error of CheckIdent.
var ErrBadIdentifier = errors.New("not a valid SQL identifier")

// CheckIdent reports an error unless name is a plain SQL identifier, or two
// joined by a dot (schema.table): letters, digits and underscores, not
// starting with a digit, so that a table name built from it cannot carry
// SQL. How long it may be depends on the database: see
// [Dialect.CheckLength].
func CheckIdent(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrBadIdentifier)
	}
	return nil
}

// ErrTooLong is matched by the error of CheckLength.
var ErrTooLong = errors.New("identifier too long")

// CheckLength reports an error unless each part of name (schema.name) fits
// d's identifiers, once the longest suffix the caller adds to its last part
// (suffix bytes: "_migrations", an index name's) is added.
func (d *Dialect) CheckLength(name string, suffix int) error {
	schema, last, ok := strings.Cut(name, ".")
	if !ok {
		schema, last = "", name
	}
	if len(schema) > d.MaxIdent {
		return fmt.Errorf("%q: schema of %d bytes, at most %d on %s: %w", name, len(schema), d.MaxIdent, d.Name, ErrTooLong)
	}
	if max := d.MaxIdent - suffix; len(last) > max {
		return fmt.Errorf("%q: %d bytes, at most %d on %s: %w", name, len(last), max, d.Name, ErrTooLong)
	}
	return nil
}

// CheckTable reports an error unless table is a plain identifier, or
// schema.identifier, that fits d's identifiers once suffix bytes are added
// to it: what a store checks of the table name it is given.
func (d *Dialect) CheckTable(table string, suffix int) error {
	if err := CheckIdent(table); err != nil {
		return err
	}
	return d.CheckLength(table, suffix)
}

// Migration is one version of a schema: statements applied in order.
type Migration struct {
	Version    int
	Statements []string
}

// Fill returns the migrations ms for the tables named after table: in
// their statements, {t} stands for table and {n} for its name without a
// schema, which index names (that may not carry a schema) start with.
func Fill(ms []Migration, table string) []Migration {
	name := table[strings.LastIndexByte(table, '.')+1:]
	fill := strings.NewReplacer("{t}", table, "{n}", name)
	filled := make([]Migration, 0, len(ms))
	for _, m := range ms {
		f := Migration{Version: m.Version}
		for _, st := range m.Statements {
			f.Statements = append(f.Statements, fill.Replace(st))
		}
		filled = append(filled, f)
	}
	return filled
}

// Migrate applies to db the migrations whose version is not recorded in
// versionTable, in order, each recorded once applied, under d's lock named
// lockName so that processes that migrate at once do not collide (see
// [Dialect.Apply]). Every statement must be safe to repeat (CREATE ... IF
// NOT EXISTS, INSERT ignoring duplicates).
func Migrate(ctx context.Context, db *sql.DB, d *Dialect, lockName, versionTable string, migrations []Migration) error {
	if err := CheckIdent(versionTable); err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	unlock, err := d.Lock(ctx, conn, lockName)
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
		// Ignoring a version already recorded makes a migration that raced
		// with another one harmless: every statement is safe to repeat.
		record := d.InsertIgnore(versionTable, []string{"version", "applied_at"}, "?, "+d.Now)
		if err := d.Apply(ctx, conn, m, record); err != nil {
			return fmt.Errorf("migration %d: %w", m.Version, err)
		}
	}
	return nil
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

// Hash32 is the FNV-1a hash of s.
func Hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s)) //nolint:errcheck // a hash does not fail
	return h.Sum32()
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

// UUIDv7 returns a new UUID of version 7: 48 bits of Unix milliseconds, then
// random bits, so that IDs sort roughly by time: the ID the stores give a
// message or an event that has none.
func UUIDv7() string {
	var u [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	r1, r2 := rand.Uint64(), rand.Uint64()
	for i := range 5 {
		u[6+i] = byte(r1 >> (8 * i))
	}
	for i := range 5 {
		u[11+i] = byte(r2 >> (8 * i))
	}
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
