package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// memPublisher records what it publishes; fail, if set, decides failures.
type memPublisher struct {
	mu   sync.Mutex
	got  []outbox.Message
	fail func(outbox.Message) error
}

func (p *memPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for i, m := range msgs {
		if p.fail != nil {
			if err := p.fail(m); err != nil {
				if errs == nil {
					errs = make([]error, len(msgs))
				}
				errs[i] = err
				continue
			}
		}
		p.got = append(p.got, m)
	}
	return errs
}

func (p *memPublisher) published() []outbox.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func (p *memPublisher) ids() []string {
	var ids []string
	for _, m := range p.published() {
		ids = append(ids, m.ID)
	}
	return ids
}

func (p *memPublisher) setFail(f func(outbox.Message) error) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

// dialectNamed returns the outbox dialect of a kind of test database.
func dialectNamed(name string) outbox.Dialect {
	return map[string]outbox.Dialect{"postgres": outbox.Postgres, "mysql": outbox.MySQL, "sqlite": outbox.SQLite}[name]
}

// outboxOf returns the outbox of a test database, migrated.
func outboxOf(t testing.TB, db *servicetest.DB) *outbox.Outbox {
	t.Helper()
	ob := outbox.New(db.DB, dialectNamed(db.Dialect))
	require.NoError(t, ob.Migrate(context.Background()))
	return ob
}

// forEachDatabase runs f against SQLite, PostgreSQL and MySQL.
func forEachDatabase(t *testing.T, f func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox)) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			f(t, db, outboxOf(t, db))
		})
	}
}

// settle waits, on PostgreSQL, until every transaction that was open when
// it was called has ended. An ordered relay publishes a message only once
// every older transaction has ended (the snapshot's xmin), and that
// includes the transactions of other tests on the same server: a test that
// expects a lane's message at once settles first.
func settle(t testing.TB, db *servicetest.DB) {
	t.Helper()
	if db.Dialect != "postgres" {
		return
	}
	var xid string
	require.NoError(t, db.QueryRow("SELECT pg_current_xact_id()::text").Scan(&xid))
	require.Eventually(t, func() bool {
		var ended bool
		err := db.QueryRow("SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8", xid).Scan(&ended)
		require.NoError(t, err)
		return ended
	}, 2*time.Minute, 5*time.Millisecond, "every transaction older than %s ends", xid)
}

// enqueue writes msgs in one committed transaction of db.
func enqueue(t testing.TB, db *sql.DB, ob *outbox.Outbox, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	require.NoError(t, ob.Enqueue(context.Background(), tx, msgs...))
	require.NoError(t, tx.Commit())
}

// drain runs r.Process until a pass publishes nothing.
func drain(t testing.TB, r *outbox.Relay) int {
	t.Helper()
	total := 0
	for {
		n, err := r.Process(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return total
		}
		total += n
	}
}

func count(t testing.TB, ob *outbox.Outbox) int {
	t.Helper()
	b, err := ob.Backlog(context.Background())
	require.NoError(t, err)
	return int(b.Pending + b.Dead)
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = ob.Migrate(context.Background()) })
		}
		wg.Wait()
		for _, err := range errs {
			assert.NoError(t, err)
		}
		var lanes int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM outbox_messages_lanes").Scan(&lanes))
		assert.Equal(t, outbox.Lanes, lanes)
	})
}

func TestCommittedMessagesArePublishedRolledBackNever(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(ctx, tx, outbox.Message{ID: "rolled-back", Topic: "t", Payload: []byte("x")}))
		require.NoError(t, tx.Rollback())

		msgs := []outbox.Message{
			{Topic: "orders", Key: "o-1", Payload: []byte(`{"id":1}`), Headers: map[string]string{"trace": "abc"}},
			{Topic: "orders", Key: "o-2", Payload: []byte(`{"id":2}`)},
			{Topic: "audit", Payload: nil},
		}
		enqueue(t, db.DB, ob, msgs...)
		for _, m := range msgs {
			assert.Len(t, m.ID, 36, "Enqueue fills in a UUIDv7")
			assert.Equal(t, byte('7'), m.ID[14], "version 7: %s", m.ID)
		}

		pub := &memPublisher{}
		relay := ob.NewRelay(pub)
		assert.Equal(t, 3, drain(t, relay))
		got := pub.published()
		require.Len(t, got, 3)
		for i, m := range got {
			assert.Equal(t, msgs[i].ID, m.ID)
			assert.Equal(t, msgs[i].Topic, m.Topic)
			assert.Equal(t, msgs[i].Key, m.Key)
			assert.Equal(t, string(msgs[i].Payload), string(m.Payload))
			assert.Equal(t, 1, m.Attempts)
		}
		assert.Equal(t, map[string]string{"trace": "abc"}, got[0].Headers)
		assert.NotContains(t, pub.ids(), "rolled-back")
		assert.Zero(t, count(t, ob), "published messages are deleted")
		assert.Equal(t, outbox.Stats{Published: 3}, relay.Stats())
	})
}

func TestEnqueueRefusesBadInputBeforeWriting(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		small := outbox.New(db.DB, ob.Dialect().WithMaxPayload(10))
		tests := []struct {
			name string
			msg  outbox.Message
			want error
		}{
			{"no topic", outbox.Message{Payload: []byte("x")}, outbox.ErrNoTopic},
			{"payload too large", outbox.Message{Topic: "t", Payload: make([]byte, 11)}, outbox.ErrTooLarge},
			{"topic too long", outbox.Message{Topic: strings.Repeat("t", 256)}, outbox.ErrFieldTooLong},
			{"key too long", outbox.Message{Topic: "t", Key: strings.Repeat("k", 256)}, outbox.ErrFieldTooLong},
			{"ID too long", outbox.Message{Topic: "t", ID: strings.Repeat("i", 65)}, outbox.ErrFieldTooLong},
		}
		for _, tt := range tests {
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			good := outbox.Message{Topic: "t", Payload: []byte("ok")}
			err = small.Enqueue(ctx, tx, good, tt.msg)
			assert.ErrorIs(t, err, tt.want, tt.name)
			var me *outbox.MessageError
			if assert.ErrorAs(t, err, &me, tt.name) {
				assert.Equal(t, 1, me.Index, tt.name)
			}
			require.NoError(t, tx.Commit())
		}
		assert.Zero(t, count(t, ob), "nothing written, not even the good message")

		assert.ErrorIs(t, ob.Enqueue(ctx, nil, outbox.Message{Topic: "t"}), outbox.ErrNilTx)
		assert.ErrorIs(t, ob.Enqueue(ctx, (*sql.Tx)(nil), outbox.Message{Topic: "t"}), outbox.ErrNilTx)

		// A duplicate ID is refused by the database.
		enqueue(t, db.DB, ob, outbox.Message{ID: "dup", Topic: "t"})
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		assert.Error(t, ob.Enqueue(ctx, tx, outbox.Message{ID: "dup", Topic: "t"}))
		require.NoError(t, tx.Rollback())
	})
}

func TestTableNamesAreValidated(t *testing.T) {
	for _, bad := range []string{"", "1abc", "a;DROP TABLE x", "a b", "x.y.z", strings.Repeat("a", 49), `a"b`} {
		_, err := outbox.Postgres.WithTable(bad)
		assert.Error(t, err, "%q", bad)
	}
	d, err := outbox.Postgres.WithTable("events.outbox_v2")
	require.NoError(t, err)
	assert.Equal(t, "PostgreSQL:events.outbox_v2", d.String())
	assert.Equal(t, "zero Dialect", outbox.Dialect{}.String())

	// The longest name the outbox derives from a table's adds 15 bytes.
	_, err = outbox.Postgres.WithTable(strings.Repeat("a", 49))
	assert.EqualError(t, err, `outbox: table name: "`+strings.Repeat("a", 49)+`": 49 bytes, at most 48 on PostgreSQL: identifier too long`)
	_, err = outbox.MySQL.WithTable(strings.Repeat("a", 49))
	assert.NoError(t, err, "MySQL takes 64 bytes")
	_, err = outbox.MySQL.WithTable(strings.Repeat("a", 50))
	assert.ErrorContains(t, err, "50 bytes, at most 49 on MySQL")
}

// Migrate with the dialect of another database says so, before it writes
// anything.
func TestMigrateWithTheWrongDialect(t *testing.T) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			for _, d := range []outbox.Dialect{outbox.Postgres, outbox.MySQL, outbox.SQLite} {
				err := outbox.New(db.DB, d).Migrate(context.Background())
				if d == dialectNamed(db.Dialect) {
					assert.NoError(t, err)
					continue
				}
				assert.Regexp(t, `^outbox: Migrate: dialect `+strings.Split(d.String(), ":")[0]+
					` but the server is (PostgreSQL|MySQL|MariaDB|SQLite) [0-9.]+$`, err)
			}
		})
	}
}

func TestListDeadRefusesALimitBelowOne(t *testing.T) {
	ob := outboxOf(t, servicetest.SQLite(t))
	_, err := ob.ListDead(context.Background(), 0)
	assert.EqualError(t, err, "outbox: ListDead(0): want limit >= 1")
}

// A refused message's error names the message and the reason, with the
// package's prefix once.
func TestMessageErrorText(t *testing.T) {
	err := error(&outbox.MessageError{Index: 2, Err: outbox.ErrNoTopic})
	assert.EqualError(t, err, "outbox: message 2: message has no topic")
	assert.ErrorIs(t, err, outbox.ErrNoTopic)
}

func TestCustomTable(t *testing.T) {
	db := servicetest.SQLite(t)
	d, err := outbox.SQLite.WithTable("events")
	require.NoError(t, err)
	ob := outbox.New(db.DB, d)
	require.NoError(t, ob.Migrate(context.Background()))
	enqueue(t, db.DB, ob, outbox.Message{Topic: "t"})
	pub := &memPublisher{}
	assert.Equal(t, 1, drain(t, ob.NewRelay(pub)))
}

func TestRetentionKeepsThenSweeps(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		enqueue(t, db.DB, ob, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
		pub := &memPublisher{}
		relay := ob.NewRelay(pub, outbox.WithRetention(time.Millisecond))
		assert.Equal(t, 2, drain(t, relay))
		var kept int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM outbox_messages WHERE status = 1").Scan(&kept))
		assert.Equal(t, 2, kept, "published messages are kept for the retention")
		assert.Zero(t, count(t, ob), "and are not in the backlog")
		require.Eventually(t, func() bool {
			n, err := relay.Sweep(context.Background())
			require.NoError(t, err)
			return n == 2
		}, 5*time.Second, 5*time.Millisecond, "swept once older than the retention")
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM outbox_messages").Scan(&kept))
		assert.Zero(t, kept)
	})
}

func TestFailuresBackOffThenDieAndTheRestFlow(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		errBroker := errors.New("broker: 500")
		enqueue(t, db.DB, ob, outbox.Message{ID: "poison", Topic: "t"}, outbox.Message{ID: "fine", Topic: "t"})
		pub := &memPublisher{fail: func(m outbox.Message) error {
			if m.ID == "poison" {
				return errBroker
			}
			return nil
		}}
		var events []outbox.Event
		relay := ob.NewRelay(pub, outbox.WithMaxAttempts(3), outbox.WithRetryBackoff(time.Microsecond, time.Microsecond),
			outbox.WithOnEvent(func(e outbox.Event) { events = append(events, e) }))
		for range 3 {
			time.Sleep(time.Millisecond) // the microsecond backoff passes
			_, err := relay.Process(ctx)
			require.NoError(t, err)
		}
		assert.Equal(t, []string{"fine"}, pub.ids(), "the poison message does not hold up the rest")
		assert.Equal(t, outbox.Stats{Published: 1, Failed: 3, Dead: 1}, relay.Stats())
		assert.Contains(t, events, outbox.Event{Kind: outbox.Dead, Count: 1})
		assert.Contains(t, events, outbox.Event{Kind: outbox.Failed, Count: 1, Err: errBroker})

		dead, err := ob.ListDead(ctx, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, "poison", dead[0].ID)
		assert.Equal(t, 3, dead[0].Attempts)
		assert.Equal(t, "broker: 500", dead[0].LastError)
		b, err := ob.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, outbox.Backlog{Dead: 1}, b)

		// Dead messages wait for an operator.
		time.Sleep(time.Millisecond)
		assert.Zero(t, drain(t, relay))
		pub.setFail(nil)
		n, err := ob.Retry(ctx, "poison")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		assert.Equal(t, 1, drain(t, relay))
		assert.Equal(t, []string{"fine", "poison"}, pub.ids())

		enqueue(t, db.DB, ob, outbox.Message{ID: "unwanted", Topic: "t"})
		n, err = ob.Discard(ctx, "unwanted", "no-such-message")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		assert.Zero(t, count(t, ob))
	})
}

func TestBacklogAge(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		b, err := ob.Backlog(context.Background())
		require.NoError(t, err)
		assert.Equal(t, outbox.Backlog{}, b)
		enqueue(t, db.DB, ob, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
		time.Sleep(20 * time.Millisecond)
		b, err = ob.Backlog(context.Background())
		require.NoError(t, err)
		assert.Equal(t, int64(2), b.Pending)
		assert.GreaterOrEqual(t, b.OldestPending, 20*time.Millisecond)
	})
}

func TestNotBefore(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		enqueue(t, db.DB, ob, outbox.Message{ID: "later", Topic: "t", NotBefore: time.Now().Add(time.Hour)},
			outbox.Message{ID: "now", Topic: "t"})
		pub := &memPublisher{}
		assert.Equal(t, 1, drain(t, ob.NewRelay(pub)))
		assert.Equal(t, []string{"now"}, pub.ids())
	})
}

// A relay whose lease ran out during a slow publish acknowledges nothing;
// the second relay publishes that batch again, and only that batch.
func TestLeaseExpiryDuringSlowPublish(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		for i := range 5 {
			enqueue(t, db.DB, ob, outbox.Message{ID: fmt.Sprint("m", i), Topic: "t"})
		}
		release := make(chan struct{})
		entered := make(chan struct{})
		slow := &memPublisher{fail: func(outbox.Message) error {
			select {
			case <-entered:
			default:
				close(entered)
				<-release // stalls past the lease
			}
			return nil
		}}
		var staleEvents []outbox.Event
		var rec policytest.Recorder
		stale := ob.NewRelay(slow, outbox.WithBatchSize(3), outbox.WithLease(time.Second),
			outbox.WithPublishTimeout(400*time.Millisecond), outbox.WithRelayID("stale"),
			outbox.WithOnEvent(func(e outbox.Event) { staleEvents = append(staleEvents, e) }), outbox.WithObserver(&rec))
		done := make(chan int)
		go func() {
			n, _ := stale.Process(ctx)
			done <- n
		}()
		<-entered
		time.Sleep(1200 * time.Millisecond) // the lease runs out

		fresh := &memPublisher{}
		second := ob.NewRelay(fresh, outbox.WithRelayID("fresh"))
		assert.Equal(t, 5, drain(t, second), "the expired batch and the rest")
		close(release)
		assert.Zero(t, <-done, "the stale relay's acknowledgement changed no row")
		assert.Contains(t, staleEvents, outbox.Event{Kind: outbox.Stale, Count: 3})
		assert.Contains(t, counts(rec.Events()), kindCount{resilience.Stale, 3, "stale"})
		assert.ElementsMatch(t, []string{"m0", "m1", "m2"}, slow.ids(), "the stale relay published its batch")
		assert.ElementsMatch(t, []string{"m0", "m1", "m2", "m3", "m4"}, fresh.ids())
		assert.Zero(t, count(t, ob))
	})
}

// kindCount is an event's kind, count and subject.
type kindCount struct {
	kind    resilience.EventKind
	count   int
	subject string
}

// counts returns the kind, count and subject of each of events.
func counts(events []resilience.Event) []kindCount {
	out := make([]kindCount, len(events))
	for i, e := range events {
		out[i] = kindCount{e.Kind, e.Count, e.Subject}
	}
	return out
}

// A relay tells its observer, with the ctx of Process and its ID as the
// Subject, what it published, what failed and what died, in both modes.
func TestObserverEvents(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprint("ordered=", ordered), func(t *testing.T) {
			forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
				type key struct{}
				ctx := context.WithValue(context.Background(), key{}, "process")
				errBroker := errors.New("broker: 500")
				// The poison message has a key, so that in ordered mode it
				// goes through a lane; the fine one has none.
				enqueue(t, db.DB, ob, outbox.Message{ID: "poison", Topic: "t", Key: "k"}, outbox.Message{ID: "fine", Topic: "t"})
				settle(t, db)
				pub := &memPublisher{fail: func(m outbox.Message) error {
					if m.ID == "poison" {
						return errBroker
					}
					return nil
				}}
				var rec policytest.Recorder
				opts := []outbox.Option{outbox.WithMaxAttempts(2), outbox.WithRetryBackoff(time.Microsecond, time.Microsecond),
					outbox.WithRelayID("relay-a"), outbox.WithName("orders"), outbox.WithObserver(&rec)}
				if ordered {
					opts = append(opts, outbox.WithOrdered(), outbox.WithGapGrace(0)) // no wait on MySQL
				}
				relay := ob.NewRelay(pub, opts...)
				for range 3 {
					time.Sleep(time.Millisecond) // the microsecond backoff passes
					_, err := relay.Process(ctx)
					require.NoError(t, err)
				}
				assert.Equal(t, outbox.Stats{Published: 1, Failed: 2, Dead: 1}, relay.Stats())
				got := counts(rec.Events())
				assert.ElementsMatch(t, []kindCount{
					{resilience.Success, 1, "relay-a"},
					{resilience.Failure, 1, "relay-a"},
					{resilience.Failure, 1, "relay-a"},
					{resilience.Dead, 1, "relay-a"},
				}, got)
				for i, e := range rec.Events() {
					assert.Equal(t, resilience.PolicyOutbox, e.Policy, "Policy of %+v", e)
					assert.Equal(t, "orders", e.Name, "Name of %+v", e)
					assert.Equal(t, "process", rec.Contexts()[i].Value(key{}), "ctx of %+v", e)
					if e.Kind == resilience.Failure {
						assert.Equal(t, errBroker, e.Err, "Err of %+v", e)
					}
					if e.Kind == resilience.Success {
						assert.Positive(t, e.Duration, "Duration of %+v", e)
					}
				}
			})
		})
	}
}

// A relay whose database fails tells an Error event, and goes on.
func TestObserverError(t *testing.T) {
	db := servicetest.SQLite(t)
	ob := outboxOf(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rec policytest.Recorder
	relay := ob.NewRelay(&memPublisher{}, outbox.WithObserver(resilience.ObserverFunc(func(ctx context.Context, e resilience.Event) {
		rec.Observe(ctx, e)
		cancel()
	})))
	require.NoError(t, db.DB.Close())
	require.NoError(t, relay.Run(ctx))
	events := rec.Events()
	require.NotEmpty(t, events)
	assert.Equal(t, resilience.Error, events[0].Kind)
	assert.ErrorContains(t, events[0].Err, "closed")
	assert.True(t, strings.HasPrefix(events[0].Subject, "relay-"), "the relay's random ID: %q", events[0].Subject)
}

func TestInbox(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		billing := ob.NewInbox("billing")
		shipping := ob.NewInbox("shipping")
		receive := func(in *outbox.Inbox, id string, commit bool) bool {
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			first, err := in.Receive(ctx, tx, id)
			require.NoError(t, err)
			if commit {
				require.NoError(t, tx.Commit())
			} else {
				require.NoError(t, tx.Rollback())
			}
			return first
		}
		assert.True(t, receive(billing, "m1", false), "first time")
		assert.True(t, receive(billing, "m1", true), "the rolled-back record does not count")
		assert.False(t, receive(billing, "m1", true), "a duplicate")
		assert.True(t, receive(shipping, "m1", true), "another consumer's first time")

		time.Sleep(5 * time.Millisecond)
		n, err := billing.Sweep(ctx, db.DB, time.Millisecond)
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "billing's old record")
		assert.True(t, receive(billing, "m1", true), "forgotten after the sweep")
		assert.False(t, receive(shipping, "m1", true), "shipping's record is kept")

		_, err = billing.Receive(ctx, db.DB, "")
		assert.Error(t, err)
	})
}

func TestRunWakesOnEnqueueAndStopsCleanly(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		pub := &memPublisher{}
		relay := ob.NewRelay(pub, outbox.WithPollInterval(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- relay.Run(ctx) }()
		enqueue(t, db.DB, ob, outbox.Message{Topic: "t"})
		require.Eventually(t, func() bool { return len(pub.ids()) == 1 }, 10*time.Second, time.Millisecond,
			"published without waiting for the hour-long poll")
		assert.ErrorIs(t, relay.Run(ctx), outbox.ErrRunning, "a relay runs once at a time")
		cancel()
		assert.NoError(t, <-done)
	})
}

func TestBadRelayOptionsPanic(t *testing.T) {
	db := servicetest.SQLite(t)
	ob := outbox.New(db.DB, outbox.SQLite)
	pub := &memPublisher{}
	assert.PanicsWithValue(t, "outbox: NewRelay: publish timeout 20s must be less than half the lease 30s", func() {
		ob.NewRelay(pub, outbox.WithPublishTimeout(20*time.Second))
	})
	assert.PanicsWithValue(t, "outbox: NewRelay: nil Publisher", func() { ob.NewRelay(nil) })
	assert.PanicsWithValue(t, "outbox: NewRelay: nil Option", func() { ob.NewRelay(pub, nil) })
	assert.PanicsWithValue(t, "outbox: New: zero Dialect; use outbox.Postgres, MySQL or SQLite", func() {
		outbox.New(db.DB, outbox.Dialect{})
	})
	assert.PanicsWithValue(t, "outbox: New: nil db", func() { outbox.New(nil, outbox.SQLite) })
	assert.PanicsWithValue(t, "outbox: WithBatchSize(0): want 1 <= n <= 10000", func() { outbox.WithBatchSize(0) })
	assert.PanicsWithValue(t, "outbox: WithOnEvent: nil func", func() { outbox.WithOnEvent(nil) })
	assert.PanicsWithValue(t, "outbox: WithObserver: nil Observer", func() { outbox.WithObserver(nil) })
	assert.PanicsWithValue(t, "outbox: WithWaker: nil Waker", func() { outbox.WithWaker(nil) })
	assert.PanicsWithValue(t, "outbox: WithNotify: only PostgreSQL has NOTIFY", func() { outbox.MySQL.WithNotify("x") })
}

func TestEventKindString(t *testing.T) {
	for k, want := range map[outbox.EventKind]string{outbox.Published: "published", outbox.Failed: "failed",
		outbox.Dead: "dead", outbox.Error: "error", outbox.Stale: "stale", 9: "EventKind(9)"} {
		assert.Equal(t, want, k.String())
	}
}
