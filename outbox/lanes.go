package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Ordered mode. Each keyed message carries its lane, hash(key) mod Lanes; a
// relay owns a lane through a lease in the lanes table, renewed on every
// pass, and publishes the lane's messages one at a time in id order. A lane
// stops at its first failure (for a backoff) and at a dead message (until an
// operator acts). Relays share the lanes: each takes at most its share of
// those not owned by a live relay, and gives back what it holds beyond it.

// processLanes renews and balances the relay's lanes and publishes a batch
// of each that is not blocked.
func (r *Relay) processLanes(ctx context.Context) (int, error) {
	lanes, err := r.leaseLanes(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, lane := range lanes {
		n, err := r.processLane(ctx, lane)
		total += n
		if err != nil || ctx.Err() != nil {
			return total, err
		}
	}
	return total, nil
}

// leaseLanes renews the relay's lanes, takes or gives back lanes toward its
// share, and returns the lanes it owns that are not blocked.
func (r *Relay) leaseLanes(ctx context.Context) ([]int, error) {
	d, now := r.d, r.d.flavor.NowMicros()
	lease := r.cfg.lease.Microseconds()
	if _, err := r.db.ExecContext(ctx, d.q(`UPDATE {t}_lanes SET lease_until = `+now+` + ? WHERE owner = ?`), lease, r.id); err != nil {
		return nil, err
	}
	var others int
	if err := r.db.QueryRowContext(ctx, d.q(`SELECT COUNT(DISTINCT owner) FROM {t}_lanes
		WHERE owner IS NOT NULL AND owner <> ? AND lease_until > `+now), r.id).Scan(&others); err != nil {
		return nil, err
	}
	share := (Lanes + others) / (others + 1) // ceil(Lanes / relays)
	mine, err := r.ownedLanes(ctx)
	if err != nil {
		return nil, err
	}
	if extra := len(mine) - share; extra > 0 {
		for _, l := range mine[len(mine)-extra:] {
			if _, err := r.db.ExecContext(ctx, d.q(`UPDATE {t}_lanes SET owner = NULL, lease_until = 0 WHERE lane = ? AND owner = ?`), l.lane, r.id); err != nil {
				return nil, err
			}
		}
		mine = mine[:len(mine)-extra]
	}
	if want := share - len(mine); want > 0 {
		free, err := sqlstore.Column[int](ctx, r.db, d.q(`SELECT lane FROM {t}_lanes WHERE owner IS NULL OR lease_until < `+now+` ORDER BY lane LIMIT ?`), want)
		if err != nil {
			return nil, err
		}
		for _, l := range free {
			res, err := r.db.ExecContext(ctx, d.q(`UPDATE {t}_lanes SET owner = ?, lease_until = `+now+` + ?
				WHERE lane = ? AND (owner IS NULL OR lease_until < `+now+`)`), r.id, lease, l)
			if err != nil {
				return nil, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				mine = append(mine, ownedLane{lane: l, ready: true})
			}
		}
	}
	var ready []int
	for _, l := range mine {
		if l.ready {
			ready = append(ready, l.lane)
		}
	}
	return ready, nil
}

type ownedLane struct {
	lane  int
	ready bool // not blocked by a backoff when the relay looked
}

func (r *Relay) ownedLanes(ctx context.Context) ([]ownedLane, error) {
	rows, err := r.db.QueryContext(ctx, r.d.q(`SELECT lane, blocked_until <= `+r.d.flavor.NowMicros()+`
		FROM {t}_lanes WHERE owner = ? ORDER BY lane`), r.id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lanes []ownedLane
	for rows.Next() {
		var l ownedLane
		if err := rows.Scan(&l.lane, &l.ready); err != nil {
			return nil, err
		}
		lanes = append(lanes, l)
	}
	return lanes, rows.Err()
}

// releaseLanes gives back the relay's lanes as it stops.
func (r *Relay) releaseLanes() {
	if !r.cfg.ordered {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.db.ExecContext(ctx, r.d.q(`UPDATE {t}_lanes SET owner = NULL, lease_until = 0 WHERE owner = ?`), r.id)
	if err != nil {
		r.emit(Event{Kind: Error, Err: fmt.Errorf("outbox: release lanes: %w", err)})
	}
}

// laneRow is a message of a lane, as read for ordered publishing.
type laneRow struct {
	claimed
	status      int
	availableAt int64
	now         int64
}

// processLane publishes the head of a lane the relay owns, one message at a
// time, and acknowledges those published while it still owns the lane.
func (r *Relay) processLane(ctx context.Context, lane int) (int, error) {
	rows, err := r.readLane(ctx, lane)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	fence := "lane = ? AND EXISTS (SELECT 1 FROM {t}_lanes WHERE lane = ? AND owner = ? AND lease_until > " + r.d.flavor.NowMicros() + ")"
	deadline := time.Now().Add(r.cfg.lease / 2) // stop well inside the lease
	var (
		done     []int64
		failErr  error
		isDead   bool
		failures int
	)
	for _, row := range rows {
		if row.status == 2 || row.availableAt > row.now || ctx.Err() != nil || time.Now().After(deadline) {
			break // a dead head, a message not yet due, or time to stop
		}
		row.msg.Attempts++ // this attempt; a lane counts attempts as it makes them
		pctx, cancel := r.detached(ctx)
		errs := r.pub.Publish(pctx, []Message{row.msg})
		cancel()
		if errs == nil || errs[0] == nil {
			done = append(done, row.id)
			continue
		}
		failErr, failures = errs[0], 1
		// The writes after the publishes get a time of their own: the
		// publishes may have used up theirs.
		actx, cancel := r.detached(ctx)
		wait := r.backoff(row.msg.Attempts) // the lane waits with its message
		isDead, err = r.nack(actx, row.claimed, failErr, wait, fence, lane, lane, r.id)
		if err == nil {
			_, err = r.db.ExecContext(actx, r.d.q(`UPDATE {t}_lanes SET blocked_until = `+r.d.flavor.NowMicros()+` + ? WHERE lane = ? AND owner = ?`),
				wait.Microseconds(), lane, r.id)
		}
		cancel()
		if err != nil {
			return 0, err
		}
		break
	}
	actx, cancel := r.detached(ctx)
	defer cancel()
	acked, err := r.ack(actx, done, fence, lane, lane, r.id)
	if err != nil {
		return 0, err
	}
	dead := 0
	if isDead {
		dead = 1
	}
	r.report(acked, len(done), failures, dead, failErr)
	return acked, nil
}

// readLane reads the head of a lane in id order: messages not yet published,
// and only those that no message of a lower id can still join. On
// PostgreSQL those are the messages of transactions older than every
// transaction still running (the snapshot's xmin); on MySQL, the messages
// older than the gap grace period; on SQLite, whose writes are serial, all.
func (r *Relay) readLane(ctx context.Context, lane int) ([]laneRow, error) {
	d, now := r.d, r.d.flavor.NowMicros()
	where := "lane = ? AND status <> 1"
	args := []any{lane}
	switch d.flavor {
	case sqlstore.Postgres:
		where += " AND txid < pg_snapshot_xmin(pg_current_snapshot())"
	case sqlstore.MySQL:
		where += " AND created_at <= " + now + " - ?"
		args = append(args, r.cfg.gapGrace.Microseconds())
	}
	args = append(args, r.cfg.batch)
	rows, err := r.db.QueryContext(ctx, d.q(`SELECT `+returning+`, status, available_at, `+now+`
		FROM {t} WHERE `+where+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []laneRow
	for rows.Next() {
		var (
			lr      laneRow
			headers sql.NullString
		)
		if err := rows.Scan(&lr.id, &lr.msg.ID, &lr.msg.Topic, &lr.msg.Key, &lr.msg.Payload, &headers, &lr.msg.Attempts,
			&lr.status, &lr.availableAt, &lr.now); err != nil {
			return nil, err
		}
		if err := decodeHeaders(&lr.msg, headers); err != nil {
			return nil, err
		}
		out = append(out, lr)
	}
	return out, rows.Err()
}
