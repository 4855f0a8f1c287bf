package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/outbox"
)

// brokerDelay is how long the slow brokers of these tests take a message.
const brokerDelay = 10 * time.Millisecond

// slowBroker is a broker that takes brokerDelay a message and remembers who
// published what, in order.
type slowBroker struct {
	mu     sync.Mutex
	ids    []string       // in the order published, copies included
	copies map[string]int // message ID -> copies
	by     []int          // per relay: messages published
	busy   []time.Duration
}

// publisher returns the Publisher of relay i.
func (b *slowBroker) publisher(i int) outbox.Publisher {
	return publisherFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		start := time.Now()
		time.Sleep(brokerDelay * time.Duration(len(msgs)))
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, m := range msgs {
			b.ids = append(b.ids, m.ID)
			b.copies[m.ID]++
		}
		b.by[i] += len(msgs)
		b.busy[i] += time.Since(start)
		return nil
	})
}

type publisherFunc func(context.Context, []outbox.Message) []error

func (f publisherFunc) Publish(ctx context.Context, msgs []outbox.Message) []error {
	return f(ctx, msgs)
}

// enqueueKeys writes perKey messages "k<key>:<seq>" for each of keys keys,
// 500 to a transaction, seq by seq.
func enqueueKeys(t *testing.T, db *sql.DB, ob *outbox.Outbox, keys, perKey int) {
	t.Helper()
	var msgs []outbox.Message
	for seq := 1; seq <= perKey; seq++ {
		for k := range keys {
			msgs = append(msgs, outbox.Message{ID: fmt.Sprintf("k%d:%d", k, seq), Topic: "t", Key: fmt.Sprint("k", k)})
		}
	}
	for len(msgs) > 0 {
		n := min(500, len(msgs))
		enqueue(t, db, ob, msgs[:n]...)
		msgs = msgs[n:]
	}
}

// Healthy relays in ordered mode publish each message once, however many
// lanes each owns and however long its passes take: a relay renews the lease
// of a lane before a publish that could outlast it, a pass ends once it has
// published for a third of the lease, and the lanes are shared evenly, so
// that the relays drain a backlog side by side. With a broker that takes
// 10 ms a message, 20 messages a key enqueued at once and a lease of a
// second, every pass outlives the lease many times over.
func TestOrderedRelaysPublishEachMessageOnce(t *testing.T) {
	tests := []struct{ relays, keys int }{{2, 64}, {4, 256}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d relays, %d keys", tt.relays, tt.keys), func(t *testing.T) {
			forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
				const perKey, batch = 20, 256
				enqueueKeys(t, db.DB, ob, tt.keys, perKey)
				total := tt.keys * perKey
				broker := &slowBroker{copies: map[string]int{}, by: make([]int, tt.relays), busy: make([]time.Duration, tt.relays)}
				var stale, errs atomic.Int64
				start := time.Now()
				stop := runRelays(t, tt.relays, func(i int) *outbox.Relay {
					return ob.NewRelay(broker.publisher(i), outbox.WithOrdered(), outbox.WithGapGrace(0), outbox.WithBatchSize(batch),
						outbox.WithLease(time.Second), outbox.WithPublishTimeout(400*time.Millisecond),
						outbox.WithPollInterval(10*time.Millisecond), outbox.WithRelayID(fmt.Sprint("r", i)),
						outbox.WithOnEvent(func(e outbox.Event) {
							switch e.Kind {
							case outbox.Stale:
								stale.Add(int64(e.Count))
							case outbox.Error:
								errs.Add(1)
								t.Logf("relay %d: %v", i, e.Err)
							}
						}))
				})
				require.Eventually(t, func() bool { return count(t, ob) == 0 }, 5*time.Minute, 10*time.Millisecond)
				drained := time.Since(start)
				stop()

				broker.mu.Lock()
				defer broker.mu.Unlock()
				duplicates := len(broker.ids) - len(broker.copies)
				var busy time.Duration
				for _, b := range broker.busy {
					busy = max(busy, b)
				}
				t.Logf("%s: %d messages in %v (the busiest relay published for %v; %v of publishing shared by %d relays); per relay %v; %d duplicates, %d stale, %d errors",
					db.Dialect, total, drained.Round(time.Millisecond), busy.Round(time.Millisecond),
					(time.Duration(total) * brokerDelay / time.Duration(tt.relays)).Round(time.Millisecond), tt.relays, broker.by,
					duplicates, stale.Load(), errs.Load())
				assert.Len(t, broker.copies, total, "every message published")
				if n := errs.Load(); n == 0 {
					assert.Zero(t, duplicates, "no message published twice")
				} else {
					// A relay that reported an error (a write of its that the
					// database did not answer within the lease, on a loaded
					// machine) was not healthy: each such error leaves at
					// most one batch published and not acknowledged.
					assert.LessOrEqual(t, duplicates, int(n)*batch, "at most a batch of duplicates for each of %d errors", n)
				}
				assert.Zero(t, stale.Load(), "no acknowledgement refused for a lease that ran out")
				assertKeyOrder(t, broker.ids)
				// The relays shared the work: none published much more than
				// its share, so the backlog drained in about the time of
				// its share.
				for i, n := range broker.by {
					assert.LessOrEqual(t, n, total*3/(2*tt.relays), "relay %d published %d of %d messages", i, n, total)
				}
			})
		})
	}
}

// stallEnv is what TestStalledRelayChild is told by its parent.
const (
	stallDriverVar  = "OUTBOX_STALL_DRIVER"
	stallDSNVar     = "OUTBOX_STALL_DSN"
	stallDialectVar = "OUTBOX_STALL_DIALECT"
)

// startsPublisher stands for a broker that takes brokerDelay a message and
// records, before anything else, the start of each message's publish in the
// starts table, with the process ID and the batch (the call to Publish,
// numbered in the process), in autocommit: a record that a stopped process
// cannot date after it stopped.
type startsPublisher struct {
	db      *sql.DB
	insert  string
	batches *atomic.Int64
}

func newStartsPublisher(db *sql.DB, dialect string) startsPublisher {
	return startsPublisher{db: db, insert: rebind(dialect, "INSERT INTO starts (message_id, pid, batch) VALUES (?, ?, ?)"),
		batches: new(atomic.Int64)}
}

// rebind turns the ? placeholders of q into PostgreSQL's $n.
func rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	return sqlstore.Postgres.Rebind(q)
}

func (p startsPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	var errs []error
	batch := p.batches.Add(1)
	for i, m := range msgs {
		if _, err := p.db.ExecContext(ctx, p.insert, m.ID, os.Getpid(), batch); err != nil {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = err
			continue
		}
		time.Sleep(brokerDelay)
	}
	return errs
}

var startsTable = map[string]string{
	"postgres": "CREATE TABLE starts (id BIGSERIAL PRIMARY KEY, message_id VARCHAR(64) NOT NULL, pid INTEGER NOT NULL, batch BIGINT NOT NULL)",
	"mysql":    "CREATE TABLE starts (id BIGINT AUTO_INCREMENT PRIMARY KEY, message_id VARCHAR(64) NOT NULL, pid INTEGER NOT NULL, batch BIGINT NOT NULL)",
	"sqlite":   "CREATE TABLE starts (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, pid INTEGER NOT NULL, batch INTEGER NOT NULL)",
}

// stallOptions are the options of both relays of the stall test.
func stallOptions(id string) []outbox.Option {
	return []outbox.Option{outbox.WithOrdered(), outbox.WithGapGrace(0), outbox.WithLease(time.Second),
		outbox.WithPublishTimeout(400 * time.Millisecond), outbox.WithPollInterval(10 * time.Millisecond),
		outbox.WithBatchSize(20), outbox.WithRelayID(id)}
}

// TestStalledRelayChild is the relay that TestStalledRelayPublishesNothingItLost
// stops and continues; it runs only in that test's child process, until it
// is killed or sent SIGTERM.
func TestStalledRelayChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only as the child of TestStalledRelayPublishesNothingItLost")
	}
	db, err := sql.Open(os.Getenv(stallDriverVar), os.Getenv(stallDSNVar))
	require.NoError(t, err)
	defer db.Close()
	dialect := os.Getenv(stallDialectVar)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	relay := outbox.New(db, dialectNamed(dialect)).NewRelay(newStartsPublisher(db, dialect), stallOptions("child")...)
	require.NoError(t, relay.Run(ctx))
}

// A relay in ordered mode stopped (SIGSTOP) in the middle of its work for
// longer than its lease, while another relay takes its lanes over, publishes
// nothing of those lanes once it is continued (SIGCONT): the only messages
// published twice are those of the batches whose publish it had started
// before it stopped, which it had not acknowledged, and they are at most a
// batch. (Once continued, it may go on with such a batch for a moment, until
// the timer of the publish timeout, overdue, has run.) It goes on working:
// once the other relay has stopped, it publishes what comes.
func TestStalledRelayPublishesNothingItLost(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		_, err := db.ExecContext(ctx, startsTable[db.Dialect])
		require.NoError(t, err)
		const keys, perKey, batch = 64, 20, 20
		enqueueKeys(t, db.DB, ob, keys, perKey)
		q := func(query string) string { return rebind(db.Dialect, query) }
		startsOf := func(pid int) (n int) {
			require.NoError(t, db.QueryRowContext(ctx, q("SELECT COUNT(*) FROM starts WHERE pid = ?"), pid).Scan(&n))
			return n
		}
		lanesOf := func(owner string) (n int) {
			require.NoError(t, db.QueryRowContext(ctx, q("SELECT COUNT(*) FROM outbox_messages_lanes WHERE owner = ?"), owner).Scan(&n))
			return n
		}

		child := servicetest.StartChild(t, "TestStalledRelayChild",
			stallDriverVar+"="+db.Driver, stallDSNVar+"="+db.DSN, stallDialectVar+"="+db.Dialect)
		pid := child.Pid()
		require.Eventually(t, func() bool { return startsOf(pid) >= 50 }, time.Minute, 5*time.Millisecond,
			"the child publishes\n%s", child.Output())
		parent := ob.NewRelay(newStartsPublisher(db.DB, db.Dialect), stallOptions("parent")...)
		stopParent := runRelays(t, 1, func(int) *outbox.Relay { return parent })
		defer stopParent()
		require.Eventually(t, func() bool { return startsOf(os.Getpid()) >= 20 && startsOf(pid) >= 100 }, time.Minute,
			5*time.Millisecond, "both relays publish")

		child.Stop(t)
		held := lanesOf("child")
		require.NotZero(t, held, "the child owns lanes as it stops")
		// The parent takes the stopped child's lanes once their leases
		// run out, and publishes from them.
		require.Eventually(t, func() bool { return lanesOf("child") == 0 }, time.Minute, 5*time.Millisecond,
			"the parent takes the lanes of the stopped child over")
		parentBefore := startsOf(os.Getpid())
		require.Eventually(t, func() bool { return startsOf(os.Getpid()) >= parentBefore+50 }, time.Minute, 5*time.Millisecond)
		var last int64 // the last start of the child before it stopped
		require.NoError(t, db.QueryRowContext(ctx, q("SELECT MAX(id) FROM starts WHERE pid = ?"), pid).Scan(&last))
		child.Continue()

		require.Eventually(t, func() bool { return count(t, ob) == 0 }, 5*time.Minute, 10*time.Millisecond,
			"the relays drain the outbox")
		stopParent()

		type start struct {
			id    int64
			pid   int
			batch int64
		}
		rows, err := db.QueryContext(ctx, "SELECT id, message_id, pid, batch FROM starts ORDER BY id")
		require.NoError(t, err)
		defer rows.Close()
		starts := map[string][]start{}
		var order []string
		afterContinue := 0
		for rows.Next() {
			var (
				s  start
				id string
			)
			require.NoError(t, rows.Scan(&s.id, &id, &s.pid, &s.batch))
			starts[id] = append(starts[id], s)
			order = append(order, id)
			if s.pid == pid && s.id > last {
				afterContinue++
			}
		}
		require.NoError(t, rows.Err())
		inFlight := map[int64]bool{} // the child's batches started before it stopped
		for _, ss := range starts {
			for _, s := range ss {
				if s.pid == pid && s.id <= last {
					inFlight[s.batch] = true
				}
			}
		}
		assert.Len(t, starts, keys*perKey, "every message published")
		assertKeyOrder(t, order)
		// A message published twice must have been in the child's hands
		// as it stopped: in a batch it had started, never acknowledged.
		var duplicated, unexplained []string
		for id, ss := range starts {
			if len(ss) == 1 {
				continue
			}
			duplicated = append(duplicated, id)
			if !slices.ContainsFunc(ss, func(s start) bool { return s.pid == pid && inFlight[s.batch] }) {
				unexplained = append(unexplained, fmt.Sprintf("%s %v", id, ss))
			}
		}
		slices.Sort(duplicated)
		slices.Sort(unexplained)
		assert.Empty(t, unexplained[:min(len(unexplained), 10)],
			"%d messages published more than once, none of the copies in a batch the child started before it stopped (id, [start pid batch])", len(unexplained))
		t.Logf("%s: the child held %d lanes as it stopped; %d publishes by the child after it went on; %d messages published twice: %v",
			db.Dialect, held, afterContinue, len(duplicated), duplicated[:min(len(duplicated), 2*batch)])
		assert.LessOrEqual(t, len(duplicated), batch, "duplicates are bounded by the batch in flight")

		// The child goes on working: alone now, it publishes what comes.
		// (With the parent running, the parent may have drained the rest
		// before the child went on.)
		before := startsOf(pid)
		enqueue(t, db.DB, ob, outbox.Message{ID: "after", Topic: "t", Key: "after"})
		require.Eventually(t, func() bool { return startsOf(pid) > before }, time.Minute, 5*time.Millisecond,
			"the child, gone on, publishes alone\n%s", child.Output())
		child.Kill()
	})
}

// A relay whose claim took so long that the lease left would not cover a
// publish (a database that answers slowly) publishes nothing of the batch:
// it puts the batch back, its attempt uncounted, and says why.
func TestSlowClaimIsPutBackUnpublished(t *testing.T) {
	for _, database := range servicetest.Databases[1:] { // SQLite has no connection to slow down
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			direct := database.Open(t)
			ob := outboxOf(t, direct)
			viaProxy, proxy := servicetest.ThroughProxy(t, direct)
			for i := range 3 {
				enqueue(t, direct.DB, ob, outbox.Message{ID: fmt.Sprint("m", i), Topic: "t"})
			}
			pub := &memPublisher{}
			relay := outbox.New(viaProxy.DB, ob.Dialect()).NewRelay(pub, outbox.WithLease(time.Second),
				outbox.WithPublishTimeout(400*time.Millisecond))
			require.NoError(t, viaProxy.PingContext(context.Background()))
			proxy.Delay(700 * time.Millisecond) // a claim takes more than the lease less the publish timeout
			n, err := relay.Process(context.Background())
			assert.Zero(t, n)
			assert.ErrorContains(t, err, "put back unpublished")
			assert.Empty(t, pub.ids(), "nothing published of a batch the relay may not hold")

			proxy.Restore()
			assert.Equal(t, 3, drain(t, relay), "the batch was put back at once")
			got := pub.published()
			require.Len(t, got, 3)
			for _, m := range got {
				assert.Equal(t, 1, m.Attempts, "%s: the attempt put back is not counted", m.ID)
			}
		})
	}
}
