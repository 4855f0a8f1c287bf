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

// dialectOf returns the outbox dialect of a test database, migrated.
func dialectOf(t testing.TB, db *servicetest.DB) outbox.Dialect {
	t.Helper()
	d := map[string]outbox.Dialect{"postgres": outbox.Postgres, "mysql": outbox.MySQL, "sqlite": outbox.SQLite}[db.Dialect]
	require.NoError(t, outbox.Migrate(context.Background(), db.DB, d))
	return d
}

// forEachDatabase runs f against SQLite, PostgreSQL and MySQL.
func forEachDatabase(t *testing.T, f func(t *testing.T, db *servicetest.DB, d outbox.Dialect)) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			f(t, db, dialectOf(t, db))
		})
	}
}

// enqueue writes msgs in one committed transaction.
func enqueue(t testing.TB, db *sql.DB, d outbox.Dialect, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	require.NoError(t, outbox.Enqueue(context.Background(), tx, d, msgs...))
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

func count(t testing.TB, db *sql.DB, d outbox.Dialect) int {
	t.Helper()
	b, err := outbox.ReadBacklog(context.Background(), db, d)
	require.NoError(t, err)
	return int(b.Pending + b.Dead)
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = outbox.Migrate(context.Background(), db.DB, d) })
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
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, outbox.Enqueue(ctx, tx, d, outbox.Message{ID: "rolled-back", Topic: "t", Payload: []byte("x")}))
		require.NoError(t, tx.Rollback())

		msgs := []outbox.Message{
			{Topic: "orders", Key: "o-1", Payload: []byte(`{"id":1}`), Headers: map[string]string{"trace": "abc"}},
			{Topic: "orders", Key: "o-2", Payload: []byte(`{"id":2}`)},
			{Topic: "audit", Payload: nil},
		}
		enqueue(t, db.DB, d, msgs...)
		for _, m := range msgs {
			assert.Len(t, m.ID, 36, "Enqueue fills in a UUIDv7")
			assert.Equal(t, byte('7'), m.ID[14], "version 7: %s", m.ID)
		}

		pub := &memPublisher{}
		relay := outbox.NewRelay(db.DB, d, pub)
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
		assert.Zero(t, count(t, db.DB, d), "published messages are deleted")
		assert.Equal(t, outbox.Stats{Published: 3}, relay.Stats())
	})
}

func TestEnqueueRefusesBadInputBeforeWriting(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		ctx := context.Background()
		small := d.WithMaxPayload(10)
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
			err = outbox.Enqueue(ctx, tx, small, good, tt.msg)
			assert.ErrorIs(t, err, tt.want, tt.name)
			var me *outbox.MessageError
			if assert.ErrorAs(t, err, &me, tt.name) {
				assert.Equal(t, 1, me.Index, tt.name)
			}
			require.NoError(t, tx.Commit())
		}
		assert.Zero(t, count(t, db.DB, d), "nothing written, not even the good message")

		assert.ErrorIs(t, outbox.Enqueue(ctx, nil, d, outbox.Message{Topic: "t"}), outbox.ErrNilTx)
		assert.ErrorIs(t, outbox.Enqueue(ctx, (*sql.Tx)(nil), d, outbox.Message{Topic: "t"}), outbox.ErrNilTx)

		// A duplicate ID is refused by the database.
		enqueue(t, db.DB, d, outbox.Message{ID: "dup", Topic: "t"})
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		assert.Error(t, outbox.Enqueue(ctx, tx, d, outbox.Message{ID: "dup", Topic: "t"}))
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
	assert.Equal(t, "postgres:events.outbox_v2", d.String())
}

func TestCustomTable(t *testing.T) {
	db := servicetest.SQLite(t)
	d, err := outbox.SQLite.WithTable("events")
	require.NoError(t, err)
	require.NoError(t, outbox.Migrate(context.Background(), db.DB, d))
	enqueue(t, db.DB, d, outbox.Message{Topic: "t"})
	pub := &memPublisher{}
	assert.Equal(t, 1, drain(t, outbox.NewRelay(db.DB, d, pub)))
}

func TestRetentionKeepsThenSweeps(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		enqueue(t, db.DB, d, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
		pub := &memPublisher{}
		relay := outbox.NewRelay(db.DB, d, pub, outbox.WithRetention(time.Millisecond))
		assert.Equal(t, 2, drain(t, relay))
		var kept int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM outbox_messages WHERE status = 1").Scan(&kept))
		assert.Equal(t, 2, kept, "published messages are kept for the retention")
		assert.Zero(t, count(t, db.DB, d), "and are not in the backlog")
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
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		ctx := context.Background()
		errBroker := errors.New("broker: 500")
		enqueue(t, db.DB, d, outbox.Message{ID: "poison", Topic: "t"}, outbox.Message{ID: "fine", Topic: "t"})
		pub := &memPublisher{fail: func(m outbox.Message) error {
			if m.ID == "poison" {
				return errBroker
			}
			return nil
		}}
		var events []outbox.Event
		relay := outbox.NewRelay(db.DB, d, pub, outbox.WithMaxAttempts(3), outbox.WithRetryBackoff(time.Microsecond, time.Microsecond),
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

		dead, err := outbox.ListDead(ctx, db.DB, d, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, "poison", dead[0].ID)
		assert.Equal(t, 3, dead[0].Attempts)
		assert.Equal(t, "broker: 500", dead[0].LastError)
		b, err := outbox.ReadBacklog(ctx, db.DB, d)
		require.NoError(t, err)
		assert.Equal(t, outbox.Backlog{Dead: 1}, b)

		// Dead messages wait for an operator.
		time.Sleep(time.Millisecond)
		assert.Zero(t, drain(t, relay))
		pub.setFail(nil)
		n, err := outbox.Retry(ctx, db.DB, d, "poison")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		assert.Equal(t, 1, drain(t, relay))
		assert.Equal(t, []string{"fine", "poison"}, pub.ids())

		enqueue(t, db.DB, d, outbox.Message{ID: "unwanted", Topic: "t"})
		n, err = outbox.Discard(ctx, db.DB, d, "unwanted", "no-such-message")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		assert.Zero(t, count(t, db.DB, d))
	})
}

func TestBacklogAge(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		b, err := outbox.ReadBacklog(context.Background(), db.DB, d)
		require.NoError(t, err)
		assert.Equal(t, outbox.Backlog{}, b)
		enqueue(t, db.DB, d, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"})
		time.Sleep(20 * time.Millisecond)
		b, err = outbox.ReadBacklog(context.Background(), db.DB, d)
		require.NoError(t, err)
		assert.Equal(t, int64(2), b.Pending)
		assert.GreaterOrEqual(t, b.OldestPending, 20*time.Millisecond)
	})
}

func TestNotBefore(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		enqueue(t, db.DB, d, outbox.Message{ID: "later", Topic: "t", NotBefore: time.Now().Add(time.Hour)},
			outbox.Message{ID: "now", Topic: "t"})
		pub := &memPublisher{}
		assert.Equal(t, 1, drain(t, outbox.NewRelay(db.DB, d, pub)))
		assert.Equal(t, []string{"now"}, pub.ids())
	})
}

// A relay whose lease ran out during a slow publish acknowledges nothing;
// the second relay publishes that batch again, and only that batch.
func TestLeaseExpiryDuringSlowPublish(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		ctx := context.Background()
		for i := range 5 {
			enqueue(t, db.DB, d, outbox.Message{ID: fmt.Sprint("m", i), Topic: "t"})
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
		stale := outbox.NewRelay(db.DB, d, slow, outbox.WithBatchSize(3), outbox.WithLease(time.Second),
			outbox.WithPublishTimeout(400*time.Millisecond), outbox.WithRelayID("stale"),
			outbox.WithOnEvent(func(e outbox.Event) { staleEvents = append(staleEvents, e) }))
		done := make(chan int)
		go func() {
			n, _ := stale.Process(ctx)
			done <- n
		}()
		<-entered
		time.Sleep(1200 * time.Millisecond) // the lease runs out

		fresh := &memPublisher{}
		second := outbox.NewRelay(db.DB, d, fresh, outbox.WithRelayID("fresh"))
		assert.Equal(t, 5, drain(t, second), "the expired batch and the rest")
		close(release)
		assert.Zero(t, <-done, "the stale relay's acknowledgement changed no row")
		assert.Contains(t, staleEvents, outbox.Event{Kind: outbox.Stale, Count: 3})
		assert.ElementsMatch(t, []string{"m0", "m1", "m2"}, slow.ids(), "the stale relay published its batch")
		assert.ElementsMatch(t, []string{"m0", "m1", "m2", "m3", "m4"}, fresh.ids())
		assert.Zero(t, count(t, db.DB, d))
	})
}

func TestInbox(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		ctx := context.Background()
		billing := outbox.NewInbox(d, "billing")
		shipping := outbox.NewInbox(d, "shipping")
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
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, d outbox.Dialect) {
		pub := &memPublisher{}
		relay := outbox.NewRelay(db.DB, d, pub, outbox.WithPollInterval(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- relay.Run(ctx) }()
		enqueue(t, db.DB, d, outbox.Message{Topic: "t"})
		require.Eventually(t, func() bool { return len(pub.ids()) == 1 }, 10*time.Second, time.Millisecond,
			"published without waiting for the hour-long poll")
		assert.ErrorIs(t, relay.Run(ctx), outbox.ErrRunning, "a relay runs once at a time")
		cancel()
		assert.NoError(t, <-done)
	})
}

func TestBadRelayOptionsPanic(t *testing.T) {
	db := servicetest.SQLite(t)
	pub := &memPublisher{}
	assert.PanicsWithValue(t, "outbox: publish timeout 20s must be less than half the lease 30s", func() {
		outbox.NewRelay(db.DB, outbox.SQLite, pub, outbox.WithPublishTimeout(20*time.Second))
	})
	assert.PanicsWithValue(t, "outbox: NewRelay: zero Dialect; use outbox.Postgres, MySQL or SQLite", func() {
		outbox.NewRelay(db.DB, outbox.Dialect{}, pub)
	})
	assert.PanicsWithValue(t, "outbox: WithBatchSize(0): want 1 <= n <= 10000", func() { outbox.WithBatchSize(0) })
	assert.PanicsWithValue(t, "outbox: WithNotify: only PostgreSQL has NOTIFY", func() { outbox.MySQL.WithNotify("x") })
}
