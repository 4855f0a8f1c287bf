package outbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/internal/wait"
)

// Relay publishes the messages of an outbox, at least once. Make one with
// [NewRelay] and call [Relay.Run]; several relays, in one process or many,
// may serve one outbox. The zero value is not usable.
//
// In unordered mode (the default) a relay claims a batch of messages with a
// lease, in a short statement (PostgreSQL: FOR UPDATE SKIP LOCKED with
// UPDATE ... RETURNING; MySQL: a locking read and an update in a short
// transaction; SQLite: one UPDATE ... RETURNING), publishes them outside any
// transaction, and then deletes (or marks) only those whose lease it still
// holds: a relay whose lease ran out changes nothing. A message that fails
// goes back with a backoff and its error, and is marked dead after the
// maximum number of attempts; the others keep flowing.
//
// In ordered mode ([WithOrdered]) keyed messages go to one of [Lanes] lanes
// by the hash of their key, and a relay publishes a lane it owns one
// message at a time in id order, stopping the lane at the first failure.
type Relay struct {
	db   *sql.DB
	d    Dialect
	pub  Publisher
	cfg  config
	id   string
	seq  atomic.Uint64
	busy atomic.Bool

	published, failed, dead atomic.Int64
}

// Waker delivers wakeups from outside the process. Wait blocks until a
// wakeup or until ctx is done.
type Waker interface {
	Wait(ctx context.Context) error
}

// EventKind says what an [Event] reports.
type EventKind uint8

const (
	// Published: Count messages were published and acknowledged.
	Published EventKind = iota
	// Failed: Count messages failed and will be tried again; Err is the
	// first error.
	Failed
	// Dead: Count messages reached the maximum number of attempts.
	Dead
	// Error: the database or a wakeup failed; the relay goes on after a
	// pause. Err says what.
	Error
	// Stale: the lease ran out before Count messages were acknowledged;
	// another relay publishes them again.
	Stale
)

// Event reports what a relay did; see [WithOnEvent].
type Event struct {
	Kind  EventKind
	Count int
	Err   error
}

// NewRelay returns a Relay that publishes the messages of d's outbox in db
// through p, configured by opts. It starts nothing: [Relay.Run] does. It
// panics if db or p is nil, d is the zero Dialect, or an option is out of
// range.
func NewRelay(db *sql.DB, d Dialect, p Publisher, opts ...Option) *Relay {
	if db == nil || p == nil {
		panic("outbox: NewRelay: nil db or Publisher")
	}
	if d.flavor == 0 {
		panic("outbox: NewRelay: zero Dialect; use outbox.Postgres, MySQL or SQLite")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.publishTimeout >= cfg.lease/2 {
		panic(fmt.Sprintf("outbox: publish timeout %v must be less than half the lease %v", cfg.publishTimeout, cfg.lease))
	}
	id := cfg.id
	if id == "" {
		var b [8]byte
		rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read does not fail
		id = "relay-" + hex.EncodeToString(b[:])
	}
	return &Relay{db: db, d: d, pub: p, cfg: cfg, id: id}
}

// Stats counts what a relay published since it was made.
type Stats struct {
	Published, Failed, Dead int64
}

// Stats returns the relay's counts.
func (r *Relay) Stats() Stats {
	return Stats{Published: r.published.Load(), Failed: r.failed.Load(), Dead: r.dead.Load()}
}

// ErrRunning is returned by Run when the relay is already running.
var ErrRunning = errors.New("outbox: relay already running")

// Run publishes messages until ctx is done, then finishes the batch in hand
// (its publish is not cut short by ctx, only by the publish timeout),
// releases its lanes, and returns nil. Errors of the database or the
// Publisher do not stop it: it reports them (see [WithOnEvent]) and tries
// again after a pause, so a relay survives a database restart or a broker
// outage without help. It wakes at once when this process enqueues a
// message, and polls otherwise.
func (r *Relay) Run(ctx context.Context) error {
	if !r.busy.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.busy.Store(false)
	wakeups, stop := subscribe(r.d.table)
	defer stop()
	external, stopWaker := r.startWaker(ctx)
	defer stopWaker()
	defer r.releaseLanes()

	// After a wakeup, a few quick looks: Enqueue wakes the relay before the
	// writer commits, and the commit usually follows within milliseconds.
	quick := [...]time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond, 64 * time.Millisecond}
	looks := len(quick)
	pause := time.Duration(0)
	var lastSweep time.Time
	for {
		n, err := r.Process(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.emit(Event{Kind: Error, Err: err})
			pause = min(max(2*pause, 50*time.Millisecond), 5*time.Second)
			if !wait.Sleep(ctx, pause) {
				return nil
			}
			continue
		}
		pause = 0
		if n > 0 {
			looks = len(quick)
			continue
		}
		if r.cfg.retention > 0 && time.Since(lastSweep) > min(r.cfg.retention/10, time.Minute) {
			lastSweep = time.Now()
			if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.emit(Event{Kind: Error, Err: err})
			}
		}
		wait := r.cfg.poll
		if looks < len(quick) {
			wait = min(quick[looks], wait)
			looks++
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wakeups:
			looks = 0
		case <-external:
			looks = 0
		case <-t.C:
		}
		t.Stop()
	}
}

// startWaker runs the external Waker, if any, on a goroutine that ends
// before Run returns.
func (r *Relay) startWaker(ctx context.Context) (<-chan struct{}, func()) {
	if r.cfg.waker == nil {
		return nil, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	c := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := r.cfg.waker.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.emit(Event{Kind: Error, Err: fmt.Errorf("outbox: waker: %w", err)})
				if !wait.Sleep(ctx, time.Second) {
					return
				}
				continue
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	})
	return c, func() { cancel(); wg.Wait() }
}

// Process publishes one batch (in ordered mode, one batch of each lane the
// relay owns, and one of keyless messages), and returns how many messages
// it published. Run calls it in a loop; it serves tests and programs that
// drive the relay themselves, such as a cron job.
func (r *Relay) Process(ctx context.Context) (int, error) {
	if !r.cfg.ordered {
		return r.processUnordered(ctx, false)
	}
	n, err := r.processLanes(ctx)
	if err != nil {
		return n, err
	}
	k, err := r.processUnordered(ctx, true)
	return n + k, err
}

func (r *Relay) emit(e Event) {
	if r.cfg.onEvent != nil && (e.Count > 0 || e.Err != nil) {
		r.cfg.onEvent(e)
	}
}

// claimed is a message the relay holds.
type claimed struct {
	id  int64
	msg Message
}

// detached returns a ctx that ends with the publish timeout, not with ctx:
// a batch in hand is finished even while the relay stops.
func (r *Relay) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.publishTimeout)
}

func (r *Relay) processUnordered(ctx context.Context, keylessOnly bool) (int, error) {
	token := r.id + ":" + strconv.FormatUint(r.seq.Add(1), 36)
	batch, err := r.claim(ctx, token, keylessOnly)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	msgs := make([]Message, len(batch))
	for i := range batch {
		msgs[i] = batch[i].msg
	}
	pctx, cancel := r.detached(ctx)
	errs := r.pub.Publish(pctx, msgs)
	cancel()
	if errs != nil && len(errs) != len(msgs) {
		return 0, fmt.Errorf("outbox: Publisher returned %d errors for %d messages", len(errs), len(msgs))
	}
	actx, cancel := r.detached(ctx)
	defer cancel()
	var done []int64
	var firstErr error
	failed, dead := 0, 0
	for i := range batch {
		if errs == nil || errs[i] == nil {
			done = append(done, batch[i].id)
			continue
		}
		if firstErr == nil {
			firstErr = errs[i]
		}
		failed++
		isDead, err := r.nack(actx, batch[i], errs[i], r.backoff(batch[i].msg.Attempts), "locked_by = ?", token)
		if err != nil {
			return len(done), err
		}
		if isDead {
			dead++
		}
	}
	acked, err := r.ack(actx, done, "locked_by = ?", token)
	if err != nil {
		return 0, err
	}
	r.report(acked, len(done), failed, dead, firstErr)
	return acked, nil
}

func (r *Relay) report(acked, published, failed, dead int, err error) {
	r.published.Add(int64(acked))
	r.failed.Add(int64(failed))
	r.dead.Add(int64(dead))
	r.emit(Event{Kind: Published, Count: acked})
	r.emit(Event{Kind: Stale, Count: published - acked})
	r.emit(Event{Kind: Failed, Count: failed, Err: err})
	r.emit(Event{Kind: Dead, Count: dead})
}

const returning = "id, message_id, topic, msg_key, payload, headers, attempts"

// claim takes a lease on up to a batch of available messages.
func (r *Relay) claim(ctx context.Context, token string, keylessOnly bool) ([]claimed, error) {
	d, now := r.d, r.d.flavor.NowMicros()
	lease := r.cfg.lease.Microseconds()
	where := "status = 0 AND available_at <= " + now + " AND (locked_until IS NULL OR locked_until < " + now + ")"
	if keylessOnly {
		where += " AND lane IS NULL"
	}
	switch d.flavor {
	case sqlstore.Postgres:
		rows, err := r.db.QueryContext(ctx, d.q(`WITH c AS (SELECT id FROM {t} WHERE `+where+`
			ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
			UPDATE {t} SET locked_by = ?, locked_until = `+now+` + ?, attempts = {t}.attempts + 1
			FROM c WHERE {t}.id = c.id RETURNING {t}.`+strings.ReplaceAll(returning, ", ", ", {t}.")),
			r.cfg.batch, token, lease)
		if err != nil {
			return nil, err
		}
		return scanClaimed(rows)
	case sqlstore.SQLite:
		rows, err := r.db.QueryContext(ctx, d.q(`UPDATE {t} SET locked_by = ?, locked_until = `+now+` + ?, attempts = attempts + 1
			WHERE id IN (SELECT id FROM {t} WHERE `+where+` ORDER BY id LIMIT ?) RETURNING `+returning),
			token, lease, r.cfg.batch)
		if err != nil {
			return nil, err
		}
		return scanClaimed(rows)
	}
	// MySQL: lock the rows, lease them, read them, in one short transaction.
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	locked, err := sqlstore.Column[int64](ctx, tx, d.q(`SELECT id FROM {t} WHERE `+where+` ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`), r.cfg.batch)
	if err != nil || len(locked) == 0 {
		return nil, err
	}
	ids := sqlstore.Args(locked)
	args := append([]any{token, lease}, ids...)
	if _, err := tx.ExecContext(ctx, d.q(`UPDATE {t} SET locked_by = ?, locked_until = `+now+` + ?, attempts = attempts + 1
		WHERE id IN (`+sqlstore.Marks(len(ids))+`)`), args...); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, d.q(`SELECT `+returning+` FROM {t} WHERE id IN (`+sqlstore.Marks(len(ids))+`)`), ids...)
	if err != nil {
		return nil, err
	}
	batch, err := scanClaimed(rows)
	if err != nil {
		return nil, err
	}
	return batch, tx.Commit()
}

// decodeHeaders sets m's headers from their column, JSON or NULL.
func decodeHeaders(m *Message, col sql.NullString) error {
	if !col.Valid || col.String == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(col.String), &m.Headers); err != nil {
		return fmt.Errorf("outbox: message %s: headers: %w", m.ID, err)
	}
	return nil
}

func scanClaimed(rows *sql.Rows) ([]claimed, error) {
	defer rows.Close()
	var batch []claimed
	for rows.Next() {
		var (
			c       claimed
			headers sql.NullString
		)
		if err := rows.Scan(&c.id, &c.msg.ID, &c.msg.Topic, &c.msg.Key, &c.msg.Payload, &headers, &c.msg.Attempts); err != nil {
			return nil, err
		}
		if err := decodeHeaders(&c.msg, headers); err != nil {
			return nil, err
		}
		batch = append(batch, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(batch, func(a, b claimed) int { return cmp.Compare(a.id, b.id) })
	return batch, nil
}

// ack deletes (or, with a retention, marks published) the messages ids for
// which the fence still holds, and returns how many it did.
func (r *Relay) ack(ctx context.Context, ids []int64, fence string, fenceArgs ...any) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := append(sqlstore.Args(ids), fenceArgs...)
	in := "id IN (" + sqlstore.Marks(len(ids)) + ") AND " + fence
	query := "DELETE FROM {t} WHERE " + in
	if r.cfg.retention > 0 {
		query = "UPDATE {t} SET status = 1, published_at = " + r.d.flavor.NowMicros() +
			", locked_by = NULL, locked_until = NULL WHERE " + in
	}
	res, err := r.db.ExecContext(ctx, r.d.q(query), args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// nack puts a message that failed on attempt c.msg.Attempts back, to be
// tried again after wait, with its error, or marks it dead after the last
// attempt; it reports whether it died.
func (r *Relay) nack(ctx context.Context, c claimed, cause error, wait time.Duration, fence string, fenceArgs ...any) (bool, error) {
	msg := sqlstore.Text(cause.Error())
	attempts := c.msg.Attempts
	isDead := attempts >= r.cfg.maxAttempts
	status := 0
	if isDead {
		status = 2
	}
	args := append([]any{wait.Microseconds(), msg, status, attempts, c.id}, fenceArgs...)
	res, err := r.db.ExecContext(ctx, r.d.q(`UPDATE {t} SET locked_by = NULL, locked_until = NULL, available_at = `+
		r.d.flavor.NowMicros()+` + ?, last_error = ?, status = ?, attempts = ? WHERE id = ? AND `+fence), args...)
	if err != nil {
		return false, err
	}
	// A relay that no longer holds the message changed nothing: it is
	// another's to count.
	n, err := res.RowsAffected()
	return isDead && n == 1, err
}

// backoff returns the wait before the next attempt after attempts failed:
// full jitter below base·2^(attempts-1), capped.
func (r *Relay) backoff(attempts int) time.Duration {
	ceiling := r.cfg.backoffMax
	if shift := max(attempts-1, 0); shift < 62 && r.cfg.backoffBase <= r.cfg.backoffMax>>shift {
		ceiling = r.cfg.backoffBase << shift
	}
	return time.Duration(mrand.Int64N(int64(ceiling)) + 1)
}

// Sweep deletes, in one batch of at most 1000, published messages older
// than the retention, and returns how many it deleted. Run sweeps when it
// is idle.
func (r *Relay) Sweep(ctx context.Context) (int64, error) {
	if r.cfg.retention <= 0 {
		return 0, nil
	}
	cutoff := r.d.flavor.NowMicros() + " - ?"
	query := r.d.flavor.DeleteFirst("{t}", "id", "status = 1 AND published_at < "+cutoff, "id", 1000)
	res, err := r.db.ExecContext(ctx, r.d.q(query), r.cfg.retention.Microseconds())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
