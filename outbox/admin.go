package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// DeadMessage is a message the relay gave up on; see [Outbox.ListDead].
type DeadMessage struct {
	Message
	// LastError is the error of its last attempt.
	LastError string
	// CreatedAt is when it was enqueued, on the database's clock.
	CreatedAt time.Time
}

// ListDead returns up to limit dead messages, oldest first. It returns an
// error for a limit below 1.
func (o *Outbox) ListDead(ctx context.Context, limit int) ([]DeadMessage, error) {
	if limit < 1 {
		return nil, fmt.Errorf("outbox: ListDead(%d): want limit >= 1", limit)
	}
	rows, err := o.db.QueryContext(ctx, o.d.q(`SELECT `+messageColumns+`, last_error, created_at
		FROM {t} WHERE status = 2 ORDER BY id LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: list dead: %w", err)
	}
	defer rows.Close()
	var dead []DeadMessage
	for rows.Next() {
		var (
			m         DeadMessage
			lastError sql.NullString
			created   int64
		)
		if err := scanMessage(rows, &m.Message, &lastError, &created); err != nil {
			return nil, fmt.Errorf("outbox: list dead: %w", err)
		}
		m.LastError, m.CreatedAt = lastError.String, time.UnixMicro(created)
		dead = append(dead, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: list dead: %w", err)
	}
	return dead, nil
}

// Retry makes the dead messages with the given IDs pending again, with their
// attempts reset, and unblocks their lanes; it returns how many it revived.
func (o *Outbox) Retry(ctx context.Context, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := sqlstore.Args(ids)
	in := "message_id IN (" + sqlstore.Marks(len(ids)) + ")"
	if _, err := o.db.ExecContext(ctx, o.d.q(`UPDATE {t}_lanes SET blocked_until = 0 WHERE lane IN
		(SELECT lane FROM {t} WHERE status = 2 AND lane IS NOT NULL AND `+in+`)`), args...); err != nil {
		return 0, fmt.Errorf("outbox: retry: %w", err)
	}
	res, err := o.db.ExecContext(ctx, o.d.q(`UPDATE {t} SET status = 0, attempts = 0, available_at = `+o.d.now()+`,
		locked_by = NULL, locked_until = NULL WHERE status = 2 AND `+in), args...)
	if err != nil {
		return 0, fmt.Errorf("outbox: retry: %w", err)
	}
	return res.RowsAffected()
}

// Discard deletes the messages with the given IDs that are not yet
// published, dead or pending (a poison message that holds up its lane in
// ordered mode, say), and returns how many it deleted.
func (o *Outbox) Discard(ctx context.Context, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := sqlstore.Args(ids)
	in := "message_id IN (" + sqlstore.Marks(len(ids)) + ")"
	// The lanes of the messages discarded wait no more for their backoff.
	if _, err := o.db.ExecContext(ctx, o.d.q(`UPDATE {t}_lanes SET blocked_until = 0 WHERE lane IN
		(SELECT lane FROM {t} WHERE status <> 1 AND lane IS NOT NULL AND `+in+`)`), args...); err != nil {
		return 0, fmt.Errorf("outbox: discard: %w", err)
	}
	res, err := o.db.ExecContext(ctx, o.d.q(`DELETE FROM {t} WHERE status <> 1 AND `+in), args...)
	if err != nil {
		return 0, fmt.Errorf("outbox: discard: %w", err)
	}
	return res.RowsAffected()
}

// Backlog describes what an outbox holds.
type Backlog struct {
	// Pending counts the messages not yet published; Dead, those given up on.
	Pending, Dead int64
	// OldestPending is how long the oldest pending message has waited, on
	// the database's clock; zero when nothing is pending.
	OldestPending time.Duration
}

// Backlog returns what the outbox holds: what a dashboard or an alert on a
// stuck relay watches.
func (o *Outbox) Backlog(ctx context.Context) (Backlog, error) {
	var (
		b      Backlog
		oldest sql.NullInt64
		now    int64
	)
	err := o.db.QueryRowContext(ctx, o.d.q(`SELECT
		COALESCE(SUM(CASE WHEN status = 0 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 2 THEN 1 ELSE 0 END), 0),
		MIN(CASE WHEN status = 0 THEN created_at END),
		`+o.d.now()+` FROM {t} WHERE status <> 1`)).Scan(&b.Pending, &b.Dead, &oldest, &now)
	if err != nil {
		return b, fmt.Errorf("outbox: backlog: %w", err)
	}
	if oldest.Valid {
		b.OldestPending = time.Duration(max(now-oldest.Int64, 0)) * time.Microsecond
	}
	return b, nil
}
