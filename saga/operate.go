package saga

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Filter selects the instances that [Coordinator.List] returns. Its zero
// value selects every instance, up to 100, oldest first.
type Filter struct {
	// Status selects the instances in one of these statuses; none: any.
	Status []Status
	// Orphaned selects only the orphaned instances (see
	// [Instance.Orphaned]).
	Orphaned bool
	// Definition selects the instances of the definition of this name, any
	// version; "": any.
	Definition string
	// OlderThan selects the instances created at least this long ago, on
	// the database's clock; 0: any.
	OlderThan time.Duration
	// Limit is how many instances List returns at most: 1 to 10000, or 0
	// for 100.
	Limit int
}

// Instance is a saga instance as the store holds it; see
// [Coordinator.List].
type Instance struct {
	ID      string // as given to Run
	Name    string // of its definition
	Version int    // of its definition
	Status  Status
	// Orphaned marks an instance that no coordinator drives and that is due
	// (running, compensating or confirming, not waiting for its next round
	// of compensations): its coordinator died, or lost its lease. Recovery
	// takes it over, and so does Run with its ID.
	Orphaned bool
	// Owner is the claim of the coordinator that drives the instance, or
	// drove it last if its lease ran out ([WithOwner] and a random part):
	// "" if none.
	Owner string
	// Step is the step that failed, for an instance that compensates or
	// did; otherwise the last step, in its definition's order, whose action
	// was recorded: the one running, for a running instance ("" for an
	// instance of a definition the coordinator does not know).
	Step string
	// Attempts counts the failed rounds of compensation or confirmation.
	Attempts int
	// Cause is why the instance stopped going forward; LastError the error
	// of its last failed round of compensation or confirmation.
	Cause, LastError string
	// Created and Updated are when the instance began and was last written,
	// on the database's clock; Age is how long ago it began.
	Created, Updated time.Time
	Age              time.Duration
}

// List returns the instances that f selects, oldest first, with where
// each stands: for an operator, or a dashboard.
func (c *Coordinator) List(ctx context.Context, f Filter) ([]Instance, error) {
	c.check()
	if f.Limit < 0 || f.Limit > 10000 {
		return nil, fmt.Errorf("saga: List: Limit %d: want 0 to 10000", f.Limit)
	}
	if f.OlderThan < 0 {
		return nil, fmt.Errorf("saga: List: OlderThan %v: want >= 0", f.OlderThan)
	}
	return c.s.list(ctx, f)
}

// Purge deletes, with their steps, the instances that ended (succeeded,
// compensated, or resolved by an operator) and were last written longer
// ago than olderThan, in batches of at most 500 instances, and returns how
// many it deleted. It deletes nothing that runs, compensates or is stuck.
// Run with the ID of a purged instance runs a new one: keep instances for
// longer than a caller may retry its submit. See also [WithRetention].
func (c *Coordinator) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	c.check()
	if olderThan < 0 {
		return 0, fmt.Errorf("saga: Purge(%v): want olderThan >= 0", olderThan)
	}
	return c.s.purge(ctx, olderThan)
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
	c.check()
	if limit < 1 {
		return nil, fmt.Errorf("saga: ListStuck(%d): want limit >= 1", limit)
	}
	return c.s.listStuck(ctx, limit)
}

// RetryStuck makes a Stuck instance due again, with its rounds counted from
// zero, for recovery to drive; it reports whether the instance was stuck.
func (c *Coordinator) RetryStuck(ctx context.Context, id string) (bool, error) {
	c.check()
	return c.s.retryStuck(ctx, id)
}

// MarkResolved records that an operator dealt with a Stuck instance by hand,
// with a note (a ticket, say); it reports whether the instance was stuck.
// The instance keeps its last error.
func (c *Coordinator) MarkResolved(ctx context.Context, id, note string) (bool, error) {
	c.check()
	return c.s.markResolved(ctx, id, note)
}

// ErrNotFound is returned by InstanceStatus for an ID the store does not
// hold.
var ErrNotFound = errors.New("saga: no instance with this ID")

// InstanceStatus returns the status of the instance id in the store.
func (c *Coordinator) InstanceStatus(ctx context.Context, id string) (Status, error) {
	c.check()
	return c.s.status(ctx, id)
}

func (s *durable) list(ctx context.Context, f Filter) ([]Instance, error) {
	now := s.d.db.sql.Now
	orphaned := `status IN (1, 2, 3) AND next_attempt_at <= ` + now + ` AND (owner IS NULL OR lease_until < ` + now + `)`
	var where []string
	var args []any
	if len(f.Status) > 0 {
		where = append(where, "status IN ("+sqlstore.Marks(len(f.Status))+")")
		for _, st := range f.Status {
			args = append(args, int(st))
		}
	}
	if f.Orphaned {
		where = append(where, orphaned)
	}
	if f.Definition != "" {
		where = append(where, "name = ?")
		args = append(args, f.Definition)
	}
	if f.OlderThan > 0 {
		where = append(where, "created_at <= "+now+" - ?")
		args = append(args, f.OlderThan.Microseconds())
	}
	cond := "1 = 1"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT id, name, version, status,
		CASE WHEN `+orphaned+` THEN 1 ELSE 0 END, owner, failed_step,
		attempts, cause, last_error, created_at, updated_at, `+now+`
		FROM {p}_instances WHERE `+cond+` ORDER BY created_at, id LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var (
			in                      Instance
			status                  int
			owner, last, cause      sql.NullString
			failedStep              string
			created, updated, dbNow int64
		)
		if err := rows.Scan(&in.ID, &in.Name, &in.Version, &status, &in.Orphaned, &owner, &failedStep,
			&in.Attempts, &cause, &last, &created, &updated, &dbNow); err != nil {
			return nil, fmt.Errorf("saga: list: %w", err)
		}
		in.Status, in.Owner, in.Cause, in.LastError = Status(status), owner.String, cause.String, last.String
		in.Step = failedStep
		in.Created, in.Updated = time.UnixMicro(created), time.UnixMicro(updated)
		in.Age = time.Duration(dbNow-created) * time.Microsecond
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	if err := s.currentSteps(ctx, out); err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	return out, nil
}

// currentSteps sets the Step of each of instances that has none: the last
// step of its definition, in order, whose action the log holds.
func (s *durable) currentSteps(ctx context.Context, instances []Instance) error {
	var ids []any
	for _, in := range instances {
		if in.Step == "" {
			ids = append(ids, in.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT saga_id, step FROM {p}_steps WHERE phase = ? AND saga_id IN (`+
		sqlstore.Marks(len(ids))+`)`), append([]any{int(Action)}, ids...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	recorded := map[string]map[string]bool{}
	for rows.Next() {
		var id, step string
		if err := rows.Scan(&id, &step); err != nil {
			return err
		}
		if recorded[id] == nil {
			recorded[id] = map[string]bool{}
		}
		recorded[id][step] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for k := range instances {
		in := &instances[k]
		def := s.e.definition(in.Name, in.Version)
		if in.Step != "" || def == nil {
			continue
		}
		for i := len(def.steps) - 1; i >= 0; i-- {
			if recorded[in.ID][def.steps[i].name] {
				in.Step = def.steps[i].name
				break
			}
		}
	}
	return nil
}

func (s *durable) purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	var total int64
	for {
		ids, err := sqlstore.Column[string](ctx, s.db, s.d.q(`SELECT id FROM {p}_instances
			WHERE status IN (4, 5, 7) AND updated_at < `+s.d.db.sql.Now+` - ? ORDER BY updated_at LIMIT ?`),
			olderThan.Microseconds(), s.purgeBatch)
		if err != nil {
			return total, fmt.Errorf("saga: purge: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		n, err := s.purgeIDs(ctx, ids)
		if err != nil {
			return total, fmt.Errorf("saga: purge: %w", err)
		}
		total += n
		if len(ids) < s.purgeBatch {
			return total, nil
		}
	}
}

// purgeIDs deletes the instances ids, which ended, and their steps, in one
// transaction, and returns how many instances it deleted. An instance that
// ended stays as it ended: its steps go with it.
func (s *durable) purgeIDs(ctx context.Context, ids []string) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	in := sqlstore.Marks(len(ids))
	res, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM {p}_instances WHERE status IN (4, 5, 7) AND id IN (`+in+`)`), sqlstore.Args(ids)...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM {p}_steps WHERE saga_id IN (`+in+`)`), sqlstore.Args(ids)...); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

func (s *durable) listStuck(ctx context.Context, limit int) ([]StuckSaga, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT id, name, version, attempts, last_error, resume_status
		FROM {p}_instances WHERE status = ? ORDER BY updated_at LIMIT ?`), int(Stuck), limit)
	if err != nil {
		return nil, fmt.Errorf("saga: list stuck: %w", err)
	}
	defer rows.Close()
	var out []StuckSaga
	for rows.Next() {
		var (
			st      StuckSaga
			lastErr sql.NullString
			resume  int
		)
		if err := rows.Scan(&st.ID, &st.Name, &st.Version, &st.Attempts, &lastErr, &resume); err != nil {
			return nil, fmt.Errorf("saga: list stuck: %w", err)
		}
		st.LastError, st.Owed = lastErr.String, Status(resume)
		out = append(out, st)
	}
	return out, rows.Err()
}

func (s *durable) retryStuck(ctx context.Context, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET status = resume_status, attempts = 0, next_attempt_at = 0,
		owner = NULL, lease_until = 0, updated_at = `+s.d.db.sql.Now+` WHERE id = ? AND status = ?`), id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: retry %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *durable) markResolved(ctx context.Context, id, note string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET status = ?, note = ?, updated_at = `+s.d.db.sql.Now+`
		WHERE id = ? AND status = ?`), int(Resolved), sqlstore.Text(note), id, int(Stuck))
	if err != nil {
		return false, fmt.Errorf("saga: resolve %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *durable) status(ctx context.Context, id string) (Status, error) {
	var st int
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT status FROM {p}_instances WHERE id = ?`), id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("saga: status of %s: %w", id, err)
	}
	return Status(st), nil
}
