package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Dialect is what differs between the databases that the outbox and the
// saga log run on: one value per database, each in a file of its own
// ([Postgres] in postgres.go, [MySQL] in mysql.go, [SQLite] in sqlite.go).
// Every field must be set: a database added without one fails
// [Dialect.Check], which a test runs on every dialect.
type Dialect struct {
	// Name is the database as messages name it: "PostgreSQL", "MySQL" (MySQL
	// 8 and MariaDB 10.6 or later), "SQLite".
	Name string

	// MaxIdent is the longest identifier the database takes, in bytes.
	MaxIdent int

	// Now is an SQL expression for the database's clock, in microseconds
	// since the Unix epoch, as a 64-bit integer.
	Now string

	// Rebind rewrites the ? placeholders of q for the database's driver; q
	// must not hold a ? inside a literal.
	Rebind func(q string) string

	// InsertIgnore returns the statement that inserts one row into table,
	// and does nothing when it would break a unique key.
	InsertIgnore func(table string, columns []string, values string) string

	// Upsert returns the statement that inserts one row (or, with values
	// holding several parenthesised lists, rows) into table, or, for a row
	// whose key (the columns of a primary or unique key, comma-separated)
	// exists, sets the columns update to the values the insert carried.
	Upsert func(table string, columns []string, values, key string, update ...string) string

	// DeleteFirst returns the statement that deletes the first limit rows
	// of table, in orderBy's order, of those that where selects; key lists
	// the columns that identify a row.
	DeleteFirst func(table, key, where, orderBy string, limit int) string

	// Claim runs c: it takes up to c.Limit rows, skipping rows that another
	// claim holds locked, and hands the returned columns of each to scan.
	Claim func(ctx context.Context, db *sql.DB, c Claim, scan func(*sql.Rows) error) error

	// Lock takes the lock named name, held on conn until unlock is called,
	// for migrations that several processes may run at once.
	Lock func(ctx context.Context, conn *sql.Conn, name string) (unlock func(), err error)

	// Apply applies the statements of one migration and then record (with
	// the migration's version as its argument), as one transaction where
	// the database's DDL is transactional.
	Apply func(ctx context.Context, conn *sql.Conn, m Migration, record string) error

	// Probe is a query whose one value tells what server answers it, and
	// Recognize reads that value: the server's name and version as messages
	// give them ("PostgreSQL 15.19", "MariaDB 10.11.19") and whether it is
	// this dialect's database.
	Probe     string
	Recognize func(version string) (server string, ok bool)
}

// Dialects lists every dialect, in the order Identify tries them.
var Dialects = []*Dialect{Postgres, MySQL, SQLite}

func (d *Dialect) String() string { return d.Name }

// Check returns an error naming every field of d that is not set.
func (d *Dialect) Check() error {
	if missing := Unset(d); len(missing) > 0 {
		return fmt.Errorf("sqlstore: dialect %q: not set: %s", d.Name, strings.Join(missing, ", "))
	}
	return nil
}

// Unset returns the names of the fields of *v, a pointer to a struct, that
// hold their zero value: for the per-database values of the packages that
// build on a Dialect, which must set every field.
func Unset(v any) []string {
	s := reflect.ValueOf(v).Elem()
	var missing []string
	for i := range s.NumField() {
		if s.Field(i).IsZero() {
			missing = append(missing, s.Type().Field(i).Name)
		}
	}
	return missing
}

// Claim describes what a claim takes: it sets Set (with SetArgs) on up to
// Limit rows of Table that Where (with WhereArgs) selects, taken in OrderBy
// order, and returns the columns Returning of each row it took. Key is the
// one column that identifies a row. IndexHint, if set, names the index a
// database that needs telling (MySQL) reads the candidates by.
type Claim struct {
	Table, Key string
	Set        string
	SetArgs    []any
	Where      string
	WhereArgs  []any
	OrderBy    string
	Limit      int
	Returning  string
	IndexHint  string
}

// ErrUnknownServer is matched by the error of Identify for a server that no
// dialect recognizes.
var ErrUnknownServer = errors.New("sqlstore: unknown database server")

// Identify asks the server behind q what it is, and returns the dialect it
// speaks and its name and version, such as "PostgreSQL 15.19".
func Identify(ctx context.Context, q Querier) (*Dialect, string, error) {
	var errs []error
	for _, d := range Dialects {
		version, err := queryString(ctx, q, d.Probe)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if server, ok := d.Recognize(version); ok {
			return d, server, nil
		}
	}
	return nil, "", fmt.Errorf("%w: %w", ErrUnknownServer, errors.Join(errs...))
}

// CheckServer returns an error unless the server behind q speaks d, such
// as "dialect MySQL but the server is PostgreSQL 15.19".
func CheckServer(ctx context.Context, q Querier, d *Dialect) error {
	got, server, err := Identify(ctx, q)
	if err != nil {
		return err
	}
	if got != d {
		return fmt.Errorf("dialect %s but the server is %s", d.Name, server)
	}
	return nil
}

func queryString(ctx context.Context, q Querier, query string) (string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var s string
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", sql.ErrNoRows
	}
	if err := rows.Scan(&s); err != nil {
		return "", err
	}
	return s, rows.Err()
}

// rebindDollar rewrites ? placeholders as $1, $2, ...
func rebindDollar(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := range len(q) {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// unchanged is the Rebind of a database whose driver takes ? itself.
func unchanged(q string) string { return q }

// onConflict is the Upsert of the databases that have ON CONFLICT (key) DO
// UPDATE.
func onConflict(table string, columns []string, values, key string, update ...string) string {
	set := make([]string, len(update))
	for i, c := range update {
		set[i] = c + " = excluded." + c
	}
	return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES " + valueLists(values) +
		" ON CONFLICT (" + key + ") DO UPDATE SET " + strings.Join(set, ", ")
}

// valueLists wraps values in parentheses unless it holds its lists already.
func valueLists(values string) string {
	if strings.HasPrefix(values, "(") {
		return values
	}
	return "(" + values + ")"
}

// deleteThroughKeys is the DeleteFirst of the databases whose DELETE takes
// no ORDER BY and LIMIT: it deletes the keys that a subquery selects.
func deleteThroughKeys(table, key, where, orderBy string, limit int) string {
	return fmt.Sprintf("DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d)",
		table, key, key, table, where, orderBy, limit)
}

// applyInTx is the Apply of the databases whose DDL is transactional.
func applyInTx(ctx context.Context, conn *sql.Conn, m Migration, record string) error {
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

// scanAll calls scan for each of rows, and closes them.
func scanAll(rows *sql.Rows, scan func(*sql.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
