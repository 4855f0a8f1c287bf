package eventstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/internal/wait"
)

// Handler handles a batch of events of a subscription, in position order,
// inside tx: the transaction that then moves the subscription's checkpoint
// past them. What the handler writes through tx (a read model's rows)
// commits with the checkpoint or not at all, so each event takes effect
// exactly once. What it does elsewhere (a call, a publish) happens at least
// once: after a failure or a crash, the batch is handed over again. A
// handler that returns an error has its batch rolled back and handed over
// again after a backoff; it must honour ctx.
type Handler func(ctx context.Context, tx *sql.Tx, events []Event) error

// ErrLeaseLost is reported (see [WithOnError]) when another subscriber took
// the subscription over while this one handled a batch: the batch was
// rolled back, and the subscriber waits to take the lease again.
var ErrLeaseLost = errors.New("eventstore: subscription lease lost to another subscriber")

// Subscribe hands the events of the store to h, in position order, from the
// subscription's checkpoint on: first those already committed (catch-up),
// then each as it commits (live), until ctx is done; then it gives the
// lease back and returns nil. The checkpoint is kept in the store under
// name, so a subscriber that stops, or dies, resumes where the last
// committed batch ended.
//
// One subscriber at a time drives a subscription, through a lease (see
// [WithLease]): run it in as many processes as you like, and the others
// wait to take over. A subscriber moves the checkpoint only while it owns
// the lease, in the batch's transaction, so a subscriber that stalled past
// its lease commits nothing.
//
// Errors of the database and of h do not stop it: it reports them
// ([WithOnError]) and tries again after a backoff. It returns an error at
// once for a bad name.
func (s *Store) Subscribe(ctx context.Context, name string, h Handler, opts ...SubscribeOption) error {
	if h == nil {
		panic("eventstore: Subscribe: nil Handler")
	}
	if name == "" || len(name) > 255 {
		return fmt.Errorf("eventstore: Subscribe: name %q: want 1 to 255 bytes", name)
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			panic("eventstore: Subscribe: nil SubscribeOption")
		}
		opt.apply(&cfg)
	}
	if cfg.id == "" {
		var b [8]byte
		rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read does not fail
		cfg.id = "sub-" + hex.EncodeToString(b[:])
	}
	sub := &subscriber{s: s, name: name, h: h, cfg: cfg}
	return sub.run(ctx)
}

// subscriber is one run of Subscribe.
type subscriber struct {
	s    *Store
	name string
	h    Handler
	cfg  config

	held     bool      // the subscriber owns the lease, as far as it knows
	took     bool      // it took the lease and has not given it back: it may own it, held or not
	position int64     // the checkpoint, while held
	renewed  time.Time // when the lease was last set, on this process's clock
}

func (sub *subscriber) run(ctx context.Context) error {
	wakeups, stop := sub.s.wakeups.Subscribe()
	defer stop()
	external, stopWaker := sub.startWaker(ctx)
	defer stopWaker()
	defer sub.release()

	var idle wait.Idle
	idle.Worked()
	pause := time.Duration(0)
	for {
		n, err := sub.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			sub.report(err)
			pause = min(max(2*pause, 50*time.Millisecond), sub.cfg.backoffMax)
			if !wait.Sleep(ctx, pause) {
				return nil
			}
			continue
		}
		pause = 0
		if n == sub.cfg.batch {
			idle.Worked()
			continue
		}
		if sub.held && sub.cfg.untilCaughtUp {
			return nil
		}
		if n > 0 || !sub.held {
			idle.Worked() // without the lease, only the lease's end lets it in
		}
		// An idle owner wakes at least every third of the lease, to renew it.
		if !idle.Wait(ctx, min(sub.cfg.poll, sub.cfg.lease/3), wakeups, external) {
			return nil
		}
	}
}

// step takes or renews the lease as needed and handles one batch; it
// returns how many events it handled.
func (sub *subscriber) step(ctx context.Context) (int, error) {
	if !sub.held {
		ok, err := sub.acquire(ctx)
		if err != nil || !ok {
			return 0, err
		}
	}
	n, err := sub.batch(ctx)
	if err != nil {
		return 0, err
	}
	if n == 0 && time.Since(sub.renewed) > sub.cfg.lease/3 {
		if _, err := sub.acquire(ctx); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// acquire creates the subscription if it is new, and takes its lease if it
// is free, expired or already this subscriber's; it reads the checkpoint.
func (sub *subscriber) acquire(ctx context.Context) (bool, error) {
	s, d, now := sub.s, sub.s.d, sub.s.d.db.sql.Now
	insert := d.db.sql.InsertIgnore(d.table+"_subscriptions", []string{"name", "position", "lease_until", "updated_at"}, "?, 0, 0, "+now)
	if _, err := s.db.ExecContext(ctx, insert, sub.name); err != nil {
		return false, fmt.Errorf("eventstore: subscription %q: %w", sub.name, err)
	}
	// A claim, which skips the row while a stalled subscriber's batch
	// holds it locked, rather than wait for it.
	start := time.Now()
	var positions []int64
	err := d.db.sql.Claim(ctx, s.db, sqlstore.Claim{Table: d.table + "_subscriptions", Key: "name",
		Set: "owner = ?, lease_until = " + now + " + ?", SetArgs: []any{sub.cfg.id, sub.cfg.lease.Microseconds()},
		Where: "name = ? AND (owner IS NULL OR owner = ? OR lease_until < " + now + ")", WhereArgs: []any{sub.name, sub.cfg.id},
		OrderBy: "name", Limit: 1, Returning: "position"}, func(rows *sql.Rows) error {
		var p int64
		if err := rows.Scan(&p); err != nil {
			return err
		}
		positions = append(positions, p)
		return nil
	})
	if err != nil || len(positions) == 0 {
		sub.held = false
		if err != nil {
			return false, fmt.Errorf("eventstore: lease of %q: %w", sub.name, err)
		}
		return false, nil
	}
	pos := positions[0]
	sub.held, sub.took, sub.position, sub.renewed = true, true, pos, start
	return true, nil
}

// batch hands the events after the checkpoint to the handler, and moves the
// checkpoint past them in the same transaction, fenced by the lease.
func (sub *subscriber) batch(ctx context.Context) (int, error) {
	s, d, now := sub.s, sub.s.d, sub.s.d.db.sql.Now
	events, err := s.ReadAll(ctx, sub.position+1, sub.cfg.batch)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	last := events[len(events)-1].Position
	start := time.Now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("eventstore: subscription %q: %w", sub.name, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := sub.h(ctx, tx, events); err != nil {
		return 0, fmt.Errorf("eventstore: subscription %q: handler, events %d to %d: %w", sub.name, sub.position+1, last, err)
	}
	res, err := tx.ExecContext(ctx, d.q("UPDATE {t}_subscriptions SET position = ?, lease_until = "+now+" + ?, updated_at = "+now+
		" WHERE name = ? AND owner = ? AND position = ?"), last, sub.cfg.lease.Microseconds(), sub.name, sub.cfg.id, sub.position)
	if err != nil {
		return 0, fmt.Errorf("eventstore: checkpoint of %q: %w", sub.name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("eventstore: checkpoint of %q: %w", sub.name, err)
	} else if n == 0 {
		sub.held = false
		return 0, ErrLeaseLost
	}
	if err := tx.Commit(); err != nil {
		sub.held = false // the checkpoint is not known: read it again
		return 0, fmt.Errorf("eventstore: checkpoint of %q: %w", sub.name, err)
	}
	sub.position, sub.renewed = last, start
	return len(events), nil
}

// release gives the lease back, so that another subscriber takes over at
// once. It does so even when the subscriber no longer knows that it holds
// the lease (a commit that failed as ctx ended leaves the lease its own):
// the update is fenced by the owner, and changes nothing if another took
// the lease over.
func (sub *subscriber) release() {
	if !sub.took {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sub.s.db.ExecContext(ctx, sub.s.d.q("UPDATE {t}_subscriptions SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?"),
		sub.name, sub.cfg.id)
	if err != nil {
		sub.report(fmt.Errorf("eventstore: release %q: %w", sub.name, err))
	}
	sub.held, sub.took = false, false
}

func (sub *subscriber) report(err error) {
	if sub.cfg.onError != nil {
		sub.cfg.onError(err)
	}
}

// startWaker runs the external Waker, if any, on a goroutine that ends
// before Subscribe returns.
func (sub *subscriber) startWaker(ctx context.Context) (<-chan struct{}, func()) {
	if sub.cfg.waker == nil {
		return nil, func() {}
	}
	return wait.Forward(ctx, sub.cfg.waker.Wait, func(err error) {
		sub.report(fmt.Errorf("eventstore: waker: %w", err))
	})
}

// Checkpoint returns the position of the last event the subscription name
// handled, or 0 for a subscription that has handled none or does not
// exist.
func (s *Store) Checkpoint(ctx context.Context, name string) (int64, error) {
	v, err := sqlstore.Column[int64](ctx, s.db, s.d.q("SELECT position FROM {t}_subscriptions WHERE name = ?"), name)
	if err != nil {
		return 0, fmt.Errorf("eventstore: checkpoint of %q: %w", name, err)
	}
	if len(v) == 0 {
		return 0, nil
	}
	return v[0], nil
}

// DeleteSubscription forgets the subscription name: its checkpoint and
// its lease. A subscriber that runs under that name starts again from the
// first event.
func (s *Store) DeleteSubscription(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, s.d.q("DELETE FROM {t}_subscriptions WHERE name = ?"), name); err != nil {
		return fmt.Errorf("eventstore: delete subscription %q: %w", name, err)
	}
	return nil
}

// SubscriptionStatus is where a subscription stands, for operators.
type SubscriptionStatus struct {
	Name string
	// Position is the subscription's checkpoint, and Head the position of
	// the last event committed to the store.
	Position, Head int64
	// Lag is how many events the subscription has yet to handle, and
	// LagTime how long the oldest of them has waited (zero when Lag is).
	Lag     int64
	LagTime time.Duration
	// Owner is the subscriber that holds the lease, until LeaseUntil; ""
	// when none does.
	Owner      string
	LeaseUntil time.Time
	// Updated is when the checkpoint last moved.
	Updated time.Time
}

// Subscriptions returns the status of every subscription of the store, by
// name.
func (s *Store) Subscriptions(ctx context.Context) ([]SubscriptionStatus, error) {
	head, err := s.Head(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT s.name, s.position, COALESCE(s.owner, ''), s.lease_until, s.updated_at,
		(SELECT e.recorded_at FROM {t} e WHERE e.position = s.position + 1), `+s.d.db.sql.Now+`
		FROM {t}_subscriptions s ORDER BY s.name`))
	if err != nil {
		return nil, fmt.Errorf("eventstore: subscriptions: %w", err)
	}
	defer rows.Close()
	var out []SubscriptionStatus
	for rows.Next() {
		var (
			st              SubscriptionStatus
			leaseUntil, upd int64
			oldest          sql.NullInt64
			now             int64
		)
		if err := rows.Scan(&st.Name, &st.Position, &st.Owner, &leaseUntil, &upd, &oldest, &now); err != nil {
			return nil, fmt.Errorf("eventstore: subscriptions: %w", err)
		}
		st.Head = head
		st.Lag = max(head-st.Position, 0)
		if oldest.Valid && st.Lag > 0 {
			st.LagTime = max(time.Duration(now-oldest.Int64)*time.Microsecond, 0)
		}
		if st.Owner != "" {
			st.LeaseUntil = time.UnixMicro(leaseUntil)
		}
		st.Updated = time.UnixMicro(upd)
		out = append(out, st)
	}
	return out, rows.Err()
}
