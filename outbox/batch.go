package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

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

// settling returns the ctx of the writes that follow a publish, which ends
// after the lease (or giveBackTimeout, if that is longer), not with ctx:
// the writes are fenced, so they hold while nobody took the messages over,
// lease run out or not, and one that gives up early leaves published
// messages to be published again.
func (r *Relay) settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), max(r.cfg.lease, giveBackTimeout))
}

// report counts and reports the outcome of work that started at start:
// acked messages published and acknowledged out of published, failed that
// the Publisher refused, the first with err, and dead of those.
func (r *Relay) report(ctx context.Context, start time.Time, acked, published, failed, dead int, err error) {
	r.published.Add(int64(acked))
	r.failed.Add(int64(failed))
	r.dead.Add(int64(dead))
	took := time.Since(start)
	r.emit(ctx, Event{Kind: Published, Count: acked}, took)
	r.emit(ctx, Event{Kind: Stale, Count: published - acked}, took)
	r.emit(ctx, Event{Kind: Failed, Count: failed, Err: err}, took)
	r.emit(ctx, Event{Kind: Dead, Count: dead}, took)
}

// exec runs a statement that writes, in the relays' turn where the
// database has one writer.
func (r *Relay) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := r.o.takeTurn(ctx); err != nil {
		return nil, err
	}
	defer r.o.endTurn()
	return r.db.ExecContext(ctx, query, args...)
}

// claim takes a lease on up to a batch of available messages, oldest
// first.
func (r *Relay) claim(ctx context.Context, token string, keylessOnly bool) ([]claimed, error) {
	now := r.d.now()
	where := "status = 0 AND available_at <= " + now + " AND (locked_until IS NULL OR locked_until < " + now + ")"
	if keylessOnly {
		where += " AND lane IS NULL"
	}
	var batch []claimed
	if err := r.o.takeTurn(ctx); err != nil {
		return nil, err
	}
	defer r.o.endTurn()
	err := r.d.db.sql.Claim(ctx, r.db, sqlstore.Claim{
		Table: r.d.table, Key: "id",
		Set:     "locked_by = ?, locked_until = " + now + " + ?, attempts = attempts + 1",
		SetArgs: []any{token, r.cfg.lease.Microseconds()},
		Where:   where, OrderBy: "id", Limit: r.cfg.batch,
		Returning: messageColumns + ", id",
	}, func(rows *sql.Rows) error {
		var c claimed
		if err := scanMessage(rows, &c.msg, &c.id); err != nil {
			return err
		}
		batch = append(batch, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(batch, func(a, b claimed) int { return cmp.Compare(a.id, b.id) })
	return batch, nil
}

// messageColumns are the columns of a message as scanMessage reads them.
const messageColumns = "message_id, topic, msg_key, payload, headers, attempts"

// scanMessage reads a row of messageColumns, followed by the columns that
// extra points to, into m.
func scanMessage(rows *sql.Rows, m *Message, extra ...any) error {
	var headers sql.NullString
	dest := append([]any{&m.ID, &m.Topic, &m.Key, &m.Payload, &headers, &m.Attempts}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if !headers.Valid || headers.String == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(headers.String), &m.Headers); err != nil {
		return fmt.Errorf("outbox: message %s: headers: %w", m.ID, err)
	}
	return nil
}

// fence is the condition under which a relay may still change a message it
// holds: the token of its claim (unordered mode), or its lane's owner
// (ordered mode). Make one with claimFence or laneFence.
type fence struct {
	cond string
	args []any
	// claim: every message that holds cond is one the claim took, so an
	// acknowledgement may select them by a range of ids.
	claim bool
}

// claimFence holds while the claim token still holds the message: another
// claim, once the lease ran out, takes it for its own token.
func claimFence(token string) fence { return fence{"locked_by = ?", []any{token}, true} }

// laneFence holds while the relay owner still owns the message's lane,
// lease run out or not: a lane is another relay's once it took it, and no
// other relay publishes it while this one is its owner.
func laneFence(lane int, owner string) fence {
	return fence{"lane = ? AND EXISTS (SELECT 1 FROM {t}_lanes WHERE lane = ? AND owner = ?)", []any{lane, lane, owner}, false}
}

// selecting returns the condition, with its arguments, that selects the
// messages ids under f. Under a claim's fence the messages still held are
// exactly those the claim took and did not put back, so the range of ids
// selects them through the primary key with three arguments; in a lane, a
// message of an id in the range may have appeared after the lane was read,
// so the ids are listed.
func (f fence) selecting(ids []int64) (string, []any) {
	if f.claim {
		lo, hi := slices.Min(ids), slices.Max(ids)
		return "id BETWEEN ? AND ? AND " + f.cond, append([]any{lo, hi}, f.args...)
	}
	return "id IN (" + sqlstore.Marks(len(ids)) + ") AND " + f.cond, append(sqlstore.Args(ids), f.args...)
}

// giveBackTimeout bounds the statements by which a relay gives back what it
// will not publish: if they fail, the leases run out anyway.
const giveBackTimeout = 5 * time.Second

// unclaim gives back a batch that the relay claimed as token and did not
// publish, its attempt uncounted.
func (r *Relay) unclaim(ctx context.Context, batch []claimed, token string) error {
	ids := make([]any, len(batch))
	for i, c := range batch {
		ids[i] = c.id
	}
	_, err := r.exec(ctx, r.d.q(`UPDATE {t} SET locked_by = NULL, locked_until = NULL, attempts = attempts - 1
		WHERE id IN (`+sqlstore.Marks(len(ids))+`) AND locked_by = ?`), append(ids, token)...)
	return err
}

// ack deletes (or, with a retention, marks published) the messages ids for
// which the fence still holds, and returns how many it did. Under a claim's
// fence, the messages of the claim that failed must have been put back
// first (nack).
func (r *Relay) ack(ctx context.Context, ids []int64, f fence) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	in, args := f.selecting(ids)
	query := "DELETE FROM {t} WHERE " + in
	if r.cfg.retention > 0 {
		query = "UPDATE {t} SET status = 1, published_at = " + r.d.now() +
			", locked_by = NULL, locked_until = NULL WHERE " + in
	}
	res, err := r.exec(ctx, r.d.q(query), args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// nack puts a message that failed on attempt c.msg.Attempts back, to be
// tried again after wait, with its error, or marks it dead after the last
// attempt; it reports whether it died.
func (r *Relay) nack(ctx context.Context, c claimed, cause error, wait time.Duration, f fence) (bool, error) {
	msg := sqlstore.Text(cause.Error())
	attempts := c.msg.Attempts
	isDead := attempts >= r.cfg.maxAttempts
	status := 0
	if isDead {
		status = 2
	}
	args := append([]any{wait.Microseconds(), msg, status, attempts, c.id}, f.args...)
	res, err := r.exec(ctx, r.d.q(`UPDATE {t} SET locked_by = NULL, locked_until = NULL, available_at = `+
		r.d.now()+` + ?, last_error = ?, status = ?, attempts = ? WHERE id = ? AND `+f.cond), args...)
	if err != nil {
		return false, err
	}
	// A relay that no longer holds the message changed nothing: it is
	// another's to count.
	n, err := res.RowsAffected()
	return isDead && n == 1, err
}

// A batch is messages that the relay claimed at once, on their way through
// it: claimed (claimBatch), published (publishBatch), then acknowledged or
// put back (settleBatch).
type batch struct {
	token string
	start time.Time // taken before the claim: the lease lasts at least until start + lease
	msgs  []claimed
	errs  []error // the Publisher's answer: nil when it accepted every message
}

// processUnordered claims, publishes and settles one batch.
func (r *Relay) processUnordered(ctx context.Context, keylessOnly bool) (int, error) {
	b, err := r.claimBatch(ctx, keylessOnly)
	if err != nil || b == nil {
		return 0, err
	}
	published, err := r.publishBatch(ctx, b)
	if err != nil {
		return 0, err
	}
	if !published {
		return 0, fmt.Errorf("outbox: claiming %d messages took %v of a %v lease; put back unpublished",
			len(b.msgs), time.Since(b.start).Round(time.Millisecond), r.cfg.lease)
	}
	return r.settleBatch(ctx, b)
}

// claimBatch claims a batch of available messages (keyless ones only, if
// keylessOnly), or returns nil when none is available. A claim that has
// begun is not cut short by ctx, only after the lease and giveBackTimeout
// (a database that does not answer): one cut while its rows are read back
// would leave them claimed, for nobody, until the lease ends, where a slow
// claim that ends is put back at once (publishBatch).
func (r *Relay) claimBatch(ctx context.Context, keylessOnly bool) (*batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := &batch{token: r.id + ":" + strconv.FormatUint(r.seq.Add(1), 36), start: time.Now()}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.lease+giveBackTimeout)
	defer cancel()
	msgs, err := r.claim(cctx, b.token, keylessOnly)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	b.msgs = msgs
	return b, nil
}

// publishBatch hands b to the Publisher, if the lease the relay holds on it
// covers the publish timeout with the margin to spare, and reports whether
// it did: a batch it does not publish goes back at once, its attempt
// uncounted.
func (r *Relay) publishBatch(ctx context.Context, b *batch) (bool, error) {
	if r.cfg.lease-time.Since(b.start) <= r.cfg.publishTimeout+r.margin() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
		defer cancel()
		return false, r.unclaim(rctx, b.msgs, b.token)
	}
	msgs := make([]Message, len(b.msgs))
	for i := range b.msgs {
		msgs[i] = b.msgs[i].msg
	}
	pctx, cancel := r.detached(ctx)
	b.errs = r.pub.Publish(pctx, msgs)
	cancel()
	if b.errs != nil && len(b.errs) != len(msgs) {
		// Which were accepted is unknown: leave every message to its lease,
		// to be published again.
		return true, fmt.Errorf("outbox: Publisher returned %d errors for %d messages", len(b.errs), len(msgs))
	}
	return true, nil
}

// settleBatch acknowledges what the Publisher accepted of a published
// batch and puts back, with a backoff, what it refused; it returns how many
// messages it acknowledged.
func (r *Relay) settleBatch(ctx context.Context, b *batch) (int, error) {
	actx, cancel := r.settling(ctx)
	defer cancel()
	var done []int64
	var firstErr error
	failed, dead := 0, 0
	for i := range b.msgs {
		if b.errs == nil || b.errs[i] == nil {
			done = append(done, b.msgs[i].id)
			continue
		}
		if firstErr == nil {
			firstErr = b.errs[i]
		}
		failed++
		isDead, err := r.nack(actx, b.msgs[i], b.errs[i], r.backoff(b.msgs[i].msg.Attempts), claimFence(b.token))
		if err != nil {
			return 0, err
		}
		if isDead {
			dead++
		}
	}
	acked, err := r.ack(actx, done, claimFence(b.token))
	if err != nil {
		return 0, err
	}
	r.report(ctx, b.start, acked, len(done), failed, dead, firstErr)
	return acked, nil
}

// pipeline publishes batches in unordered mode until a claim finds nothing
// or ctx is done, and returns how many messages it acknowledged. While the
// Publisher has a batch, another goroutine acknowledges the batch before it
// and claims the one after it, so that the database and the broker work at
// once. A batch claimed ahead is published only if the lease it holds still
// covers the publish (see publishBatch); one that ctx's end leaves
// unpublished goes back at once.
func (r *Relay) pipeline(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.claimBatch(ctx, false)
	if err != nil || cur == nil {
		return 0, err
	}
	type ahead struct {
		next    *batch
		settled int
		err     error
	}
	total := 0
	var prev *batch // published, not yet settled
	for cur != nil {
		c := make(chan ahead, 1)
		go func(prev *batch) {
			var a ahead
			if prev != nil {
				a.settled, a.err = r.settleBatch(ctx, prev)
			}
			if a.err == nil && ctx.Err() == nil {
				a.next, a.err = r.claimBatch(ctx, false)
			}
			c <- a
		}(prev)
		published, perr := r.publishBatch(ctx, cur)
		a := <-c
		total += a.settled
		if perr != nil || a.err != nil || ctx.Err() != nil {
			if published && perr == nil {
				n, err := r.settleBatch(ctx, cur)
				total += n
				perr = cmp.Or(perr, err)
			}
			if a.next != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
				err := r.unclaim(rctx, a.next.msgs, a.next.token)
				cancel()
				perr = cmp.Or(perr, err)
			}
			return total, cmp.Or(perr, a.err)
		}
		prev = nil
		if published {
			prev = cur
		}
		cur = a.next
	}
	if prev != nil {
		n, err := r.settleBatch(ctx, prev)
		return total + n, err
	}
	return total, nil
}

// backoff returns the wait before the next attempt of a message after
// attempts failed: full jitter below base·2^(attempts-1), at most the
// maximum ([WithRetryBackoff]).
func (r *Relay) backoff(attempts int) time.Duration { return r.backoffs.Delay(attempts, 0) }
