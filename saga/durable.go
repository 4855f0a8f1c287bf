package saga

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// durable is the store of a durable coordinator: it records every instance
// in the database, each under a lease and through a journal of its own (a
// [claim]) while the engine drives it, and recovers, lists and purges
// instances.
type durable struct {
	e           *engine
	db          *sql.DB
	d           Dialect
	owner       string
	lease       time.Duration
	keep        time.Duration // retention; 0: for ever
	afterCommit func()        // tests only
	purgeBatch  int
	writes      atomic.Int64 // journal writes committed
	// inst holds the instance's statement of each kind of journal write;
	// stmts the statements of each kind and number of step rows, built
	// once (stmtKey -> []string).
	inst  [kinds]string
	stmts sync.Map
}

// kind is a kind of journal write, by its instance statement.
type kind uint8

const (
	begin         kind = iota // insert the instance
	beginDeadline             // insert the instance, with a deadline
	commitLive                // a step result or intent: the lease extended
	commitEnd                 // the end: the lease given up
	setbackDue                // a failed round, due again after a wait
	setbackStuck              // a failed round that parks the instance
	kinds
)

type stmtKey struct {
	k    kind
	rows int
}

func newDurable(e *engine, cfg *config) *durable {
	s := &durable{e: e, db: cfg.db, d: cfg.dialect, owner: cfg.owner, lease: cfg.lease, keep: cfg.retention,
		afterCommit: cfg.afterCommit, purgeBatch: cfg.purgeBatch}
	db, now := s.d.db, s.d.db.sql.Now
	// The deadline is on the database's clock, as the leases are, so that
	// the coordinator that recovers the instance keeps it.
	insert := func(deadline string) string {
		return db.insertIgnore(s.d.prefix+"_instances",
			[]string{"id", "name", "version", "status", "input", "deadline_at", "owner", "lease_until", "next_attempt_at", "created_at", "updated_at"},
			"?, ?, ?, ?, ?, "+deadline+", ?, "+now+" + ?, 0, "+now+", "+now)
	}
	s.inst[begin] = insert("0")
	s.inst[beginDeadline] = insert(now + " + ?")
	commit := func(set string) string {
		return s.d.expand(`UPDATE {p}_instances SET status = ?, failed_step = ?, cause = ?, ` + set + `, updated_at = ` + now +
			` WHERE id = ? AND owner = ?`)
	}
	s.inst[commitLive] = commit("lease_until = " + now + " + ?")
	s.inst[commitEnd] = commit("owner = NULL, lease_until = 0, next_attempt_at = ?")
	setback := func(next string) string {
		return s.d.expand(`UPDATE {p}_instances SET status = ?, resume_status = ?, attempts = ?, next_attempt_at = ` + next +
			`, last_error = ?, owner = NULL, lease_until = 0, updated_at = ` + now + ` WHERE id = ? AND owner = ?`)
	}
	s.inst[setbackDue] = setback(now + " + ?")
	s.inst[setbackStuck] = setback("?")
	return s
}

// statements returns the statements of a journal write of kind k with rows
// step rows: see database.write.
func (s *durable) statements(k kind, rows int) []string {
	key := stmtKey{k, rows}
	if st, ok := s.stmts.Load(key); ok {
		return st.([]string)
	}
	var st []string
	if rows == 0 {
		st = []string{s.inst[k]}
	} else {
		values := s.d.db.stepRow
		for range rows - 1 {
			values += ", " + s.d.db.stepRow
		}
		st = s.d.db.write(s.inst[k], s.d.prefix+"_steps", values)
	}
	for i := range st {
		st[i] = s.d.db.sql.Rebind(st[i])
	}
	s.stmts.Store(key, st)
	return st
}

// token returns a new fencing token: the coordinator's name and a random
// part, so that each claim of an instance, even by coordinators of one name,
// has a token of its own.
func (s *durable) token() string {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read does not fail
	return s.owner + ":" + hex.EncodeToString(b[:])
}

// record runs one journal write of in: the instance's statement of kind k
// with args, and the upsert of writes, only if that statement changed a
// row, atomically; it reports whether it did, and counts the commit.
func (s *durable) record(ctx context.Context, in *instance, k kind, args []any, writes []write) (bool, error) {
	stmts := s.statements(k, len(writes))
	n := len(args)
	for _, w := range writes {
		var errText any
		if w.err != "" {
			errText = sqlstore.Text(w.err)
		}
		args = append(args, in.id, in.def.steps[w.step].name, int(w.phase), int(w.status), w.output, errText)
	}
	var changed bool
	if len(stmts) == 1 {
		res, err := s.db.ExecContext(ctx, stmts[0], args...)
		if changed, err = rowsChanged(res, err); err != nil {
			return false, err
		}
	} else {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return false, err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
		res, err := tx.ExecContext(ctx, stmts[0], args[:n]...)
		if changed, err = rowsChanged(res, err); err != nil || !changed {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, stmts[1], args[n:]...); err != nil {
			return false, err
		}
		if err := tx.Commit(); err != nil {
			return false, err
		}
	}
	if changed {
		s.writes.Add(1)
		if s.afterCommit != nil {
			s.afterCommit()
		}
	}
	return changed, nil
}

// rowsChanged reports whether the statement whose result res is changed a
// row.
func rowsChanged(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// fenced turns a statement fenced by a claim's token that changed no row
// into ErrLeaseLost.
func fenced(changed bool, err error) error {
	if err == nil && !changed {
		return ErrLeaseLost
	}
	return err
}

func (s *durable) commits() int64 { return s.writes.Load() }

func (s *durable) retention() time.Duration { return s.keep }

// open records in, a new instance, with the intents of its first group. If
// the store holds an instance of that ID already, it takes that one over
// when nobody drives it, or returns nil and the outcome it recorded; see
// Run.
func (s *durable) open(ctx context.Context, in *instance, intents []write) (*instance, error) {
	cl := s.newClaim(in.id)
	in.j = cl
	k, args := begin, []any{in.id, in.def.name, in.def.version, int(in.status), in.input}
	if in.def.timeout > 0 {
		k, args = beginDeadline, append(args, in.def.timeout.Microseconds())
	}
	sent := sinceEpoch()
	inserted, err := s.record(ctx, in, k, append(args, cl.token, s.lease.Microseconds()), intents)
	if err != nil {
		return nil, fmt.Errorf("saga %s: begin: %w", in.id, err)
	}
	if inserted {
		cl.confirmLease(sent, s.lease)
		return in, nil
	}
	return s.takeOver(ctx, in.def, in.id)
}

// takeOver claims the instance id of def, which the store holds, if it is
// due and no coordinator drives it, and returns it to be driven; or, if it
// has ended or waits for its next round, returns nil and its outcome as it
// stands; or ErrExists.
func (s *durable) takeOver(ctx context.Context, def *Definition, id string) (*instance, error) {
	now := s.d.db.sql.Now
	cl := s.newClaim(id)
	sent := sinceEpoch()
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ?
		WHERE id = ? AND name = ? AND version = ? AND status IN (1, 2, 3) AND next_attempt_at <= `+now+`
		AND (owner IS NULL OR lease_until < `+now+`)`), cl.token, s.lease.Microseconds(), id, def.name, def.version)
	took, err := rowsChanged(res, err)
	if err != nil {
		return nil, fmt.Errorf("saga %s: take over: %w", id, err)
	}
	if took {
		in, err := s.read(ctx, cl, sent)
		if err != nil {
			s.releaseClaim(context.WithoutCancel(ctx), cl.token, []string{id})
			return nil, fmt.Errorf("saga %s: take over: %w", id, err)
		}
		if in == nil { // its log does not match def: left alone
			return nil, ErrExists
		}
		return in, nil
	}
	var (
		name                      string
		version, status, attempts int
		owned                     bool
		failedStep, cause, last   sql.NullString
	)
	err = s.db.QueryRowContext(ctx, s.d.q(`SELECT name, version, status, owner IS NOT NULL, attempts, failed_step, cause, last_error
		FROM {p}_instances WHERE id = ?`), id).Scan(&name, &version, &status, &owned, &attempts, &failedStep, &cause, &last)
	if errors.Is(err, sql.ErrNoRows) { // purged just now: it ran once already
		return nil, ErrExists
	}
	if err != nil {
		return nil, fmt.Errorf("saga %s: take over: %w", id, err)
	}
	if name != def.name || version != def.version {
		return nil, fmt.Errorf("%w: of definition %s version %d", ErrExists, name, version)
	}
	in := &instance{id: id, def: def, status: Status(status), attempts: attempts, failed: failedStep.String}
	if cause.String != "" {
		in.cause = errors.New(cause.String)
	}
	if last.String != "" {
		in.settleErrs = []error{errors.New(last.String)}
	}
	// An instance that waits for its next round is reported as its last
	// round left it, as Run reported it then; one that another coordinator
	// drives is not.
	if in.ended() || (!owned && in.attempts > 0) {
		return nil, outcome(in)
	}
	return nil, ErrExists
}
