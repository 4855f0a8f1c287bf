package twophase

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/internal/wait"
)

// InDoubt is a prepared branch of a transaction of this package: one that
// its coordinator has yet to commit or roll back. It holds its locks until
// then.
type InDoubt struct {
	// TxID is the transaction's ID; Participant is the branch's.
	TxID, Participant string
	// Coordinator is the ID of the coordinator that began it.
	Coordinator string
	// Began is when the transaction began, on its coordinator's clock, and
	// Age how long ago that is on this process's clock.
	Began time.Time
	Age   time.Duration
	// Decision is the decision recorded for the transaction in this
	// coordinator's decision table: Undecided for a transaction of a
	// coordinator whose home is another database.
	Decision Decision
}

// ListInDoubt returns the prepared branches of this package's
// transactions, those of every coordinator, on c's participants, oldest
// first within each participant.
func (c *Coordinator) ListInDoubt(ctx context.Context) ([]InDoubt, error) {
	now := time.Now()
	var out []InDoubt
	for _, p := range c.parts {
		xs, err := c.branches(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, x := range xs {
			coordinator, began, _ := parseGTRID(x.gtrid)
			d, err := c.decision(ctx, x.gtrid)
			if err != nil {
				return nil, fmt.Errorf("twophase: read the decision on %s: %w", x.gtrid, err)
			}
			out = append(out, InDoubt{TxID: x.gtrid, Participant: p.name, Coordinator: coordinator,
				Began: began, Age: now.Sub(began), Decision: d})
		}
	}
	return out, nil
}

// branches returns the prepared branches of this package on p.
func (c *Coordinator) branches(ctx context.Context, p *Participant) ([]xid, error) {
	xs, err := p.p.list(ctx, p.db)
	if err != nil {
		return nil, fmt.Errorf("twophase: list the prepared branches on %s: %w", p.name, err)
	}
	// A server lists the branches of every database on it (MySQL) or of
	// every schema of the database (PostgreSQL): p's bear its name.
	mine := xs[:0]
	for _, x := range xs {
		if x.bqual == p.name {
			mine = append(mine, x)
		}
	}
	return mine, nil
}

// Recovered counts what one pass of [Coordinator.Recover] did.
type Recovered struct {
	// Committed and RolledBack count the branches it ended so (or found
	// ended by another connection as it went to end them).
	Committed, RolledBack int
	// Waiting counts the undecided branches it left for a later pass,
	// their transactions younger than the grace period.
	Waiting int
}

// Recover resolves, once, the prepared branches of c's own transactions
// (those whose ID carries c's ID) on every participant: it commits those
// whose transaction has a Commit decision, and rolls back those whose
// transaction has an Abort decision or, begun longer ago than the grace
// period ([WithGrace]), none: it then records Abort first, which a commit
// of the decision still under way would wait for and find (presumed
// abort). A branch that another connection ended meanwhile counts as
// ended. It reports a branch it leaves in doubt past [WithAlertAfter] as
// an alert, and deletes the decisions older than the retention
// ([WithRetention]) that no branch waits for.
//
// It returns what it did, and the errors it met; it goes on past them.
func (c *Coordinator) Recover(ctx context.Context) (Recovered, error) {
	var (
		r         Recovered
		errs      []error
		now       = time.Now()
		listedAll = true
		listed    []any
		decided   = map[string]Decision{}
	)
	for _, p := range c.parts {
		xs, err := c.branches(ctx, p)
		if err != nil {
			errs = append(errs, err)
			listedAll = false
			continue
		}
		for _, x := range xs {
			listed = append(listed, x.gtrid)
			coordinator, began, _ := parseGTRID(x.gtrid)
			if coordinator != c.id {
				continue
			}
			age := now.Sub(began)
			err := c.resolve(ctx, p, x, age, decided, &r)
			if err != nil {
				errs = append(errs, err)
			}
			if err != nil || decided[x.gtrid] == Undecided {
				if age >= c.cfg.alertAfter {
					why := err
					if why == nil {
						why = fmt.Errorf("undecided, and within the grace period of %v", c.cfg.grace)
					}
					c.observe(ctx, resilience.Event{Kind: resilience.Error, Subject: x.gtrid + "/" + p.name,
						Err: &InDoubtError{TxID: x.gtrid, Participant: p.name, Age: age, Err: why}})
				}
			}
		}
	}
	if listedAll {
		if err := c.purge(ctx, listed); err != nil {
			errs = append(errs, err)
		}
	}
	return r, errors.Join(errs...)
}

// resolve ends the prepared branch x on p, as its decision says; decided
// keeps the decisions read in this pass.
func (c *Coordinator) resolve(ctx context.Context, p *Participant, x xid, age time.Duration, decided map[string]Decision, r *Recovered) error {
	d, ok := decided[x.gtrid]
	if !ok {
		var err error
		if d, err = c.decision(ctx, x.gtrid); err != nil {
			return fmt.Errorf("twophase: read the decision on %s: %w", x.gtrid, err)
		}
		if d == Undecided && age >= c.cfg.grace {
			if d, err = c.settle(ctx, x.gtrid); err != nil {
				return fmt.Errorf("twophase: abort %s: %w", x.gtrid, err)
			}
		}
		decided[x.gtrid] = d
	}
	var err error
	switch d {
	case Undecided:
		r.Waiting++
		return nil
	case Commit:
		err = p.p.commitPrepared(ctx, p.db, x)
		r.Committed++
	default:
		err = p.p.rollbackPrepared(ctx, p.db, x)
		r.RolledBack++
	}
	if err != nil && !p.p.gone(err) {
		if d == Commit {
			r.Committed--
		} else {
			r.RolledBack--
		}
		return fmt.Errorf("twophase: %s %s on %s: %w", d, x.gtrid, p.name, err)
	}
	return nil
}

// purgeBatch bounds how many decisions one statement deletes.
const purgeBatch = 500

// purge deletes the decisions of c's transactions older than the
// retention, but those of the transactions in listed, which have branches
// prepared.
func (c *Coordinator) purge(ctx context.Context, listed []any) error {
	d := c.home.p.store
	where := "gid LIKE ? AND decided_at < " + d.Now + " - ?"
	args := []any{gtridPrefix + strings.ReplaceAll(c.id, "_", `\_`) + ".%", c.cfg.retention.Microseconds()}
	if len(listed) > 0 {
		where += " AND gid NOT IN (" + sqlstore.Marks(len(listed)) + ")"
		args = append(args, listed...)
	}
	q := d.Rebind(d.DeleteFirst(c.cfg.table, "gid", where, "decided_at", purgeBatch))
	for {
		res, err := c.home.db.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("twophase: purge decisions: %w", err)
		}
		if n, _ := res.RowsAffected(); n < purgeBatch {
			return nil
		}
	}
}

// RunRecovery calls [Coordinator.Recover] at once and then every
// [WithRecoveryInterval], until ctx is done, and then returns nil. It
// reports Recover's errors as [resilience.Error] events. Run it in every
// process that runs transactions of a coordinator, as soon as the
// coordinator is made: it resolves what the last process of the same ID
// left in doubt.
func (c *Coordinator) RunRecovery(ctx context.Context) error {
	for {
		if _, err := c.Recover(ctx); err != nil && ctx.Err() == nil {
			c.observe(ctx, resilience.Event{Kind: resilience.Error, Subject: c.id, Err: err})
		}
		if !wait.Sleep(ctx, c.cfg.interval) {
			return nil
		}
	}
}

// String returns the counts, as "2 committed, 1 rolled back, 0 waiting".
func (r Recovered) String() string {
	return strconv.Itoa(r.Committed) + " committed, " + strconv.Itoa(r.RolledBack) + " rolled back, " +
		strconv.Itoa(r.Waiting) + " waiting"
}
