package saga

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// claim is one durable coordinator's claim of one instance, under a token
// of its own, and the instance's journal while the coordinator drives it:
// every write is fenced by the token, and changes nothing unless the
// instance's owner is still that token. It holds the instance's lease
// while the engine drives it: it renews it, and admits a step call only
// while the lease, as the database last confirmed it, has enough left.
type claim struct {
	s     *durable
	id    string
	token string
	// leaseEnd is when the lease runs out, as the database last confirmed
	// it (see confirmLease), in nanoseconds since epoch on the monotonic
	// clock. The journal writes it, from the driving goroutine and the
	// renewals'.
	leaseEnd atomic.Int64
	released bool // the lease was given up: written by the driving goroutine only

	// Set by hold.
	// lost is closed when the lease is lost, and when the drive ends.
	lost <-chan struct{}
	// lose gives the instance up for lost: it cancels, with cause
	// ErrLeaseLost, the ctx of the journal's writes and the compensations,
	// and that of the forward steps, at once.
	lose func()

	mu       sync.Mutex
	stopped  bool        // the drive ended: no renewal is scheduled again
	renewal  *time.Timer // the next renewal
	renewing sync.WaitGroup
}

func (s *durable) newClaim(id string) *claim {
	return &claim{s: s, id: id, token: s.token()}
}

// epoch is the origin of the times kept in atomics, such as a claim's
// leaseEnd: nanoseconds since it, on the monotonic clock (see sinceEpoch).
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// confirmLease records that a statement sent at sent (sinceEpoch, read just
// before the statement went out) set the instance's lease_until to the
// database's now plus lease, and committed. The database's now came after
// sent, so the lease runs at least until sent+lease; of two confirmations
// the later end counts, whatever order they arrive in.
func (cl *claim) confirmLease(sent int64, lease time.Duration) {
	end := sent + int64(lease)
	for {
		old := cl.leaseEnd.Load()
		if end <= old || cl.leaseEnd.CompareAndSwap(old, end) {
			return
		}
	}
}

// leaseLeft returns how long the lease still runs, as the database last
// confirmed it: negative once it has run out.
func (cl *claim) leaseLeft() time.Duration {
	return time.Duration(cl.leaseEnd.Load() - sinceEpoch())
}

// hold keeps the lease while the engine drives the instance: it renews it
// every third of the lease, and returns the ctx of the forward steps
// (cancelled by ctx or when the lease is lost) and that of the journal's
// writes and the compensations (cancelled only when the lease is lost, with
// cause ErrLeaseLost). The lease counts as lost when another coordinator
// took the instance, or when a renewal fails with less than a third of the
// lease left (see leaseLeft): by then renewals have failed for two thirds of
// it, and another may take it any moment. stop ends the renewals and
// releases the lease.
//
// Until stop, every step call first asks admit whether it may start.
func (cl *claim) hold(ctx context.Context) (fctx, lctx context.Context, stop func()) {
	lctx, loseJournal := context.WithCancelCause(context.WithoutCancel(ctx))
	fctx, cancelForward := context.WithCancelCause(ctx)
	cl.lost = lctx.Done()
	cl.lose = func() {
		loseJournal(ErrLeaseLost)
		cancelForward(ErrLeaseLost)
	}
	cl.mu.Lock()
	cl.renewal = time.AfterFunc(cl.s.lease/3, func() { cl.renew(lctx) })
	cl.mu.Unlock()
	return fctx, lctx, func() {
		cl.mu.Lock()
		cl.stopped = true
		cl.renewal.Stop()
		cl.mu.Unlock()
		cl.renewing.Wait()
		cancelForward(nil)
		cl.release(context.WithoutCancel(ctx))
		loseJournal(nil)
	}
}

// renew is the renewal that runs every third of the lease while the
// instance is held, and schedules the next.
func (cl *claim) renew(lctx context.Context) {
	cl.mu.Lock()
	if cl.stopped {
		cl.mu.Unlock()
		return
	}
	cl.renewing.Add(1)
	cl.mu.Unlock()
	defer cl.renewing.Done()
	lease := cl.s.lease
	// A renewal that takes longer than a third of the lease is as good as
	// failed.
	rctx, cancel := context.WithTimeout(lctx, lease/3)
	err := cl.extend(rctx)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		cl.lose()
		return
	default:
		cl.s.e.emit(lctx, Event{Kind: StoreError, SagaID: cl.id, Err: err})
		if cl.leaseLeft() < lease/3 {
			cl.lose()
			return
		}
	}
	cl.mu.Lock()
	if !cl.stopped {
		cl.renewal.Reset(lease / 3)
	}
	cl.mu.Unlock()
}

// leaseMargin is the part of the lease that a coordinator keeps in hand: it
// starts a call only while the lease, as the database last confirmed it, has
// more than this left. The margin covers what comes between that check and
// the participant's start of the call (a policy's bookkeeping, the way to
// the participant, a pause for garbage collection), a database clock that
// counts coarser than this machine's (milliseconds on SQLite) or runs a
// little faster, and small corrections of the database's time of day, on
// which leases are counted. A tenth of the lease: 3s of the default 30s,
// 100ms of the shortest lease.
func (cl *claim) leaseMargin() time.Duration { return cl.s.lease / 10 }

// admit returns nil if a step call may start now: while the lease has more
// than half of it left, at once, without a statement. With less, it first
// renews the lease; the renewal is fenced by the claim's token, so it
// succeeds only if no other coordinator took the instance, however long ago
// the lease ran out. When the renewal finds the instance taken, or fails
// with less than leaseMargin left, the coordinator cannot know that it still
// holds the lease: admit gives the instance up (lose), so that nothing more
// is called or written, and returns ErrLeaseLost, which is no failure of the
// step; recovery takes the instance over.
//
// The ctx of every call is cancelled by then: a policy that retries the call
// sees it done, and stops.
func (cl *claim) admit(ctx context.Context) error {
	select {
	case <-cl.lost:
		return ErrLeaseLost
	default:
	}
	left, lease := cl.leaseLeft(), cl.s.lease
	if left >= lease/2 {
		return nil
	}
	margin := cl.leaseMargin()
	// The renewal has until only the margin is left (at least the margin,
	// for a lease that has run out already): a renewal that has not
	// succeeded by then leaves the coordinator unable to start the call.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(left-margin, margin))
	err := cl.extend(rctx)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		cl.lose()
		return ErrLeaseLost
	default:
		cl.s.e.emit(ctx, Event{Kind: StoreError, SagaID: cl.id, Err: err})
		if cl.leaseLeft() < margin {
			cl.lose()
			return ErrLeaseLost
		}
	}
	select {
	case <-cl.lost:
		return ErrLeaseLost
	default:
		return nil
	}
}

// extend extends the lease, if the coordinator still holds it: ErrLeaseLost
// if another took the instance over.
func (cl *claim) extend(ctx context.Context) error {
	s := cl.s
	sent := sinceEpoch()
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE {p}_instances SET lease_until = `+s.d.db.sql.Now+` + ?
		WHERE id = ? AND owner = ?`), s.lease.Microseconds(), cl.id, cl.token)
	if err := fenced(rowsChanged(res, err)); err != nil {
		return err
	}
	cl.confirmLease(sent, s.lease)
	return nil
}

// leaseErr turns the error of a write made after the lease was lost into
// ErrLeaseLost.
func leaseErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), ErrLeaseLost) {
		return ErrLeaseLost
	}
	return err
}

func (cl *claim) commit(ctx context.Context, in *instance, writes []write) error {
	s := cl.s
	cause := ""
	if in.cause != nil {
		cause = sqlstore.Text(in.cause.Error())
	}
	// An instance that ends gives up its lease in the same write.
	end := in.status == Succeeded || in.status == Compensated
	k, args := commitLive, []any{int(in.status), in.failed, cause, s.lease.Microseconds(), in.id, cl.token}
	if end {
		k, args[3] = commitEnd, int64(ended)
	}
	sent := sinceEpoch()
	if err := fenced(s.record(ctx, in, k, args, writes)); err != nil {
		return leaseErr(ctx, err)
	}
	if !end {
		cl.confirmLease(sent, s.lease)
	}
	cl.released = end
	return nil
}

func (cl *claim) setback(ctx context.Context, in *instance, writes []write, wait time.Duration, lastErr string) error {
	k, next := setbackDue, any(wait.Microseconds())
	if in.status == Stuck {
		k, next = setbackStuck, int64(ended)
	}
	args := []any{int(in.status), int(in.resume), in.attempts, next, sqlstore.Text(lastErr), in.id, cl.token}
	if err := fenced(cl.s.record(ctx, in, k, args, writes)); err != nil {
		return leaseErr(ctx, err)
	}
	cl.released = true
	return nil
}

// release gives up the lease of an instance the coordinator stops driving,
// unless its last write gave it up.
func (cl *claim) release(ctx context.Context) {
	if cl.released {
		return
	}
	cl.released = true
	cl.s.releaseClaim(ctx, cl.token, []string{cl.id})
}
