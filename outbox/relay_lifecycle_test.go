package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/outbox"
)

// sqlOf returns the SQL dialect of a test database, for the queries the
// tests make themselves.
func sqlOf(db *servicetest.DB) *sqlstore.Dialect {
	return map[string]*sqlstore.Dialect{"postgres": sqlstore.Postgres, "mysql": sqlstore.MySQL, "sqlite": sqlstore.SQLite}[db.Dialect]
}

// dbNow reads the database's clock in microseconds, the clock of leases and
// backoffs.
func dbNow(t testing.TB, db *servicetest.DB) int64 {
	t.Helper()
	var now int64
	require.NoError(t, db.QueryRow("SELECT "+sqlOf(db).Now).Scan(&now))
	return now
}

// countingWaker counts its calls, each of which waits for its ctx.
type countingWaker struct{ calls atomic.Int64 }

func (w *countingWaker) Wait(ctx context.Context) error {
	w.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// NewRelay starts nothing: no goroutine (in a bubble, one still running
// when the bubble's function returns fails the test), no call to the
// Waker, no claim, however long one waits.
func TestNewRelayStartsNothing(t *testing.T) {
	db := servicetest.SQLite(t) // outside the bubble: database/sql runs goroutines of its own
	ob := outboxOf(t, db)
	enqueue(t, db.DB, ob, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t", Key: "k"})
	synctest.Test(t, func(t *testing.T) {
		w := &countingWaker{}
		pub := &memPublisher{}
		for _, opts := range [][]outbox.Option{
			nil,
			{outbox.WithOrdered(), outbox.WithWaker(w), outbox.WithRetention(time.Minute), outbox.WithPollInterval(time.Millisecond)},
		} {
			relay := ob.NewRelay(pub, opts...)
			time.Sleep(time.Hour) // virtual: many polls and sweeps, had anything started
			synctest.Wait()
			assert.Equal(t, outbox.Stats{}, relay.Stats())
		}
		assert.Zero(t, w.calls.Load(), "the Waker is called by Run only")
		assert.Empty(t, pub.ids(), "nothing was published")
	})
	assert.Equal(t, 2, count(t, ob), "nothing was claimed")
}

// gatePublisher accepts every message, but holds its first call: it hands
// that call's ctx to the test and waits for release, or for that ctx to
// end, then fails the batch with the error it got, if any.
type gatePublisher struct {
	memPublisher
	entered  chan context.Context
	release  chan error
	held     atomic.Bool
	returned atomic.Bool // the held call returned
}

func (p *gatePublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if !p.held.CompareAndSwap(false, true) {
		return p.memPublisher.Publish(ctx, msgs)
	}
	defer p.returned.Store(true)
	p.entered <- ctx
	var err error
	select {
	case err = <-p.release:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		return p.memPublisher.Publish(ctx, msgs)
	}
	errs := make([]error, len(msgs))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// Run, stopped while its Publisher holds a batch, does not cut the publish
// short: it returns only after Publish returns, having acknowledged what was
// published, or put back what failed (the publish timeout ended it), with
// no lease left behind, and its lanes given back. Another relay takes over
// at once, without waiting for a lease to run out.
func TestRunStopsAfterTheBatchInHand(t *testing.T) {
	tests := []struct {
		name     string
		ordered  bool
		timesOut bool // the held call runs into the publish timeout instead of being released
	}{
		{"unordered/released", false, false},
		{"unordered/timed out", false, true},
		{"ordered/released", true, false},
		{"ordered/timed out", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bg := context.Background()
				db := servicetest.SQLite(t)
				// A table of its own: no other test's Enqueue wakes this bubble's relay.
				d, err := outbox.SQLite.WithTable("stopping")
				require.NoError(t, err)
				ob := outbox.New(db.DB, d)
				require.NoError(t, ob.Migrate(bg))
				enqueue(t, db.DB, ob, outbox.Message{ID: "k:1", Topic: "t", Key: "k"}, outbox.Message{ID: "k:2", Topic: "t", Key: "k"})

				opts := []outbox.Option{outbox.WithRelayID("stopping"), outbox.WithLease(3 * time.Second),
					outbox.WithPublishTimeout(time.Second), outbox.WithRetryBackoff(time.Hour, time.Hour)}
				if tt.ordered {
					opts = append(opts, outbox.WithOrdered())
				}
				pub := &gatePublisher{entered: make(chan context.Context), release: make(chan error)}
				relay := ob.NewRelay(pub, opts...)
				ctx, cancel := context.WithCancel(bg)
				done := make(chan error)
				go func() { done <- relay.Run(ctx) }()

				pctx := <-pub.entered
				cancel()
				assert.NoError(t, pctx.Err(), "stopping Run does not cancel the publish")
				_, bounded := pctx.Deadline()
				assert.True(t, bounded, "the publish timeout bounds the publish")
				synctest.Wait()
				select {
				case <-done:
					t.Fatal("Run returned while Publish was running")
				default:
				}
				if !tt.timesOut {
					pub.release <- nil
				} // else the virtual clock reaches the publish timeout
				require.NoError(t, <-done)
				assert.True(t, pub.returned.Load(), "Run returned after Publish")

				type row struct {
					id, lastError string
					attempts      int
					locked        bool
				}
				var rows []row
				rs, err := db.Query("SELECT message_id, COALESCE(last_error, ''), attempts, locked_by IS NOT NULL OR locked_until IS NOT NULL FROM stopping ORDER BY id")
				require.NoError(t, err)
				for rs.Next() {
					var r row
					require.NoError(t, rs.Scan(&r.id, &r.lastError, &r.attempts, &r.locked))
					rows = append(rows, r)
				}
				require.NoError(t, rs.Err())
				require.NoError(t, rs.Close())
				timedOut := context.DeadlineExceeded.Error()
				switch {
				case !tt.ordered && !tt.timesOut:
					assert.Empty(t, rows, "the batch was acknowledged")
					assert.Equal(t, []string{"k:1", "k:2"}, pub.ids())
					assert.Equal(t, outbox.Stats{Published: 2}, relay.Stats())
				case !tt.ordered && tt.timesOut:
					assert.Equal(t, []row{{"k:1", timedOut, 1, false}, {"k:2", timedOut, 1, false}}, rows,
						"the batch was put back, its lease released")
					assert.Empty(t, pub.ids())
					assert.Equal(t, outbox.Stats{Failed: 2}, relay.Stats())
				case tt.ordered && tt.timesOut:
					assert.Equal(t, []row{{"k:1", timedOut, 1, false}, {"k:2", "", 0, false}}, rows,
						"k:1 was put back with its attempt counted; the lane stopped at it")
					assert.Empty(t, pub.ids())
					assert.Equal(t, outbox.Stats{Failed: 1}, relay.Stats())
				default:
					assert.Equal(t, []row{{"k:2", "", 0, false}}, rows, "k:1 was acknowledged; the lane stopped after it")
					assert.Equal(t, []string{"k:1"}, pub.ids())
					assert.Equal(t, outbox.Stats{Published: 1}, relay.Stats())
				}
				var owned int
				require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM stopping_lanes WHERE owner IS NOT NULL").Scan(&owned))
				assert.Zero(t, owned, "the lanes were given back")

				// The backoff of what failed ends; the lease (3s of the
				// database's clock) has not.
				_, err = db.Exec("UPDATE stopping SET available_at = 0")
				require.NoError(t, err)
				_, err = db.Exec("UPDATE stopping_lanes SET blocked_until = 0")
				require.NoError(t, err)
				next := &memPublisher{}
				drain(t, ob.NewRelay(next, append(opts, outbox.WithRelayID("next"))...))
				assert.Equal(t, []string{"k:1", "k:2"}, append(pub.ids(), next.ids()...), "another relay goes on at once, in order")
				assert.Zero(t, count(t, ob))
			})
		})
	}
}

// A message that failed waits a random time up to base·2^(attempts-1), at
// most max (WithRetryBackoff), on the database's clock: no relay publishes
// it before then, and any relay does once the time has come.
func TestRetryBackoffIsHonoured(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		fl := sqlOf(db)
		const n = 32
		var msgs []outbox.Message
		for i := range n {
			msgs = append(msgs, outbox.Message{ID: fmt.Sprint("m", i), Topic: "t"})
		}
		enqueue(t, db.DB, ob, msgs...)
		failing := &memPublisher{fail: func(outbox.Message) error { return errors.New("broker: 503") }}
		a := ob.NewRelay(failing, outbox.WithRelayID("a"), outbox.WithRetryBackoff(time.Hour, 2*time.Hour))
		healthy := &memPublisher{}
		b := ob.NewRelay(healthy, outbox.WithRelayID("b"))

		// The ceiling doubles, up to max.
		for attempt, ceiling := range []time.Duration{time.Hour, 2 * time.Hour, 2 * time.Hour} {
			before := dbNow(t, db)
			_, err := a.Process(ctx)
			require.NoError(t, err)
			after := dbNow(t, db)
			rows, err := db.Query(fl.Rebind("SELECT message_id, available_at, attempts FROM outbox_messages WHERE status = ?"), 0)
			require.NoError(t, err)
			seen, longest := 0, int64(0)
			for rows.Next() {
				var (
					id       string
					at       int64
					attempts int
				)
				require.NoError(t, rows.Scan(&id, &at, &attempts))
				seen++
				assert.Equal(t, attempt+1, attempts, id)
				// Full jitter: the wait is above zero (a wait below a
				// microsecond has a chance of 1 in 3.6e9 per message).
				assert.Greater(t, at, before, "%s after failure %d: due again only after a wait", id, attempt+1)
				assert.LessOrEqual(t, at, after+ceiling.Microseconds(), "%s after failure %d: a wait of at most %v", id, attempt+1, ceiling)
				longest = max(longest, at-after)
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			assert.Equal(t, n, seen)
			if attempt == 1 {
				// Each of the 32 waits is above an hour with a chance of 1/2.
				assert.Greater(t, longest, time.Hour.Microseconds(), "after the second failure, some wait longer than base")
			}

			got, err := b.Process(ctx)
			require.NoError(t, err)
			assert.Zero(t, got, "after failure %d, another relay publishes nothing before the backoff ends", attempt+1)
			_, err = db.Exec("UPDATE outbox_messages SET available_at = 0 WHERE status = 0")
			require.NoError(t, err)
		}
		assert.Empty(t, healthy.ids())
		assert.Equal(t, n, drain(t, b), "once the backoff has ended, another relay publishes every message")
		assert.Equal(t, outbox.Stats{Failed: 3 * n}, a.Stats())
	})
}

// In ordered mode the lane waits with its message: the relay that owns it
// publishes nothing of it until the backoff has ended, then the lane in
// order.
func TestOrderedRetryBackoffIsHonoured(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		fl := sqlOf(db)
		var fails atomic.Int64
		fails.Store(1)
		pub := &memPublisher{fail: func(m outbox.Message) error {
			if m.ID == "k:1" && fails.Add(-1) >= 0 {
				return errors.New("broker: 503")
			}
			return nil
		}}
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithGapGrace(0), outbox.WithRetryBackoff(time.Hour, time.Hour))
		enqueue(t, db.DB, ob, outbox.Message{ID: "k:1", Topic: "t", Key: "k"}, outbox.Message{ID: "k:2", Topic: "t", Key: "k"})
		settle(t, db)

		before := dbNow(t, db)
		_, err := relay.Process(ctx)
		require.NoError(t, err)
		after := dbNow(t, db)
		var availableAt, blockedUntil int64
		require.NoError(t, db.QueryRow(fl.Rebind(`SELECT m.available_at, l.blocked_until FROM outbox_messages m
			JOIN outbox_messages_lanes l ON l.lane = m.lane WHERE m.message_id = ?`), "k:1").Scan(&availableAt, &blockedUntil))
		for name, at := range map[string]int64{"the message": availableAt, "its lane": blockedUntil} {
			assert.Greater(t, at, before, "%s waits", name)
			assert.LessOrEqual(t, at, after+time.Hour.Microseconds(), "%s waits at most the base", name)
		}

		assert.Zero(t, drain(t, relay), "nothing of the lane before the backoff ends")
		assert.Empty(t, pub.ids())
		_, err = db.Exec("UPDATE outbox_messages SET available_at = 0 WHERE status = 0")
		require.NoError(t, err)
		_, err = db.Exec("UPDATE outbox_messages_lanes SET blocked_until = 0")
		require.NoError(t, err)
		assert.Equal(t, 2, drain(t, relay))
		assert.Equal(t, []string{"k:1", "k:2"}, pub.ids())
	})
}

// In ordered mode, a publish that runs into the publish timeout is put back
// like any failure: its attempt counted, its backoff set, and dead after
// the maximum of attempts.
func TestOrderedPublishTimeoutCountsAnAttempt(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		var calls atomic.Int32
		pub := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
			calls.Add(1)
			<-ctx.Done() // a broker that never confirms
			return ctx.Err()
		})
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithGapGrace(0), outbox.WithMaxAttempts(1),
			outbox.WithPublishTimeout(100*time.Millisecond), outbox.WithLease(10*time.Second))
		enqueue(t, db.DB, ob, outbox.Message{ID: "k:1", Topic: "t", Key: "k"})
		settle(t, db)
		for range 3 {
			_, err := relay.Process(ctx)
			require.NoError(t, err)
		}
		assert.Equal(t, int32(1), calls.Load(), "one attempt, then dead")
		dead, err := ob.ListDead(ctx, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, 1, dead[0].Attempts)
		assert.Equal(t, outbox.Stats{Failed: 1, Dead: 1}, relay.Stats())
	})
}

// In ordered mode, a pass whose publishes together take longer than the
// publish timeout still acknowledges them: each publish, and the writes
// after them, have a time of their own.
func TestOrderedSlowPassIsAcknowledged(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		pub := &memPublisher{fail: func(outbox.Message) error { time.Sleep(60 * time.Millisecond); return nil }}
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithGapGrace(0),
			outbox.WithPublishTimeout(100*time.Millisecond), outbox.WithLease(time.Minute))
		for i := 1; i <= 5; i++ {
			enqueue(t, db.DB, ob, outbox.Message{ID: fmt.Sprint("k:", i), Topic: "t", Key: "k"})
		}
		settle(t, db)
		assert.Equal(t, 5, drain(t, relay))
		assert.Zero(t, count(t, ob), "every message acknowledged")
		assert.Equal(t, []string{"k:1", "k:2", "k:3", "k:4", "k:5"}, pub.ids(), "each published once")
	})
}

// Discarding the dead head of a lane lets the lane go on at once, as a
// retry does, without waiting out the dead message's backoff.
func TestDiscardFreesTheLane(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		pub := &memPublisher{fail: func(m outbox.Message) error {
			if m.ID == "p:1" {
				return errors.New("poison")
			}
			return nil
		}}
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithMaxAttempts(1),
			outbox.WithRetryBackoff(time.Hour, time.Hour), outbox.WithGapGrace(0))
		enqueue(t, db.DB, ob, outbox.Message{ID: "p:1", Topic: "t", Key: "p"}, outbox.Message{ID: "p:2", Topic: "t", Key: "p"})
		settle(t, db)
		_, err := relay.Process(ctx)
		require.NoError(t, err)
		assert.Zero(t, drain(t, relay), "p:2 waits behind the dead p:1")
		n, err := ob.Discard(ctx, "p:1")
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		assert.Equal(t, 1, drain(t, relay), "the same relay goes on at once")
		assert.Equal(t, []string{"p:2"}, pub.ids())
	})
}

// The error of a failed publish is stored whatever its text holds: long,
// cut inside a character, invalid UTF-8, NUL bytes.
func TestFailureStoresAnyErrorText(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		ugly := errors.New("x\xff\x00" + strings.Repeat("é", 1500))
		pub := &memPublisher{fail: func(outbox.Message) error { return ugly }}
		relay := ob.NewRelay(pub, outbox.WithMaxAttempts(1))
		enqueue(t, db.DB, ob, outbox.Message{ID: "u:1", Topic: "t"})
		_, err := relay.Process(ctx)
		require.NoError(t, err)
		dead, err := ob.ListDead(ctx, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1, "the failure was recorded")
		assert.True(t, strings.HasPrefix(dead[0].LastError, "x\uFFFDéé"), "%.20q", dead[0].LastError)
		assert.LessOrEqual(t, len(dead[0].LastError), 2000)
	})
}
