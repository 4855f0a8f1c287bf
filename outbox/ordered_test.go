package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// runRelays runs n relays until the returned stop is called.
func runRelays(t *testing.T, n int, newRelay func(i int) *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		r := newRelay(i)
		wg.Go(func() { assert.NoError(t, r.Run(ctx)) })
	}
	return func() { cancel(); wg.Wait() }
}

// writeWithHeldTransactions writes keys×perKey messages "key:seq" from four
// goroutines, serialized per key as writers of one aggregate are, while
// holding some transactions open and committing later ones of other keys
// first. Where the database allows two writers at once, it also writes two
// messages of one key from two transactions and commits the later first.
// It returns the IDs of the committed messages.
func writeWithHeldTransactions(t *testing.T, db *servicetest.DB, ob *outbox.Outbox, keys, perKey int) map[string]bool {
	ctx := context.Background()
	var (
		mu        sync.Mutex
		committed = map[string]bool{}
		keyLocks  = make([]sync.Mutex, keys)
		wg        sync.WaitGroup
	)
	write := func(key, seq int, hold time.Duration) {
		keyLocks[key].Lock()
		defer keyLocks[key].Unlock()
		id := fmt.Sprintf("k%d:%d", key, seq)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: "t", Key: fmt.Sprint("k", key)}))
		if hold > 0 {
			time.Sleep(hold) // others commit meanwhile
		}
		require.NoError(t, tx.Commit())
		mu.Lock()
		committed[id] = true
		mu.Unlock()
	}
	for w := range 4 {
		wg.Go(func() {
			for seq := 1; seq <= perKey; seq++ {
				for key := w; key < keys; key += 4 {
					hold := time.Duration(0)
					if db.Dialect != "sqlite" && (key+seq)%7 == 0 {
						hold = 30 * time.Millisecond
					}
					write(key, seq, hold)
				}
			}
		})
	}
	if db.Dialect != "sqlite" {
		// Two transactions of one key: the first inserts, the second
		// inserts after it and commits first.
		wg.Go(func() {
			first, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, ob.Enqueue(ctx, first, outbox.Message{ID: "same:1", Topic: "t", Key: "same"}))
			second, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, ob.Enqueue(ctx, second, outbox.Message{ID: "same:2", Topic: "t", Key: "same"}))
			require.NoError(t, second.Commit())
			time.Sleep(200 * time.Millisecond)
			require.NoError(t, first.Commit())
			mu.Lock()
			committed["same:1"], committed["same:2"] = true, true
			mu.Unlock()
		})
	}
	wg.Wait()
	return committed
}

// waitPublished waits until every committed message was published.
func waitPublished(t *testing.T, pub *memPublisher, committed map[string]bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, id := range pub.ids() {
			seen[id] = true
		}
		for id := range committed {
			if !seen[id] {
				return false
			}
		}
		return true
	}, 60*time.Second, 10*time.Millisecond, "every committed message is published")
}

func TestFourUnorderedRelaysLoseNothing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		pub := &memPublisher{}
		stop := runRelays(t, 4, func(i int) *outbox.Relay {
			return ob.NewRelay(pub, outbox.WithBatchSize(16), outbox.WithPollInterval(20*time.Millisecond))
		})
		committed := writeWithHeldTransactions(t, db, ob, 16, 10)
		waitPublished(t, pub, committed)
		stop()
		assert.Zero(t, count(t, ob))
		assert.Len(t, pub.ids(), len(committed), "no duplicates without failures")
	})
}

func TestFourOrderedRelaysKeepEachKeysOrder(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		pub := &memPublisher{}
		stop := runRelays(t, 4, func(i int) *outbox.Relay {
			return ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithBatchSize(16),
				outbox.WithPollInterval(20*time.Millisecond), outbox.WithGapGrace(time.Second), outbox.WithRelayID(fmt.Sprint("r", i)))
		})
		committed := writeWithHeldTransactions(t, db, ob, 16, 10)
		waitPublished(t, pub, committed)
		stop()
		assert.Zero(t, count(t, ob))
		assertKeyOrder(t, pub.ids())

		// The lanes were shared: no relay kept them all.
		var owners int
		require.NoError(t, db.QueryRow("SELECT COUNT(DISTINCT owner) FROM outbox_messages_lanes").Scan(&owners))
		assert.Zero(t, owners, "stopped relays give their lanes back")
	})
}

// assertKeyOrder checks that, per key, the first publication of each
// message follows the order of its sequence number: no message published
// before one written earlier.
func assertKeyOrder(t *testing.T, ids []string) {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue // a repeat of a message already published
		}
		seen[id] = true
		key, seqText, ok := strings.Cut(id, ":")
		require.True(t, ok, id)
		seq, err := strconv.Atoi(seqText)
		require.NoError(t, err)
		if !assert.Equal(t, last[key]+1, seq, "key %s: %s published after %d", key, id, last[key]) {
			return
		}
		last[key] = seq
	}
}

// In ordered mode a message that keeps failing holds up its lane, and only
// its lane; once dead it waits for an operator, and the lane goes on after
// it is discarded.
func TestOrderedPoisonBlocksOnlyItsLane(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		ctx := context.Background()
		pub := &memPublisher{fail: func(m outbox.Message) error {
			if m.ID == "p:1" {
				return errors.New("poison")
			}
			return nil
		}}
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithMaxAttempts(2),
			outbox.WithRetryBackoff(time.Millisecond, time.Millisecond), outbox.WithGapGrace(0))
		// p's lane also holds another key, written after the poison.
		other := sameLaneKey(t, "p")
		enqueue(t, db.DB, ob, outbox.Message{ID: "p:1", Topic: "t", Key: "p"}, outbox.Message{ID: "p:2", Topic: "t", Key: "p"},
			outbox.Message{ID: other + ":1", Topic: "t", Key: other}, outbox.Message{ID: "free:1", Topic: "t", Key: "free"})
		settle(t, db)
		for range 5 {
			_, err := relay.Process(ctx)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		assert.Equal(t, []string{"free:1"}, pub.ids(), "other lanes flow; the poison's lane waits")
		dead, err := ob.ListDead(ctx, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, "p:1", dead[0].ID)

		n, err := ob.Discard(ctx, "p:1")
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		time.Sleep(5 * time.Millisecond)
		drain(t, relay)
		assert.Equal(t, []string{"free:1", "p:2", other + ":1"}, pub.ids(), "the lane resumes in order")
	})
}

// sameLaneKey returns a key other than key that shares its lane.
func sameLaneKey(t *testing.T, key string) string {
	t.Helper()
	for i := range 10_000 {
		if k := fmt.Sprint("x", i); laneOf(k) == laneOf(key) {
			return k
		}
	}
	t.Fatal("no key shares the lane")
	return ""
}

// A failed message in ordered mode is retried before anything after it.
func TestOrderedRetryKeepsOrder(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, ob *outbox.Outbox) {
		fails := 2
		pub := &memPublisher{}
		pub.fail = func(m outbox.Message) error {
			if m.ID == "k:2" && fails > 0 {
				fails--
				return errors.New("transient")
			}
			return nil
		}
		relay := ob.NewRelay(pub, outbox.WithOrdered(), outbox.WithRetryBackoff(time.Millisecond, time.Millisecond),
			outbox.WithGapGrace(0))
		var msgs []outbox.Message
		for i := 1; i <= 5; i++ {
			msgs = append(msgs, outbox.Message{ID: fmt.Sprint("k:", i), Topic: "t", Key: "k"})
		}
		enqueue(t, db.DB, ob, msgs...)
		settle(t, db)
		require.Eventually(t, func() bool {
			_, err := relay.Process(context.Background())
			require.NoError(t, err)
			return len(pub.ids()) == 5
		}, 10*time.Second, 2*time.Millisecond)
		assert.Equal(t, []string{"k:1", "k:2", "k:3", "k:4", "k:5"}, pub.ids())
	})
}
