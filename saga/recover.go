package saga

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/internal/wait"
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
// many instances it drove. An instance of a definition the coordinator does
// not know, or whose log does not match its definition, is left alone for a
// minute and reported ([UnknownDefinition]). An error of the store for one
// instance does not stop the others; Recover returns the first.
func (c *Coordinator) Recover(ctx context.Context, batch int) (int, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return 0, ErrNotDurable
	}
	if batch < 1 {
		return 0, fmt.Errorf("saga: Recover(%d): want batch >= 1", batch)
	}
	token := c.token()
	ids, err := j.claim(ctx, token, batch)
	if err != nil {
		return 0, fmt.Errorf("saga: recover: %w", err)
	}
	n := 0
	var first error
	for k, id := range ids {
		if ctx.Err() != nil {
			j.releaseClaim(context.WithoutCancel(ctx), token, ids[k:])
			return n, ctx.Err()
		}
		in, err := j.load(ctx, id, token)
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("saga: recover %s: %w", id, err))
			c.emit(Event{Kind: StoreError, SagaID: id, Err: err})
			continue
		}
		if in == nil {
			continue // another coordinator has it, or it is left alone
		}
		err = c.drive(ctx, in)
		var se *Error
		switch {
		case err == nil || errors.As(err, &se):
			n++
		case errors.Is(err, ErrLeaseLost):
		default:
			first = cmp.Or(first, fmt.Errorf("saga: recover %s: %w", id, err))
			c.emit(Event{Kind: StoreError, SagaID: id, Err: err})
		}
	}
	return n, first
}

// RunRecovery calls Recover every interval until ctx is done, reporting its
// errors as StoreError events, and returns nil. Run one per process; it is
// safe to run on every node at once.
func (c *Coordinator) RunRecovery(ctx context.Context, interval time.Duration) error {
	if _, ok := c.j.(*sqlJournal); !ok {
		return ErrNotDurable
	}
	if interval <= 0 {
		return fmt.Errorf("saga: RunRecovery(%v): want interval > 0", interval)
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
		if !wait.Sleep(ctx, interval) {
			return nil
		}
	}
}

// claim takes a lease, as token, on up to batch instances that are due and
// not driven.
func (j *sqlJournal) claim(ctx context.Context, token string, batch int) ([]string, error) {
	d, now := j.d, j.d.flavor.NowMicros()
	lease := j.c.cfg.lease.Microseconds()
	where := `next_attempt_at <= ` + now + ` AND status IN (1, 2, 3) AND (owner IS NULL OR lease_until < ` + now + `)`
	if d.flavor != sqlstore.MySQL {
		lock := "" // SQLite writes one transaction at a time
		if d.flavor == sqlstore.Postgres {
			lock = " FOR UPDATE SKIP LOCKED"
		}
		return sqlstore.Column[string](ctx, j.db, d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ?
			WHERE id IN (SELECT id FROM {p}_instances WHERE `+where+` ORDER BY next_attempt_at LIMIT ?`+lock+`)
			RETURNING id`), token, lease, batch)
	}
	tx, err := j.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	ids, err := sqlstore.Column[string](ctx, tx, d.q(`SELECT id FROM {p}_instances FORCE INDEX ({n}_instances_due) WHERE `+where+`
		ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED`), batch)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	args := append([]any{token, lease}, sqlstore.Args(ids)...)
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ? WHERE id IN (`+
		sqlstore.Marks(len(ids))+`)`), args...); err != nil {
		return nil, err
	}
	return ids, tx.Commit()
}

// releaseClaim gives up the instances of a claim that were not driven.
func (j *sqlJournal) releaseClaim(ctx context.Context, token string, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	args := append([]any{token}, sqlstore.Args(ids)...)
	_, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0 WHERE owner = ? AND id IN (`+
		sqlstore.Marks(len(ids))+`)`), args...)
	if err != nil {
		j.c.emit(Event{Kind: StoreError, Err: err})
	}
}

// load rebuilds, from the log, an instance claimed as claim. It first takes
// the instance over with a token of its own, for as long as a lease, so that
// the instance is still this coordinator's when it is driven (another may
// have taken it while the claim's earlier instances were driven); it
// returns nil when it cannot, and nil after leaving the instance alone for
// a minute when its definition is unknown or does not match its log.
func (j *sqlJournal) load(ctx context.Context, id, claim string) (*instance, error) {
	now := j.d.flavor.NowMicros()
	token := j.c.token()
	res, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+now+` + ?
		WHERE id = ? AND owner = ? AND status IN (1, 2, 3)`), token, j.c.cfg.lease.Microseconds(), id, claim)
	if err := fenced(res, err); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil, nil
		}
		return nil, err
	}
	var (
		name              string
		version           int
		status, resume    int
		input             []byte
		deadline, dbNow   int64
		failedStep, cause sql.NullString
		attempts          int
	)
	err = j.db.QueryRowContext(ctx, j.d.q(`SELECT name, version, status, resume_status, input, deadline_at, `+now+`,
		failed_step, cause, attempts FROM {p}_instances WHERE id = ?`), id).
		Scan(&name, &version, &status, &resume, &input, &deadline, &dbNow, &failedStep, &cause, &attempts)
	if err != nil {
		return nil, err
	}
	leaveAlone := func(why error) (*instance, error) {
		j.c.emit(Event{Kind: UnknownDefinition, SagaID: id, Err: why})
		_, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0, next_attempt_at = `+
			now+` + ? WHERE id = ? AND owner = ?`), time.Minute.Microseconds(), id, token)
		return nil, err
	}
	def := j.c.definition(name, version)
	if def == nil {
		return leaveAlone(fmt.Errorf("saga: unknown definition %s version %d", name, version))
	}
	in := &instance{id: id, token: token, def: def, input: input, status: Status(status), resume: Status(resume),
		attempts: attempts, steps: make([]stepState, len(def.steps)), unknown: map[int]bool{}, failed: failedStep.String}
	if deadline > 0 {
		in.deadline = time.Now().Add(time.Duration(deadline-dbNow) * time.Microsecond)
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
			rows.Close()
			return leaveAlone(fmt.Errorf("saga: step %q of the log is not in definition %s version %d", step, name, version))
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
	// Owed is what kept failing: Compensating (its compensations, or a TCC
	// saga's cancels) or Confirming (a TCC saga's confirms).
	Owed Status
}

// ListStuck returns up to limit instances parked as Stuck, for an operator.
func (c *Coordinator) ListStuck(ctx context.Context, limit int) ([]StuckSaga, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return nil, ErrNotDurable
	}
	if limit < 1 {
		return nil, fmt.Errorf("saga: ListStuck(%d): want limit >= 1", limit)
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
		s.LastError, s.Owed = lastErr.String, Status(resume)
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
		owner = NULL, lease_until = 0, updated_at = `+j.d.flavor.NowMicros()+` WHERE id = ? AND status = ?`), id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: retry %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MarkResolved records that an operator dealt with a Stuck instance by hand,
// with a note (a ticket, say); it reports whether the instance was stuck.
// The instance keeps its last error.
func (c *Coordinator) MarkResolved(ctx context.Context, id, note string) (bool, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return false, ErrNotDurable
	}
	res, err := j.db.ExecContext(ctx, j.d.q(`UPDATE {p}_instances SET status = ?, note = ?, updated_at = `+j.d.flavor.NowMicros()+`
		WHERE id = ? AND status = ?`), int(Resolved), sqlstore.Text(note), id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: resolve %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ErrNotFound is returned by InstanceStatus for an ID the store does not
// hold.
var ErrNotFound = errors.New("saga: no instance with this ID")

// InstanceStatus returns the status of the instance id in the store.
func (c *Coordinator) InstanceStatus(ctx context.Context, id string) (Status, error) {
	j, ok := c.j.(*sqlJournal)
	if !ok {
		return 0, ErrNotDurable
	}
	var s int
	err := j.db.QueryRowContext(ctx, j.d.q(`SELECT status FROM {p}_instances WHERE id = ?`), id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("saga: status of %s: %w", id, err)
	}
	return Status(s), nil
}
