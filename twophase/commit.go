package twophase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
)

// ErrAborted is matched by the error of [Tx.Commit] when the transaction
// was rolled back: a branch failed to prepare, the decision could not be
// recorded, or recovery had aborted the transaction first.
var ErrAborted = errors.New("twophase: transaction rolled back")

// InDoubtError is the error of [Tx.Commit] when it cannot tell whether the
// transaction committed: the home transaction's commit failed, and so did
// the read of the decision after it. Recovery settles the transaction
// (see [Coordinator.Recover]). It is also the Err of an alert event, for a
// branch in doubt past [WithAlertAfter]. It matches [ErrInDoubt].
type InDoubtError struct {
	// TxID is the transaction's ID; Participant the branch's, for an
	// alert.
	TxID, Participant string
	// Age is how long ago the transaction began, for an alert.
	Age time.Duration
	// Err is why it is in doubt.
	Err error
}

// ErrInDoubt is matched by an [*InDoubtError].
var ErrInDoubt = errors.New("twophase: transaction in doubt")

func (e *InDoubtError) Error() string {
	if e.Participant != "" {
		return fmt.Sprintf("twophase: transaction %s in doubt on %s for %v: %v", e.TxID, e.Participant, e.Age.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("twophase: transaction %s in doubt, until recovery settles it: %v", e.TxID, e.Err)
}

func (e *InDoubtError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInDoubt.
func (e *InDoubtError) Is(target error) bool { return target == ErrInDoubt }

// Commit commits every branch of the transaction, or none.
//
// It prepares each branch but the home's, in order (a branch in which no
// statement ran has nothing to commit, and ends unprepared); then commits the
// home's local transaction, which records the decision: that commit is the
// transaction's commit. Then it commits the prepared branches. If a
// branch fails to prepare, or ctx is done, before the decision, it rolls
// back every branch and returns an error that matches [ErrAborted]. After
// the decision it returns nil: the transaction is committed, whatever
// ctx does; a prepared branch whose commit then fails stays prepared, and
// locked, until recovery commits it (an Error event tells). If the home's
// commit fails so that the decision is unknown, it returns an
// [*InDoubtError], and recovery decides.
//
// Commit returns [ErrTxDone] if the transaction was committed or rolled
// back already.
func (tx *Tx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	start := time.Now()
	err := tx.commit(ctx)
	if tx.c.cfg.observer != nil {
		ev := resilience.Event{Kind: resilience.Success, Subject: tx.gtrid, Count: len(tx.branches), Duration: time.Since(start)}
		if err != nil {
			ev.Kind, ev.Err = resilience.Failure, err
		}
		tx.c.observe(ctx, ev)
	}
	return err
}

func (tx *Tx) commit(ctx context.Context) error {
	last := len(tx.branches) - 1
	home := tx.branches[last]
	for _, b := range tx.branches[:last] {
		if err := tx.at(ctx, BeforePrepare, b); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return tx.abort(ctx, fmt.Errorf("before preparing %s: %w", b.p.name, err))
		}
		if !b.used.Load() {
			// A branch that ran nothing has nothing to commit: it ends
			// now, unprepared. (MariaDB lists an empty XA branch as
			// prepared, and then fails its commit with XA_RBROLLBACK.)
			b.end(b.p.p.rollbackActive(ctx, b.conn, b.x))
			continue
		}
		if err := b.p.p.prepare(ctx, b.conn, b.x); err != nil {
			b.state = preparing
			return tx.abort(ctx, fmt.Errorf("prepare %s: %w", b.p.name, err))
		}
		b.state = prepared
		if err := tx.at(ctx, AfterPrepare, b); err != nil {
			return err
		}
	}
	if err := tx.at(ctx, BeforeDecision, home); err != nil {
		return err
	}
	if _, err := home.conn.ExecContext(ctx, tx.c.insertDecision, tx.gtrid); err != nil {
		return tx.abort(ctx, fmt.Errorf("record the decision in %s: %w", home.p.name, err))
	}
	if err := exec(ctx, home.conn, "COMMIT"); err != nil {
		// The commit may have happened. settle tells, and makes it final
		// either way.
		home.end(err)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		d, serr := tx.c.settle(sctx, tx.gtrid)
		cancel()
		switch {
		case serr != nil:
			tx.leave()
			return &InDoubtError{TxID: tx.gtrid, Err: fmt.Errorf("commit in %s: %w; read the decision: %w", home.p.name, err, serr)}
		case d != Commit:
			return tx.abort(ctx, fmt.Errorf("commit in %s: %w", home.p.name, err))
		}
	} else {
		home.end(nil)
	}
	if err := tx.at(ctx, AfterDecision, home); err != nil {
		return err
	}
	return tx.secondPhase(ctx)
}

// secondPhase commits the prepared branches of a committed transaction.
func (tx *Tx) secondPhase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	for _, b := range tx.branches {
		if b.state != prepared {
			continue
		}
		err := b.p.p.commitPrepared(ctx, b.conn, b.x)
		if err != nil && b.p.p.gone(err) {
			err = nil // recovery committed it
		}
		b.end(err)
		if err != nil {
			tx.c.observe(ctx, resilience.Event{Kind: resilience.Error, Subject: tx.gtrid + "/" + b.p.name,
				Err: fmt.Errorf("twophase: commit the prepared branch on %s, which recovery commits later: %w", b.p.name, err)})
			continue
		}
		if err := tx.at(ctx, AfterCommit, b); err != nil {
			return err
		}
	}
	return nil
}

// abort rolls back the transaction because of cause, and returns the error
// of Commit that says so.
func (tx *Tx) abort(ctx context.Context, cause error) error {
	if err := tx.rollback(ctx); err != nil {
		return fmt.Errorf("%w: %s: %w (and %w: recovery rolls back what is left)", ErrAborted, tx.gtrid, cause, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrAborted, tx.gtrid, cause)
}

// at calls the hook at point p of branch b. If it returns an error, the
// transaction stops there, as if its process had died: see [Hook].
func (tx *Tx) at(ctx context.Context, p Point, b *Branch) error {
	if tx.c.cfg.hook == nil {
		return nil
	}
	err := tx.c.cfg.hook(ctx, p, b.p.name)
	if err == nil {
		return nil
	}
	tx.leave()
	return fmt.Errorf("twophase: transaction %s stopped %s on %s: %w", tx.gtrid, p, b.p.name, err)
}

// leave drops the connections of the branches not ended, and leaves them
// to the databases (which roll back the branches not prepared) and to
// recovery (the prepared ones).
func (tx *Tx) leave() {
	for _, b := range tx.branches {
		if b.state != ended {
			discard(b.conn)
			b.state = ended
		}
	}
}
