package saga

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// ErrNotDurable is returned by the recovery and operator methods of a
// coordinator made without [WithStore].
var ErrNotDurable = errors.New("saga: the coordinator has no store")

// Recover finishes instances that no live coordinator drives: those left
// running or compensating by a process that crashed (once their lease ran
// out), and those whose compensation round is due again. It claims up to
// batch of them with a lease, so that coordinators recovering at once never
// drive the same instance, rebuilds where each stands from the log, and
// drives it on: a step that started with no recorded result is run again if
// it is [Idempotent], and otherwise the instance compensates. It returns how
// many instances it drove. Instances of definitions the coordinator does not
// know are left alone for a minute, and reported.
func (c *Coordinator) Recover(ctx context.Context, batch int) (int, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return 0, ErrNotDurable
	}
	ids, err := j.claim(ctx, batch)
	if err != nil {
		return 0, fmt.Errorf("saga: recover: %w", err)
	}
	n := 0
	for _, id := range ids {
		in, err := j.load(ctx, id)
		if err != nil {
			return n, fmt.Errorf("saga: recover %s: %w", id, err)
		}
		if in == nil {
			continue // an unknown definition, left alone
		}
		n++
		if err := c.drive(ctx, in); err != nil {
			var se *Error
			if !errors.As(err, &se) && !errors.Is(err, ErrLeaseLost) {
				return n, fmt.Errorf("saga: recover %s: %w", id, err)
			}
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
	return n, nil
}

// RunRecovery calls Recover every interval until ctx is done, reporting its
// errors as StoreError events, and returns nil. Run one per process; it is
// safe to run on every node at once.
func (c *Coordinator) RunRecovery(ctx context.Context, interval time.Duration) error {
	if _, ok := c.j.(*sqlJournal); !ok {
		return ErrNotDurable
	}
	for {
		for {
			n, err := c.Recover(ctx, 16)
			if err != nil && ctx.Err() == nil {
				c.emit(Event{Kind: StoreError, Err: err})
			}
			if n == 0 || err != nil {
				break
			}
		}
		if !sleep(ctx, interval) {
			return nil
		}
	}
}

// claim takes a lease on up to batch instances that are due and not driven.
func (j *sqlJournal) claim(ctx context.Context, batch int) ([]string, error) {
	d, now := j.d, j.d.flavor.NowMicros()
	lease := j.c.cfg.lease.Microseconds()
	where := `status IN (1, 2, 3) AND (owner IS NULL OR lease_until < ` + now + `) AND next_attempt_at <= ` + now
	switch d.flavor {
	case sqlstore.Postgres:
		return queryStrings(ctx, j.db, d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ?
			WHERE id IN (SELECT id FROM {p}_instances WHERE `+where+` ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
			RETURNING id`), j.owner(), lease, batch)
	case sqlstore.SQLite:
		return queryStrings(ctx, j.db, d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ?
			WHERE id IN (SELECT id FROM {p}_instances WHERE `+where+` ORDER BY next_attempt_at LIMIT ?) RETURNING id`),
			j.owner(), lease, batch)
	}
	tx, err := j.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	ids, err := queryStrings(ctx, tx, d.q(`SELECT id FROM {p}_instances WHERE `+where+` ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED`), batch)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	args := []any{j.owner(), lease}
	for _, id := range ids {
		args = append(args, id)
	}
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ? WHERE id IN (`+
		sqlstore.Marks(len(ids))+`)`), args...); err != nil {
		return nil, err
	}
	return ids, tx.Commit()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// load rebuilds an instance the coordinator holds from the log. It returns
// nil, after releasing the instance for a minute, when the definition is
// unknown.
func (j *sqlJournal) load(ctx context.Context, id string) (*instance, error) {
	var (
		name              string
		version           int
		status, resume    int
		input             []byte
		deadline          int64
		failedStep, cause sql.NullString
		attempts          int
	)
	err := j.db.QueryRowContext(ctx, j.d.q(`SELECT name, version, status, resume_status, input, deadline_at, failed_step, cause, attempts
		FROM {p}_instances WHERE id = ?`), id).Scan(&name, &version, &status, &resume, &input, &deadline, &failedStep, &cause, &attempts)
	if err != nil {
		return nil, err
	}
	def := j.c.definition(name, version)
	if def == nil {
		j.c.emit(Event{Kind: UnknownDefinition, SagaID: id, Err: fmt.Errorf("saga: unknown definition %s version %d", name, version)})
		_, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0, next_attempt_at = `+
			j.d.flavor.NowMicros()+` + ? WHERE id = ? AND owner = ?`), time.Minute.Microseconds(), id, j.owner())
		return nil, err
	}
	in := &instance{id: id, def: def, input: input, status: Status(status), resume: Status(resume), attempts: attempts,
		steps: make([]stepState, len(def.steps)), unknown: map[int]bool{}, failed: failedStep.String}
	if deadline > 0 {
		in.deadline = time.UnixMicro(deadline)
	}
	if cause.String != "" {
		in.cause = errors.New(cause.String)
	}
	index := map[string]int{}
	for i, s := range def.steps {
		index[s.name] = i
	}
	rows, err := j.db.QueryContext(ctx, j.d.q(`SELECT step, phase, status, output FROM {p}_steps WHERE saga_id = ?`), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			step          string
			phase, status int
			output        []byte
		)
		if err := rows.Scan(&step, &phase, &status, &output); err != nil {
			return nil, err
		}
		i, ok := index[step]
		if !ok {
			return nil, fmt.Errorf("step %q is not in definition %s version %d", step, name, version)
		}
		st := &in.steps[i]
		switch Phase(phase) {
		case Action:
			st.action = phaseStatus(status)
			if st.action == succeeded || st.action == failed {
				st.output = output
			}
			if st.action == started {
				in.unknown[i] = true
			}
		case Compensate:
			st.comp = phaseStatus(status)
		case Confirm:
			st.confirm = phaseStatus(status)
		}
	}
	return in, rows.Err()
}

// StuckSaga is an instance parked as Stuck; see [Coordinator.ListStuck].
type StuckSaga struct {
	ID        string
	Name      string
	Version   int
	Attempts  int
	LastError string
	// Phase is what kept failing: Compensate (or Cancel) or Confirm.
	Phase Status
}

// ListStuck returns up to limit instances parked as Stuck, for an operator.
func (c *Coordinator) ListStuck(ctx context.Context, limit int) ([]StuckSaga, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return nil, ErrNotDurable
	}
	rows, err := j.db.QueryContext(ctx, j.d.q(`SELECT id, name, version, attempts, last_error, resume_status
		FROM {p}_instances WHERE status = ? ORDER BY updated_at LIMIT ?`), int(Stuck), limit)
	if err != nil {
		return nil, fmt.Errorf("saga: list stuck: %w", err)
	}
	defer rows.Close()
	var out []StuckSaga
	for rows.Next() {
		var (
			s       StuckSaga
			lastErr sql.NullString
			resume  int
		)
		if err := rows.Scan(&s.ID, &s.Name, &s.Version, &s.Attempts, &lastErr, &resume); err != nil {
			return nil, fmt.Errorf("saga: list stuck: %w", err)
		}
		s.LastError, s.Phase = lastErr.String, Status(resume)
		out = append(out, s)
	}
	return out, rows.Err()
}

// RetryStuck makes a Stuck instance due again, with its rounds counted from
// zero, for recovery to drive; it reports whether the instance was stuck.
func (c *Coordinator) RetryStuck(ctx context.Context, id string) (bool, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return false, ErrNotDurable
	}
	res, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET status = resume_status, attempts = 0, next_attempt_at = 0,
		owner = NULL, lease_until = 0 WHERE id = ? AND status = ?`), id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: retry %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MarkResolved records that an operator dealt with a Stuck instance by hand;
// it reports whether the instance was stuck.
func (c *Coordinator) MarkResolved(ctx context.Context, id, note string) (bool, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return false, ErrNotDurable
	}
	res, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET status = ?, last_error = ? WHERE id = ? AND status = ?`),
		int(Resolved), note, id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: resolve %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// InstanceStatus returns the status of the instance id in the store.
func (c *Coordinator) InstanceStatus(ctx context.Context, id string) (Status, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return 0, ErrNotDurable
	}
	var s int
	if err := j.db.QueryRowContext(ctx, j.d.q(`SELECT status FROM {p}_instances WHERE id = ?`), id).Scan(&s); err != nil {
		return 0, fmt.Errorf("saga: status of %s: %w", id, err)
	}
	return Status(s), nil
}
