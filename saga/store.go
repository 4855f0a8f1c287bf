package saga

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Dialect says which kind of database holds a durable coordinator's log and
// the barrier, and the prefix of its tables: [Postgres], [MySQL] (MySQL 8 or
// MariaDB 10.6 and later) or [SQLite], with tables saga_instances,
// saga_steps and saga_barrier by default.
type Dialect struct {
	db     *database
	prefix string
}

// database is what the saga log and the barrier do differently on each
// database: one value per database, in postgres.go, mysql.go and sqlite.go,
// each field set (a test checks).
type database struct {
	sql *sqlstore.Dialect
	// schema is the statements of the tables: {p} stands for the prefix,
	// {n} for the prefix without its schema, which index names start with.
	schema []string
	// insertIgnore returns the statement that inserts one row into table,
	// with ? placeholders, and does nothing when it would break a unique
	// key.
	insertIgnore func(table string, columns []string, values string) string
	// stepRow is the values of one row of a journal write's upsert of step
	// rows, in the order of stepColumns: placeholders, typed where the
	// database needs telling, and the clock.
	stepRow string
	// write returns the statements of one journal write, with ?
	// placeholders: inst, the instance's statement (an insert that ignores
	// an existing row, or an update fenced by the claim's token), and then
	// the upsert into table of step rows, values (stepRows lists), which
	// must write nothing unless inst changed a row. One statement where the
	// database chains the two (a data-modifying CTE, whose upsert reads the
	// row that inst returns); otherwise inst and the upsert, which a
	// transaction runs, the upsert only if inst changed a row.
	write func(inst, table, values string) []string
}

// stepColumns are the columns of a journal write's step rows.
var stepColumns = []string{"saga_id", "step", "phase", "status", "output", "error", "updated_at"}

// upsertInTx is the write of the databases that run a journal write as
// two statements in a transaction.
func upsertInTx(d *sqlstore.Dialect) func(inst, table, values string) []string {
	return func(inst, table, values string) []string {
		return []string{inst, d.Upsert(table, stepColumns, values, "saga_id, step, phase", "status", "output", "error", "updated_at")}
	}
}

// The dialects, with the default table prefix "saga".
var (
	Postgres = Dialect{db: postgres, prefix: "saga"}
	MySQL    = Dialect{db: mysql, prefix: "saga"}
	SQLite   = Dialect{db: sqlite, prefix: "saga"}
)

// String returns the database and the table prefix, "PostgreSQL:saga" say.
func (d Dialect) String() string {
	if d.db == nil {
		return "zero Dialect"
	}
	return d.db.sql.Name + ":" + d.prefix
}

// longestSuffix is the longest suffix the saga adds to its prefix: the
// index {prefix}_instances_stuck, and {prefix}_barrier_created.
const longestSuffix = len("_instances_stuck")

// WithPrefix returns d with its tables named prefix_instances,
// prefix_steps and prefix_barrier. A prefix often comes from configuration,
// so a bad one is an error: letters, digits and underscores, or
// schema.prefix, with a prefix part of at most 47 bytes on PostgreSQL and
// 48 on MySQL (the longest name the saga derives from it adds 16).
func (d Dialect) WithPrefix(prefix string) (Dialect, error) {
	if d.db == nil {
		return d, errors.New("saga: WithPrefix: zero Dialect; use saga.Postgres, MySQL or SQLite")
	}
	if err := sqlstore.CheckIdent(prefix); err != nil {
		return d, fmt.Errorf("saga: table prefix: %w", err)
	}
	if err := d.db.sql.CheckLength(prefix, longestSuffix); err != nil {
		return d, fmt.Errorf("saga: table prefix: %w", err)
	}
	d.prefix = prefix
	return d, nil
}

// q rebinds a query written with ? placeholders, {p} for the prefix and {n}
// for the prefix without its schema, which index names start with.
func (d Dialect) q(query string) string {
	return d.db.sql.Rebind(d.expand(query))
}

// expand puts d's table prefix for {p} and its last part, which names
// indexes, for {n}.
func (d Dialect) expand(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "{p}", d.prefix), "{n}", d.name())
}

func (d Dialect) name() string { return d.prefix[strings.LastIndexByte(d.prefix, '.')+1:] }

// ended is the next_attempt_at of an instance that nobody drives again:
// ended, stuck or resolved. Claims look for due instances in an index on
// next_attempt_at, which this keeps out of their way.
const ended = math.MaxInt64

// Migrate creates d's tables in db, or brings them up to date: the
// instances and steps of a durable coordinator's log, and the barrier of
// participants. It is safe to call at every start, from several processes
// at once.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	if d.db == nil {
		return fmt.Errorf("saga: Migrate: zero Dialect; use saga.Postgres, MySQL or SQLite")
	}
	if err := sqlstore.CheckServer(ctx, db, d.db.sql); err != nil {
		return fmt.Errorf("saga: Migrate: %w", err)
	}
	m := sqlstore.Migration{Version: 1}
	for _, st := range d.db.schema {
		m.Statements = append(m.Statements, d.expand(st))
	}
	if err := sqlstore.Migrate(ctx, db, d.db.sql, "saga:"+d.prefix, d.prefix+"_migrations", []sqlstore.Migration{m}); err != nil {
		return fmt.Errorf("saga: migrate %s: %w", d, err)
	}
	return nil
}
