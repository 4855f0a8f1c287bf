package saga

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Dialect says which kind of database holds a durable coordinator's log and
// the barrier, and the prefix of its tables: [Postgres], [MySQL] (MySQL 8 or
// MariaDB 10.6 and later) or [SQLite], with tables saga_instances,
// saga_steps and saga_barrier by default.
type Dialect struct {
	flavor sqlstore.Flavor
	prefix string
}

// The dialects, with the default table prefix "saga".
var (
	Postgres = Dialect{flavor: sqlstore.Postgres, prefix: "saga"}
	MySQL    = Dialect{flavor: sqlstore.MySQL, prefix: "saga"}
	SQLite   = Dialect{flavor: sqlstore.SQLite, prefix: "saga"}
)

func (d Dialect) String() string { return d.flavor.String() + ":" + d.prefix }

// WithPrefix returns d with its tables named prefix_instances,
// prefix_steps and prefix_barrier. A prefix often comes from configuration,
// so a bad one is an error: letters, digits and underscores, or
// schema.prefix.
func (d Dialect) WithPrefix(prefix string) (Dialect, error) {
	if err := sqlstore.CheckIdent(prefix); err != nil || len(prefix[strings.LastIndexByte(prefix, '.')+1:]) > 36 {
		return d, fmt.Errorf("saga: table prefix %q: want an identifier of at most 36 characters", prefix)
	}
	d.prefix = prefix
	return d, nil
}

// q rebinds a query written with ? placeholders, {p} for the prefix and {n}
// for the prefix without its schema, which index names start with.
func (d Dialect) q(query string) string {
	return d.flavor.Rebind(d.expand(query))
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

var schema = map[sqlstore.Flavor][]string{
	sqlstore.Postgres: {
		`CREATE TABLE IF NOT EXISTS {p}_instances (
			id VARCHAR(128) PRIMARY KEY,
			name VARCHAR(128) NOT NULL,
			version INTEGER NOT NULL,
			status SMALLINT NOT NULL,
			resume_status SMALLINT NOT NULL DEFAULT 0,
			input BYTEA NULL,
			deadline_at BIGINT NOT NULL DEFAULT 0,
			failed_step VARCHAR(64) NOT NULL DEFAULT '',
			cause TEXT NULL,
			owner VARCHAR(80) NULL,
			lease_until BIGINT NOT NULL DEFAULT 0,
			next_attempt_at BIGINT NOT NULL DEFAULT 0,
			attempts INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NULL,
			note TEXT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_due ON {p}_instances (next_attempt_at) WHERE status IN (1, 2, 3)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_stuck ON {p}_instances (updated_at) WHERE status = 6`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
			saga_id VARCHAR(128) NOT NULL,
			step VARCHAR(64) NOT NULL,
			phase SMALLINT NOT NULL,
			status SMALLINT NOT NULL,
			output BYTEA NULL,
			error TEXT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (saga_id, step, phase))`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
			gid VARCHAR(128) NOT NULL,
			branch VARCHAR(64) NOT NULL,
			op VARCHAR(16) NOT NULL,
			reason VARCHAR(16) NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (gid, branch, op))`,
		`CREATE INDEX IF NOT EXISTS {n}_barrier_created ON {p}_barrier (created_at)`,
	},
	// Keys are VARBINARY: compared byte for byte, where MySQL's default
	// collations would take "Ab" and "ab " for the same ID.
	sqlstore.MySQL: {
		`CREATE TABLE IF NOT EXISTS {p}_instances (
			id VARBINARY(128) NOT NULL PRIMARY KEY,
			name VARBINARY(128) NOT NULL,
			version INT NOT NULL,
			status SMALLINT NOT NULL,
			resume_status SMALLINT NOT NULL DEFAULT 0,
			input LONGBLOB NULL,
			deadline_at BIGINT NOT NULL DEFAULT 0,
			failed_step VARBINARY(64) NOT NULL DEFAULT '',
			cause TEXT NULL,
			owner VARBINARY(80) NULL,
			lease_until BIGINT NOT NULL DEFAULT 0,
			next_attempt_at BIGINT NOT NULL DEFAULT 0,
			attempts INT NOT NULL DEFAULT 0,
			last_error TEXT NULL,
			note TEXT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL,
			KEY {n}_instances_due (next_attempt_at),
			KEY {n}_instances_stuck (status, updated_at)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
			saga_id VARBINARY(128) NOT NULL,
			step VARBINARY(64) NOT NULL,
			phase SMALLINT NOT NULL,
			status SMALLINT NOT NULL,
			output LONGBLOB NULL,
			error TEXT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (saga_id, step, phase)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
			gid VARBINARY(128) NOT NULL,
			branch VARBINARY(64) NOT NULL,
			op VARBINARY(16) NOT NULL,
			reason VARBINARY(16) NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (gid, branch, op),
			KEY {n}_barrier_created (created_at)
		) ENGINE=InnoDB`,
	},
	sqlstore.SQLite: {
		`CREATE TABLE IF NOT EXISTS {p}_instances (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			version INTEGER NOT NULL,
			status INTEGER NOT NULL,
			resume_status INTEGER NOT NULL DEFAULT 0,
			input BLOB NULL,
			deadline_at INTEGER NOT NULL DEFAULT 0,
			failed_step TEXT NOT NULL DEFAULT '',
			cause TEXT NULL,
			owner TEXT NULL,
			lease_until INTEGER NOT NULL DEFAULT 0,
			next_attempt_at INTEGER NOT NULL DEFAULT 0,
			attempts INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NULL,
			note TEXT NULL,
			created_at INTEGER NOT NULL,
			updated_at INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_due ON {p}_instances (next_attempt_at) WHERE status IN (1, 2, 3)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_stuck ON {p}_instances (updated_at) WHERE status = 6`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
			saga_id TEXT NOT NULL,
			step TEXT NOT NULL,
			phase INTEGER NOT NULL,
			status INTEGER NOT NULL,
			output BLOB NULL,
			error TEXT NULL,
			updated_at INTEGER NOT NULL,
			PRIMARY KEY (saga_id, step, phase))`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
			gid TEXT NOT NULL,
			branch TEXT NOT NULL,
			op TEXT NOT NULL,
			reason TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (gid, branch, op))`,
		`CREATE INDEX IF NOT EXISTS {n}_barrier_created ON {p}_barrier (created_at)`,
	},
}

// Migrate creates d's tables in db, or brings them up to date: the
// instances and steps of a durable coordinator's log, and the barrier of
// participants. It is safe to call at every start, from several processes
// at once.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	statements, ok := schema[d.flavor]
	if !ok {
		return fmt.Errorf("saga: Migrate: zero Dialect; use saga.Postgres, MySQL or SQLite")
	}
	m := sqlstore.Migration{Version: 1}
	for _, st := range statements {
		m.Statements = append(m.Statements, d.expand(st))
	}
	if err := sqlstore.Migrate(ctx, db, d.flavor, "saga:"+d.prefix, d.prefix+"_migrations", []sqlstore.Migration{m}); err != nil {
		return fmt.Errorf("saga: migrate %s: %w", d, err)
	}
	return nil
}

// sqlJournal records a durable coordinator's instances. Every write is
// fenced by the lease: it changes nothing unless the instance's owner is
// still the token of the claim that the write belongs to.
type sqlJournal struct {
	c  *Coordinator
	db *sql.DB
	d  Dialect
}

func (j *sqlJournal) committed() {
	j.c.stats.commits.Add(1)
	if f := j.c.cfg.afterCommit; f != nil {
		f()
	}
}

// token returns a new fencing token: the coordinator's name and a random
// part, so that each claim of an instance, even by coordinators of one name,
// has a token of its own.
func (c *Coordinator) token() string {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read does not fail
	return c.cfg.owner + ":" + hex.EncodeToString(b[:])
}

// leaseErr turns the error of a write made after the lease was lost into
// ErrLeaseLost.
func leaseErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), ErrLeaseLost) {
		return ErrLeaseLost
	}
	return err
}

// record runs, in one transaction, change (the instance's row) and the
// upsert of writes (its steps' rows), and counts the commit.
func (j *sqlJournal) record(ctx context.Context, in *instance, writes []write, change func(tx *sql.Tx) error) error {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := change(tx); err != nil {
		return err
	}
	if err := j.writeSteps(ctx, tx, in, writes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	j.committed()
	return nil
}

func (j *sqlJournal) begin(ctx context.Context, in *instance, intents []write) error {
	now := j.d.flavor.NowMicros()
	// The deadline is on the database's clock, as the leases are, so that
	// the coordinator that recovers the instance keeps it.
	deadline, args := "0", []any{in.id, in.def.name, in.def.version, int(in.status), in.input}
	if in.def.timeout > 0 {
		deadline, args = now+" + ?", append(args, in.def.timeout.Microseconds())
	}
	insert := j.d.flavor.InsertIgnore(j.d.prefix+"_instances",
		[]string{"id", "name", "version", "status", "input", "deadline_at", "owner", "lease_until", "next_attempt_at", "created_at", "updated_at"},
		"?, ?, ?, ?, ?, "+deadline+", ?, "+now+" + ?, 0, "+now+", "+now)
	return j.record(ctx, in, intents, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, insert, append(args, in.token, j.c.cfg.lease.Microseconds())...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		return nil
	})
}

func (j *sqlJournal) commit(ctx context.Context, in *instance, writes []write) error {
	now := j.d.flavor.NowMicros()
	cause := ""
	if in.cause != nil {
		cause = sqlstore.Text(in.cause.Error())
	}
	// An instance that ends gives up its lease in the same transaction.
	end := in.status == Succeeded || in.status == Compensated
	set := "owner = NULL, lease_until = 0, next_attempt_at = ?"
	args := []any{int(in.status), in.failed, cause, int64(ended)}
	if !end {
		set = "lease_until = " + now + " + ?"
		args = append(args[:3], j.c.cfg.lease.Microseconds())
	}
	err := j.record(ctx, in, writes, func(tx *sql.Tx) error {
		return fenced(tx.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET status = ?, failed_step = ?, cause = ?, `+set+`,
			updated_at = `+now+` WHERE id = ? AND owner = ?`), append(args, in.id, in.token)...))
	})
	if err != nil {
		return leaseErr(ctx, err)
	}
	in.released = end
	return nil
}

// fenced turns an update that changed no row into ErrLeaseLost.
func fenced(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// writeSteps upserts step rows.
func (j *sqlJournal) writeSteps(ctx context.Context, tx *sql.Tx, in *instance, writes []write) error {
	if len(writes) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + j.d.prefix + "_steps (saga_id, step, phase, status, output, error, updated_at) VALUES ")
	args := make([]any, 0, 6*len(writes))
	now := j.d.flavor.NowMicros()
	for k, w := range writes {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, " + now + ")")
		var errText any
		if w.err != "" {
			errText = sqlstore.Text(w.err)
		}
		args = append(args, in.id, in.def.steps[w.step].name, int(w.phase), int(w.status), w.output, errText)
	}
	switch j.d.flavor {
	case sqlstore.MySQL:
		b.WriteString(" ON DUPLICATE KEY UPDATE status = VALUES(status), output = VALUES(output), error = VALUES(error), updated_at = VALUES(updated_at)")
	default:
		b.WriteString(" ON CONFLICT (saga_id, step, phase) DO UPDATE SET status = excluded.status, output = excluded.output, error = excluded.error, updated_at = excluded.updated_at")
	}
	_, err := tx.ExecContext(ctx, j.d.flavor.Rebind(b.String()), args...)
	return err
}

func (j *sqlJournal) setback(ctx context.Context, in *instance, writes []write, wait time.Duration, lastErr string) error {
	now := j.d.flavor.NowMicros()
	next, args := now+" + ?", []any{int(in.status), int(in.resume), in.attempts, wait.Microseconds()}
	if in.status == Stuck {
		next, args[3] = "?", int64(ended)
	}
	err := j.record(ctx, in, writes, func(tx *sql.Tx) error {
		return fenced(tx.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET status = ?, resume_status = ?, attempts = ?,
			next_attempt_at = `+next+`, last_error = ?, owner = NULL, lease_until = 0, updated_at = `+now+`
			WHERE id = ? AND owner = ?`), append(args, sqlstore.Text(lastErr), in.id, in.token)...))
	})
	if err != nil {
		return leaseErr(ctx, err)
	}
	in.released = true
	return nil
}

func (j *sqlJournal) release(ctx context.Context, in *instance) {
	if in.released {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?`),
		in.id, in.token)
	if err != nil {
		j.c.emit(Event{Kind: StoreError, SagaID: in.id, Err: err})
	}
	in.released = true
}

func (j *sqlJournal) renew(ctx context.Context, in *instance) error {
	res, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET lease_until = `+j.d.flavor.NowMicros()+` + ?
		WHERE id = ? AND owner = ?`), j.c.cfg.lease.Microseconds(), in.id, in.token)
	return fenced(res, err)
}
