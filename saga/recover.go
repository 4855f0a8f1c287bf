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
	c.check()
	if batch < 1 {
		return 0, fmt.Errorf("saga: Recover(%d): want batch >= 1", batch)
	}
	return c.s.recover(ctx, batch)
}

// RunRecovery calls Recover every interval until ctx is done, reporting its
// errors as StoreError events, and returns nil. With [WithRetention], it
// purges the instances that ended longer ago than that as well (see
// [Coordinator.Purge]). Run one per process; it is safe to run on every
// node at once.
func (c *Coordinator) RunRecovery(ctx context.Context, interval time.Duration) error {
	c.check()
	if interval <= 0 {
		return fmt.Errorf("saga: RunRecovery(%v): want interval > 0", interval)
	}
	keep := c.s.retention()
	for {
		for {
			n, err := c.Recover(ctx, 16)
			if errors.Is(err, ErrNotDurable) {
				return err
			}
			if err != nil && ctx.Err() == nil {
				c.e.emit(ctx, Event{Kind: StoreError, Err: err})
			}
			if n == 0 || err != nil {
				break
			}
		}
		if keep > 0 {
			if _, err := c.Purge(ctx, keep); err != nil && ctx.Err() == nil {
				c.e.emit(ctx, Event{Kind: StoreError, Err: err})
			}
		}
		if !wait.Sleep(ctx, interval) {
			return nil
		}
	}
}

func (s *durable) recover(ctx context.Context, batch int) (int, error) {
	token := s.token()
	ids, err := s.claimBatch(ctx, token, batch)
	if err != nil {
		return 0, fmt.Errorf("saga: recover: %w", err)
	}
	n := 0
	var first error
	for k, id := range ids {
		if ctx.Err() != nil {
			s.releaseClaim(context.WithoutCancel(ctx), token, ids[k:])
			return n, ctx.Err()
		}
		in, err := s.load(ctx, id, token)
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("saga: recover %s: %w", id, err))
			s.e.emit(ctx, Event{Kind: StoreError, SagaID: id, Err: err})
			continue
		}
		if in == nil {
			continue // another coordinator has it, or it is left alone
		}
		err = s.e.drive(ctx, in)
		var se *Error
		switch {
		case err == nil || errors.As(err, &se):
			n++
		case errors.Is(err, ErrLeaseLost):
		default:
			first = cmp.Or(first, fmt.Errorf("saga: recover %s: %w", id, err))
			s.e.emit(ctx, Event{Kind: StoreError, SagaID: id, Err: err})
		}
	}
	return n, first
}

// claimBatch takes a lease, as token, on up to batch instances that are due
// and not driven.
func (s *durable) claimBatch(ctx context.Context, token string, batch int) ([]string, error) {
	d, now := s.d, s.d.db.sql.Now
	var ids []string
	err := d.db.sql.Claim(ctx, s.db, sqlstore.Claim{
		Table: d.prefix + "_instances", Key: "id",
		Set:     "owner = ?, lease_until = " + now + " + ?",
		SetArgs: []any{token, s.lease.Microseconds()},
		Where:   "next_attempt_at <= " + now + " AND status IN (1, 2, 3) AND (owner IS NULL OR lease_until < " + now + ")",
		OrderBy: "next_attempt_at", Limit: batch, Returning: "id", IndexHint: d.name() + "_instances_due",
	}, func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// releaseClaim gives up the instances ids that token holds.
func (s *durable) releaseClaim(ctx context.Context, token string, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	args := append([]any{token}, sqlstore.Args(ids)...)
	_, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0 WHERE owner = ? AND id IN (`+
		sqlstore.Marks(len(ids))+`)`), args...)
	if err != nil {
		ev := Event{Kind: StoreError, Err: err}
		if len(ids) == 1 {
			ev.SagaID = ids[0]
		}
		s.e.emit(ctx, ev)
	}
}

// load rebuilds, from the log, an instance claimed as claimed. It first
// takes the instance over with a claim of its own, for as long as a lease,
// so that the instance is still this coordinator's when it is driven
// (another may have taken it while the batch's earlier instances were
// driven); it returns nil when it cannot, and nil after leaving the
// instance alone for a minute when its definition is unknown or does not
// match its log.
func (s *durable) load(ctx context.Context, id, claimed string) (*instance, error) {
	cl := s.newClaim(id)
	sent := sinceEpoch()
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET owner = ?, lease_until = `+s.d.db.sql.Now+` + ?
		WHERE id = ? AND owner = ? AND status IN (1, 2, 3)`), cl.token, s.lease.Microseconds(), id, claimed)
	if err := fenced(rowsChanged(res, err)); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil, nil
		}
		return nil, err
	}
	return s.read(ctx, cl, sent)
}

// read rebuilds, from the log, the instance that cl holds since a statement
// sent at sent took it; it returns nil after leaving the instance alone for
// a minute when its definition is unknown or does not match its log.
func (s *durable) read(ctx context.Context, cl *claim, sent int64) (*instance, error) {
	id, now := cl.id, s.d.db.sql.Now
	var (
		name              string
		version           int
		status, resume    int
		input             []byte
		deadline, dbNow   int64
		failedStep, cause sql.NullString
		attempts          int
	)
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT name, version, status, resume_status, input, deadline_at, `+now+`,
		failed_step, cause, attempts FROM {p}_instances WHERE id = ?`), id).
		Scan(&name, &version, &status, &resume, &input, &deadline, &dbNow, &failedStep, &cause, &attempts)
	if err != nil {
		return nil, err
	}
	leaveAlone := func(why error) (*instance, error) {
		s.e.emit(ctx, Event{Kind: UnknownDefinition, SagaID: id, Err: why})
		_, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET owner = NULL, lease_until = 0, next_attempt_at = `+
			now+` + ? WHERE id = ? AND owner = ?`), time.Minute.Microseconds(), id, cl.token)
		return nil, err
	}
	def := s.e.definition(name, version)
	if def == nil {
		return leaveAlone(fmt.Errorf("saga: unknown definition %s version %d", name, version))
	}
	in := &instance{id: id, def: def, j: cl, input: input, status: Status(status), resume: Status(resume),
		attempts: attempts, steps: make([]stepState, len(def.steps)), unknown: map[int]bool{}, failed: failedStep.String,
		writes: make([]write, 0, def.maxWrites)}
	cl.confirmLease(sent, s.lease)
	if deadline > 0 {
		in.deadline = time.Now().Add(time.Duration(deadline-dbNow) * time.Microsecond)
	}
	if cause.String != "" {
		in.cause = errors.New(cause.String)
	}
	index := map[string]int{}
	for i, st := range def.steps {
		index[st.name] = i
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT step, phase, status, output FROM {p}_steps WHERE saga_id = ?`), id)
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
