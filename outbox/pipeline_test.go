package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// heldPublisher holds each batch until the test lets it go, and checks
// that the relay never calls it from two goroutines at once.
type heldPublisher struct {
	memPublisher
	entered chan int // the size of each batch handed over
	release chan struct{}
	inside  atomic.Int32
	overlap atomic.Bool
}

func (p *heldPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if p.inside.Add(1) > 1 {
		p.overlap.Store(true)
	}
	defer p.inside.Add(-1)
	p.entered <- len(msgs)
	<-p.release
	return p.memPublisher.Publish(ctx, msgs)
}

// lockedCount counts the messages some claim holds.
func lockedCount(t *testing.T, db *servicetest.DB) (n int) {
	t.Helper()
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM outbox_messages WHERE locked_by IS NOT NULL").Scan(&n))
	return n
}

// While the Publisher has a batch, Run claims the next one, and it
// acknowledges the batch before while the next is published; the Publisher
// is called from one goroutine at a time. When Run stops with a batch
// claimed ahead, it puts that batch back, its attempt uncounted.
func TestRunClaimsAheadAndPutsBackOnStop(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		for i := range 30 {
			enqueue(t, db.DB, ob, outbox.Message{ID: fmt.Sprint("m", i), Topic: "t"})
		}
		pub := &heldPublisher{entered: make(chan int), release: make(chan struct{})}
		relay := ob.NewRelay(pub, outbox.WithBatchSize(10))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- relay.Run(ctx) }()

		assert.Equal(t, 10, <-pub.entered, "the first batch")
		require.Eventually(t, func() bool { return lockedCount(t, db) == 20 }, time.Minute, time.Millisecond,
			"the second batch is claimed while the first is published")
		pub.release <- struct{}{}
		assert.Equal(t, 10, <-pub.entered, "the second batch")
		require.Eventually(t, func() bool { return count(t, ob) == 20 }, time.Minute, time.Millisecond,
			"the first batch is acknowledged while the second is published")
		require.Eventually(t, func() bool { return lockedCount(t, db) == 20 }, time.Minute, time.Millisecond,
			"and the third claimed")

		cancel() // the second batch is in hand, the third claimed ahead
		pub.release <- struct{}{}
		require.NoError(t, <-done)
		assert.Equal(t, 0, lockedCount(t, db), "the batch claimed ahead is put back")
		assert.Equal(t, 10, count(t, ob), "the third batch waits, unpublished")
		var attempts int
		require.NoError(t, db.QueryRow("SELECT MAX(attempts) FROM outbox_messages").Scan(&attempts))
		assert.Zero(t, attempts, "its attempt is not counted")
		assert.Len(t, pub.ids(), 20)
		assert.False(t, pub.overlap.Load(), "the Publisher was called from two goroutines at once")
	})
}

// Several pipelined relays publish every message once, when nothing fails.
func TestPipelinedRelaysPublishEachMessageOnce(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		pub := &memPublisher{}
		var stale atomic.Int64
		stop := runRelays(t, 3, func(int) *outbox.Relay {
			return ob.NewRelay(pub, outbox.WithBatchSize(7), outbox.WithPollInterval(5*time.Millisecond),
				outbox.WithOnEvent(func(e outbox.Event) {
					if e.Kind == outbox.Stale {
						stale.Add(int64(e.Count))
					}
				}))
		})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 100 {
					enqueue(t, db.DB, ob, outbox.Message{ID: fmt.Sprintf("w%d-%d", w, i), Topic: "t"})
				}
			})
		}
		wg.Wait()
		require.Eventually(t, func() bool { return count(t, ob) == 0 }, time.Minute, 5*time.Millisecond)
		stop()
		seen := map[string]int{}
		for _, id := range pub.ids() {
			seen[id]++
		}
		assert.Len(t, seen, 400)
		for id, n := range seen {
			assert.Equal(t, 1, n, "%s published %d times", id, n)
		}
		assert.Zero(t, stale.Load())
	})
}
