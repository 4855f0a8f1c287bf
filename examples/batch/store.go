package main

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// store holds the imported records and the dead letters: two tables,
// named with a prefix, in SQLite or PostgreSQL. A record's key is the
// primary key of both, which makes an import idempotent.
type store struct {
	db          *sql.DB
	name        string // "SQLite <file>" or "PostgreSQL"
	records     string // table names
	deadLetters string
	placeholder func(n int) string // the n-th parameter, from 1
}

// prefixPattern is what a table-name prefix may be: it is written into SQL.
var prefixPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// openSQLite opens, or creates, the SQLite database in file.
func openSQLite(file, prefix string) (*store, error) {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer; SQLite takes one at a time anyway
	return newStore(db, "SQLite "+file, prefix, func(int) string { return "?" })
}

// openPostgres opens the PostgreSQL database of dsn.
func openPostgres(dsn, prefix string) (*store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	return newStore(db, "PostgreSQL", prefix, func(n int) string { return fmt.Sprintf("$%d", n) })
}

func newStore(db *sql.DB, name, prefix string, placeholder func(int) string) (*store, error) {
	s := &store{db: db, name: name, records: prefix + "records", deadLetters: prefix + "dead_letters",
		placeholder: placeholder}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

// migrate creates the tables if they are not there.
func (s *store) migrate(ctx context.Context) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ` + s.records + ` (
			key      TEXT PRIMARY KEY,
			name     TEXT NOT NULL,
			value    BIGINT NOT NULL,
			score    BIGINT NOT NULL,
			attempts INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + s.deadLetters + ` (
			key      TEXT PRIMARY KEY,
			name     TEXT NOT NULL,
			value    BIGINT NOT NULL,
			error    TEXT NOT NULL,
			attempts INTEGER NOT NULL)`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// reset empties both tables.
func (s *store) reset(ctx context.Context) error {
	for _, t := range []string{s.records, s.deadLetters} {
		if _, err := s.db.ExecContext(ctx, "DELETE FROM "+t); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// done returns the keys already imported or dead-lettered.
func (s *store) done(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT key FROM "+s.records+" UNION ALL SELECT key FROM "+s.deadLetters)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	defer rows.Close()
	keys := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys[k] = true
	}
	return keys, rows.Err()
}

// result is what became of one record.
type result struct {
	record
	score    int64
	err      error // nil: imported; else why it goes to the dead letters
	attempts int
}

// rowsPerInsert bounds the rows of one INSERT, well within both databases'
// limits on parameters.
const rowsPerInsert = 200

// write stores a batch of results in one transaction: each imported record
// in the records, each failed one in the dead letters. A key already in a
// table is left as it is, so writing a batch twice changes nothing.
func (s *store) write(ctx context.Context, batch []result) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	defer tx.Rollback()
	var ok, failed []result
	for _, r := range batch {
		if r.err == nil {
			ok = append(ok, r)
		} else {
			failed = append(failed, r)
		}
	}
	if err := s.insert(ctx, tx, s.records, "score", ok, func(r result) any { return r.score }); err != nil {
		return err
	}
	if err := s.insert(ctx, tx, s.deadLetters, "error", failed, func(r result) any { return r.err.Error() }); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// insert adds rs to table, whose fourth column, col, takes fourth(r).
func (s *store) insert(ctx context.Context, tx *sql.Tx, table, col string, rs []result, fourth func(result) any) error {
	for len(rs) > 0 {
		n := min(len(rs), rowsPerInsert)
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (key, name, value, %s, attempts) VALUES ", table, col)
		args := make([]any, 0, 5*n)
		for i, r := range rs[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			p := len(args)
			fmt.Fprintf(&q, "(%s, %s, %s, %s, %s)", s.placeholder(p+1), s.placeholder(p+2), s.placeholder(p+3),
				s.placeholder(p+4), s.placeholder(p+5))
			args = append(args, r.key, r.name, r.value, fourth(r), r.attempts)
		}
		q.WriteString(" ON CONFLICT (key) DO NOTHING")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("%s: insert into %s: %w", s.name, table, err)
		}
		rs = rs[n:]
	}
	return nil
}
