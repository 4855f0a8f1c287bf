package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Ordered mode. Each keyed message carries its lane, hash(key) mod Lanes; a
// relay owns a lane through a lease in the lanes table and publishes the
// lane's messages one at a time in id order. A lane stops at its first
// failure (for a backoff) and at a dead message (until an operator acts).
// Relays share the lanes: each announces itself in the relays table on every
// pass, takes at most its share of the lanes that no live relay owns, and
// gives back what it holds beyond its share.
//
// A relay publishes a message of a lane only while it knows that it holds
// the lane for longer than the publish can take: it keeps, per lane, the
// time on its own clock until which the lease surely holds (the lease
// counted from before the statement that set it), and renews the lease under
// the fence (the lane's owner is still this relay) before a publish that
// could end within a margin of that time. A pass ends once it has published
// for a third of the lease, so that every lease is renewed, and the lanes
// rebalanced, that often; the next pass starts at the lane after the last
// one this pass reached.

// heldLane is a lane the relay owns, and the time on this process's clock
// until which it surely holds the lane's lease.
type heldLane struct {
	lane  int
	until time.Time
}

// pass is what an ordered pass needs to know of itself.
type pass struct {
	end       time.Time // publishing after this ends the pass
	published int       // messages handed to the Publisher
	over      bool      // the pass ended early
}

// errLaneLost is how holdLane reports that another relay owns the lane.
var errLaneLost = errors.New("outbox: lane taken over by another relay")

// processLanes announces the relay, renews and balances its lanes, and
// publishes a batch of each that is not blocked, starting at the lane after
// the last one the previous pass reached, until the pass has published for
// a third of the lease.
func (r *Relay) processLanes(ctx context.Context) (int, error) {
	start := time.Now()
	lanes, err := r.leaseLanes(ctx)
	if err != nil {
		return 0, err
	}
	first, _ := slices.BinarySearchFunc(lanes, r.nextLane, func(h heldLane, lane int) int { return h.lane - lane })
	lanes = append(lanes[first:], lanes[:first]...)
	p := pass{end: start.Add(r.cfg.lease / 3)}
	total := 0
	for i := range lanes {
		n, err := r.processLane(ctx, &lanes[i], &p)
		total += n
		r.nextLane = lanes[i].lane + 1
		if err != nil || p.over || ctx.Err() != nil {
			return total, err
		}
	}
	return total, nil
}

// leaseLanes announces the relay, renews its lanes, takes or gives back
// lanes toward its share, and returns the lanes it owns that are not
// blocked, in lane order.
func (r *Relay) leaseLanes(ctx context.Context) ([]heldLane, error) {
	d, now := r.d, r.d.now()
	lease := r.cfg.lease.Microseconds()
	until := time.Now().Add(r.cfg.lease) // the leases set below last at least this long
	if _, err := r.exec(ctx, d.q(d.db.sql.Upsert("{t}_relays", []string{"relay", "seen_until"}, "?, "+now+" + ?",
		"relay", "seen_until")), r.id, lease); err != nil {
		return nil, err
	}
	if _, err := r.exec(ctx, d.q(`UPDATE {t}_lanes SET lease_until = `+now+` + ? WHERE owner = ?`), lease, r.id); err != nil {
		return nil, err
	}
	var all, live int
	if err := r.db.QueryRowContext(ctx, d.q(`SELECT COUNT(*), COUNT(CASE WHEN seen_until > `+now+` THEN 1 END)
		FROM {t}_relays`)).Scan(&all, &live); err != nil {
		return nil, err
	}
	if all > live { // relays that stopped without a word
		if _, err := r.exec(ctx, d.q(`DELETE FROM {t}_relays WHERE seen_until <= `+now)); err != nil {
			return nil, err
		}
	}
	live = max(live, 1) // this relay, even if its announcement is already out of date
	share := (Lanes + live - 1) / live
	mine, err := r.ownedLanes(ctx)
	if err != nil {
		return nil, err
	}
	if extra := len(mine) - share; extra > 0 {
		for _, l := range mine[len(mine)-extra:] {
			if _, err := r.exec(ctx, d.q(`UPDATE {t}_lanes SET owner = NULL, lease_until = 0 WHERE lane = ? AND owner = ?`), l.lane, r.id); err != nil {
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
			res, err := r.exec(ctx, d.q(`UPDATE {t}_lanes SET owner = ?, lease_until = `+now+` + ?
				WHERE lane = ? AND (owner IS NULL OR lease_until < `+now+`)`), r.id, lease, l)
			if err != nil {
				return nil, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				mine = append(mine, ownedLane{lane: l, ready: true})
			}
		}
	}
	var ready []heldLane
	for _, l := range mine {
		if l.ready {
			ready = append(ready, heldLane{lane: l.lane, until: until})
		}
	}
	slices.SortFunc(ready, func(a, b heldLane) int { return a.lane - b.lane })
	return ready, nil
}

type ownedLane struct {
	lane  int
	ready bool // not blocked by a backoff when the relay looked
}

func (r *Relay) ownedLanes(ctx context.Context) ([]ownedLane, error) {
	rows, err := r.db.QueryContext(ctx, r.d.q(`SELECT lane, blocked_until <= `+r.d.now()+`
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

// margin is what a relay keeps in hand when it decides whether it holds a
// lease long enough for a publish: time for the statements that follow the
// publish, and for clocks that run at slightly different rates.
func (r *Relay) margin() time.Duration { return r.cfg.lease / 10 }

// holdLane makes sure that the relay holds h's lease for a publish that
// starts now and ends at the publish timeout, with the margin to spare: when
// the time it knows of is shorter, it renews the lease, under the fence, and
// returns errLaneLost if another relay took the lane.
func (r *Relay) holdLane(ctx context.Context, h *heldLane) error {
	need := r.cfg.publishTimeout + r.margin()
	if time.Until(h.until) > need {
		return nil
	}
	ctx, cancel := r.detached(ctx) // a renewal, like a publish, finishes while the relay stops
	defer cancel()
	start := time.Now()
	res, err := r.exec(ctx, r.d.q(`UPDATE {t}_lanes SET lease_until = `+r.d.now()+` + ?
		WHERE lane = ? AND owner = ?`), r.cfg.lease.Microseconds(), h.lane, r.id)
	if err != nil {
		return fmt.Errorf("outbox: renew lane %d: %w", h.lane, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("outbox: renew lane %d: %w", h.lane, err)
	} else if n == 0 {
		return errLaneLost
	}
	h.until = start.Add(r.cfg.lease)
	if took := time.Since(start); time.Until(h.until) <= need {
		return fmt.Errorf("outbox: renewing lane %d took %v of a %v lease", h.lane, took, r.cfg.lease)
	}
	return nil
}

// releaseLanes gives back the relay's lanes as it stops, and withdraws its
// announcement.
func (r *Relay) releaseLanes() {
	if !r.cfg.ordered {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	_, err := r.exec(ctx, r.d.q(`UPDATE {t}_lanes SET owner = NULL, lease_until = 0 WHERE owner = ?`), r.id)
	if err == nil {
		_, err = r.exec(ctx, r.d.q(`DELETE FROM {t}_relays WHERE relay = ?`), r.id)
	}
	if err != nil {
		r.emit(ctx, Event{Kind: Error, Err: fmt.Errorf("outbox: release lanes: %w", err)}, 0)
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
// time while it holds the lane, and acknowledges those published while it
// still owns the lane.
func (r *Relay) processLane(ctx context.Context, h *heldLane, p *pass) (int, error) {
	start := time.Now()
	lane := h.lane
	rows, err := r.readLane(ctx, lane)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	fence := laneFence(lane, r.id)
	var (
		done     []int64
		failErr  error
		isDead   bool
		failures int
		holdErr  error
	)
	for _, row := range rows {
		if row.status == 2 || row.availableAt > row.now || ctx.Err() != nil {
			break // a dead head, a message not yet due, or time to stop
		}
		if p.published > 0 && time.Now().After(p.end) {
			p.over = true
			break
		}
		if holdErr = r.holdLane(ctx, h); holdErr != nil {
			break
		}
		row.msg.Attempts++ // this attempt; a lane counts attempts as it makes them
		pctx, cancel := r.detached(ctx)
		errs := r.pub.Publish(pctx, []Message{row.msg})
		cancel()
		p.published++
		if errs == nil || errs[0] == nil {
			done = append(done, row.id)
			continue
		}
		failErr, failures = errs[0], 1
		// The writes after the publishes get a time of their own.
		actx, cancel := r.settling(ctx)
		wait := r.backoff(row.msg.Attempts) // the lane waits with its message
		isDead, err = r.nack(actx, row.claimed, failErr, wait, fence)
		if err == nil {
			_, err = r.exec(actx, r.d.q(`UPDATE {t}_lanes SET blocked_until = `+r.d.now()+` + ? WHERE lane = ? AND owner = ?`),
				wait.Microseconds(), lane, r.id)
		}
		cancel()
		if err != nil {
			return 0, err
		}
		break
	}
	actx, cancel := r.settling(ctx)
	defer cancel()
	acked, err := r.ack(actx, done, fence)
	if err != nil {
		return 0, err
	}
	dead := 0
	if isDead {
		dead = 1
	}
	r.report(ctx, start, acked, len(done), failures, dead, failErr)
	if errors.Is(holdErr, errLaneLost) {
		holdErr = nil // the lane is another's; the others go on
	}
	return acked, holdErr
}

// readLane reads the head of a lane in id order: messages not yet published,
// and only those that no message of a lower id can still join (see the
// databases' laneGuard).
func (r *Relay) readLane(ctx context.Context, lane int) ([]laneRow, error) {
	d, now := r.d, r.d.now()
	guard, args := d.db.laneGuard(r.cfg.gapGrace)
	args = append([]any{lane}, args...)
	args = append(args, r.cfg.batch)
	rows, err := r.db.QueryContext(ctx, d.q(`SELECT `+messageColumns+`, id, status, available_at, `+now+`
		FROM {t} WHERE lane = ? AND status <> 1 AND `+guard+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []laneRow
	for rows.Next() {
		var lr laneRow
		if err := scanMessage(rows, &lr.msg, &lr.id, &lr.status, &lr.availableAt, &lr.now); err != nil {
			return nil, err
		}
		out = append(out, lr)
	}
	return out, rows.Err()
}
