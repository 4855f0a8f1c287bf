package saga

import (
	"context"
	"database/sql"
	"fmt"
	"time"
	"unicode/utf8"
)

// Execer is what a [Barrier] writes through: the participant's own
// transaction, a *sql.Tx, in which its business effect is written too.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Barrier makes each step call take effect at most once on a participant,
// whatever the coordinator's retries, recoveries and races: the
// sub-transaction barrier. In the participant's own transaction, Call
// records the call's key before running it, so that
//
//   - a call made again (a retry, a recovery) is skipped;
//   - a compensation (or cancel) whose action (or try) never ran does
//     nothing (a null compensation), and that action, should it arrive
//     late, is skipped too, so nothing is left behind (no hanging).
//
// The participant's effect must be written in the same transaction, so that
// the record and the effect commit, or roll back, together. Make one with
// [NewBarrier]: the zero value is not usable, and its methods panic. It is
// safe for concurrent use. Records live in d's prefix_barrier table;
// [Barrier.Sweep] deletes old ones.
type Barrier struct {
	d      Dialect
	insert string
}

// NewBarrier returns the barrier of d's database; the participant calls
// [Migrate] on that database first.
func NewBarrier(d Dialect) *Barrier {
	if d.db == nil {
		panic("saga: NewBarrier: zero Dialect")
	}
	return &Barrier{d: d, insert: d.db.sql.InsertIgnore(d.prefix+"_barrier",
		[]string{"gid", "branch", "op", "reason", "created_at"}, "?, ?, ?, ?, "+d.db.sql.Now)}
}

// check panics for a Barrier that NewBarrier did not make.
func (b *Barrier) check() {
	if b.insert == "" {
		panic("saga: zero Barrier; use NewBarrier")
	}
}

// origin is the phase that a compensating phase undoes.
var origin = map[Phase]Phase{Compensate: Action, Cancel: Try}

// Call runs fn, which writes its effect through tx, if the call k has not
// run before and, for a compensation or cancel, if its forward phase ran:
// see [Barrier]. It returns fn's error, or nil for a call it skipped. Get k
// from the step's ctx with [IdempotencyKey], or from the request that
// carried it to the participant.
func (b *Barrier) Call(ctx context.Context, tx Execer, k Key, fn func(ctx context.Context) error) error {
	b.check()
	if k.SagaID == "" || k.Step == "" || k.Phase == 0 || k.Phase > Cancel {
		return fmt.Errorf("saga: barrier: incomplete key %q", k)
	}
	if len(k.SagaID) > 128 || len(k.Step) > 64 || !utf8.ValidString(k.SagaID) || !utf8.ValidString(k.Step) {
		return fmt.Errorf("saga: barrier: key %q: want valid UTF-8, a saga ID of at most 128 bytes and a step of at most 64", k)
	}
	ins := func(op Phase, reason Phase) (bool, error) {
		res, err := tx.ExecContext(ctx, b.insert, k.SagaID, k.Step, op.String(), reason.String())
		if err != nil {
			return false, fmt.Errorf("saga: barrier: %w", err)
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	forwardRan := true
	if o, ok := origin[k.Phase]; ok {
		inserted, err := ins(o, k.Phase)
		if err != nil {
			return err
		}
		forwardRan = !inserted // the forward phase's record was there already
	}
	first, err := ins(k.Phase, k.Phase)
	if err != nil {
		return err
	}
	if !forwardRan || !first {
		return nil // a null compensation, a duplicate, or a forward call after its compensation
	}
	return fn(ctx)
}

// Sweep deletes, in one batch of at most 10000, barrier records older than
// olderThan, and returns how many it deleted. Keep them longer than any
// saga can retry a call: a week is a common choice.
func (b *Barrier) Sweep(ctx context.Context, db Execer, olderThan time.Duration) (int64, error) {
	b.check()
	cutoff := b.d.db.sql.Now + " - ?"
	query := b.d.db.sql.DeleteFirst("{p}_barrier", "gid, branch, op", "created_at < "+cutoff, "created_at", 10_000)
	res, err := db.ExecContext(ctx, b.d.q(query), olderThan.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("saga: barrier sweep: %w", err)
	}
	return res.RowsAffected()
}
