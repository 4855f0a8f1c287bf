package twophase

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Tx is a transaction over several participants: a [Branch] on each, which
// [Tx.Commit] commits all or none of. Make one with [Begin]. It is not
// safe for concurrent use, as a *sql.Tx is not.
type Tx struct {
	c        *Coordinator
	gtrid    string
	branches []*Branch // home last
	done     bool
}

// Branch is a transaction's work on one participant, through a connection
// of its own: use it as a *sql.Tx. Its zero value is not usable. It is
// not safe for concurrent use.
type Branch struct {
	p     *Participant
	x     xid
	conn  *sql.Conn
	state branchState
	used  atomic.Bool // a statement ran in the branch
}

type branchState uint8

const (
	active    branchState = iota // begun
	preparing                    // its prepare failed: prepared or not
	prepared                     // prepared
	ended                        // committed or rolled back, or left to recovery; conn released
)

// ErrTxDone is returned by [Tx.Commit] and [Tx.Rollback] when the
// transaction was committed or rolled back already.
var ErrTxDone = errors.New("twophase: transaction has already been committed or rolled back")

// Begin begins a transaction of c over the participants ps, on a
// connection of each, which it holds until the transaction ends. c's home
// participant always takes part: it is added if ps lacks it. With no ps,
// every participant of c takes part. Each participant but the home is
// prepared on [Tx.Commit], in the order of ps; the home commits last, in a
// local transaction that records the decision.
func Begin(ctx context.Context, c *Coordinator, ps ...*Participant) (*Tx, error) {
	if len(ps) == 0 {
		ps = c.parts
	}
	var random [8]byte
	rand.Read(random[:]) //nolint:errcheck // crypto/rand does not fail
	tx := &Tx{c: c, gtrid: newGTRID(c.id, time.Now(), binary.BigEndian.Uint64(random[:]))}
	order := make([]*Participant, 0, len(ps)+1)
	for _, p := range ps {
		if c.participant(p) == nil {
			return nil, fmt.Errorf("twophase: Begin: %v is not a participant of coordinator %s", p, c.id)
		}
		if p == c.home {
			continue
		}
		for _, q := range order {
			if q == p {
				return nil, fmt.Errorf("twophase: Begin: %v given twice", p)
			}
		}
		order = append(order, p)
	}
	order = append(order, c.home)
	for _, p := range order {
		b, err := tx.begin(ctx, p)
		if err != nil {
			tx.rollback(ctx)
			return nil, fmt.Errorf("twophase: begin on %s: %w", p.name, err)
		}
		tx.branches = append(tx.branches, b)
	}
	return tx, nil
}

// begin begins the branch of tx on p: a local transaction on the home.
func (tx *Tx) begin(ctx context.Context, p *Participant) (*Branch, error) {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	b := &Branch{p: p, x: xid{tx.gtrid, p.name}, conn: conn}
	if p == tx.c.home {
		err = exec(ctx, conn, "BEGIN")
	} else {
		err = p.p.begin(ctx, conn, b.x)
	}
	if err != nil {
		discard(conn)
		return nil, err
	}
	return b, nil
}

// ID returns the transaction's ID, which its branches' IDs start with.
func (tx *Tx) ID() string { return tx.gtrid }

// On returns the transaction's branch on p. It panics if p does not take
// part in the transaction.
func (tx *Tx) On(p *Participant) *Branch {
	for _, b := range tx.branches {
		if b.p == p {
			return b
		}
	}
	panic(fmt.Sprintf("twophase: Tx.On: %v does not take part in transaction %s", p, tx.gtrid))
}

// ExecContext runs a statement in the branch, as [sql.Tx.ExecContext].
func (b *Branch) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	b.used.Store(true)
	return b.conn.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the branch, as [sql.Tx.QueryContext].
func (b *Branch) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	b.used.Store(true)
	return b.conn.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query in the branch, as [sql.Tx.QueryRowContext].
func (b *Branch) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	b.used.Store(true)
	return b.conn.QueryRowContext(ctx, query, args...)
}

// Participant returns the participant the branch runs on.
func (b *Branch) Participant() *Participant { return b.p }

// Rollback rolls back every branch of the transaction. It returns
// [ErrTxDone] if the transaction was committed or rolled back already.
func (tx *Tx) Rollback(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	return tx.rollback(ctx)
}

// rollback rolls back every branch that is not ended, active or prepared,
// whatever ctx does, and releases their connections. A branch that cannot
// be rolled back is left to recovery, its connection dropped (which rolls
// back one that was not prepared); rollback returns the errors.
func (tx *Tx) rollback(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var errs []error
	for _, b := range tx.branches {
		var err error
		switch {
		case b.state == ended:
			continue
		case b.state == prepared:
			err = b.p.p.rollbackPrepared(ctx, b.conn, b.x)
			if err != nil && b.p.p.gone(err) {
				err = nil
			}
		case b.state == preparing:
			// Prepared, or not yet (an XA branch not ended), or rolled
			// back already (a PostgreSQL transaction that had failed).
			err = b.p.p.rollbackPrepared(ctx, b.conn, b.x)
			if err != nil && !b.p.p.gone(err) {
				err = b.p.p.rollbackActive(ctx, b.conn, b.x)
			} else {
				err = nil
			}
		case b.p == tx.c.home:
			err = exec(ctx, b.conn, "ROLLBACK")
		default:
			err = b.p.p.rollbackActive(ctx, b.conn, b.x)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("roll back on %s: %w", b.p.name, err))
		}
		b.end(err)
	}
	return errors.Join(errs...)
}

// settleTimeout bounds how long the end of a transaction, a rollback or a
// second phase, which runs whatever the caller's ctx does, may take.
const settleTimeout = 30 * time.Second

// end marks the branch ended and releases its connection: to the pool if
// err is nil, and otherwise closed, since its state is unknown (and a
// MariaDB connection keeps a prepared branch of its own from any other
// until it ends).
func (b *Branch) end(err error) {
	b.state = ended
	if err != nil {
		discard(b.conn)
		return
	}
	b.conn.Close()
}

// discard closes conn's connection to the database, instead of returning
// it to the pool.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // the error is ours
	conn.Close()
}
