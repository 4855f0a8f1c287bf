package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// A broker that is down for a while loses nothing: messages back off, and
// the backlog drains once it is back.
func TestBrokerDownThenBack(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		var down atomic.Bool
		down.Store(true)
		pub := &memPublisher{fail: func(outbox.Message) error {
			if down.Load() {
				return errors.New("broker: connection refused")
			}
			return nil
		}}
		var failures atomic.Int64
		stop := runRelays(t, 2, func(int) *outbox.Relay {
			return ob.NewRelay(pub, outbox.WithPollInterval(10*time.Millisecond), outbox.WithMaxAttempts(1000),
				outbox.WithRetryBackoff(time.Millisecond, 20*time.Millisecond),
				outbox.WithOnEvent(func(e outbox.Event) {
					if e.Kind == outbox.Failed {
						failures.Add(int64(e.Count))
					}
				}))
		})
		var want []string
		for i := range 100 {
			id := fmt.Sprint("m", i)
			want = append(want, id)
			enqueue(t, db.DB, ob, outbox.Message{ID: id, Topic: "t"})
		}
		require.Eventually(t, func() bool { return failures.Load() >= 200 }, 30*time.Second, 5*time.Millisecond,
			"the relays keep trying while the broker is down")
		assert.Empty(t, pub.ids())
		down.Store(false)
		require.Eventually(t, func() bool { return count(t, ob) == 0 }, 30*time.Second, 5*time.Millisecond)
		stop()
		assert.ElementsMatch(t, want, pub.ids(), "every message, once the broker is back")
	})
}

// A database connection cut in the middle of the relay's work: the relay
// reports errors, goes on by itself once the database answers again, and
// nothing is lost.
func TestDatabaseConnectionCut(t *testing.T) {
	for _, database := range servicetest.Databases[1:] { // SQLite has no connection to cut
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			direct := database.Open(t)
			ob := outboxOf(t, direct)
			viaProxy, proxy := servicetest.ThroughProxy(t, direct)
			pub := &memPublisher{}
			var dbErrors atomic.Int64
			relay := outbox.New(viaProxy.DB, ob.Dialect()).NewRelay(pub, outbox.WithBatchSize(10), outbox.WithLease(2*time.Second),
				outbox.WithPublishTimeout(500*time.Millisecond), outbox.WithPollInterval(5*time.Millisecond),
				outbox.WithOnEvent(func(e outbox.Event) {
					if e.Kind == outbox.Error {
						dbErrors.Add(1)
					}
				}))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- relay.Run(ctx) }()

			var want []string
			write := func(n int) {
				for range n {
					id := fmt.Sprint("m", len(want))
					want = append(want, id)
					enqueue(t, direct.DB, ob, outbox.Message{ID: id, Topic: "t"})
				}
			}
			write(100)
			require.Eventually(t, func() bool { return len(pub.ids()) > 0 }, 10*time.Second, time.Millisecond)
			proxy.Cut() // mid-batch, most likely
			write(100)
			require.Eventually(t, func() bool { return dbErrors.Load() > 0 }, 10*time.Second, time.Millisecond,
				"the relay sees the cut")
			time.Sleep(300 * time.Millisecond)
			proxy.Restore()
			require.Eventually(t, func() bool { return count(t, ob) == 0 }, 30*time.Second, 5*time.Millisecond,
				"the relay recovers on its own")
			cancel()
			assert.NoError(t, <-done)
			published := map[string]bool{}
			for _, id := range pub.ids() {
				published[id] = true
			}
			for _, id := range want {
				assert.True(t, published[id], "%s lost", id)
			}
		})
	}
}
