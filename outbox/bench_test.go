package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// discard is a Publisher that accepts everything at once.
type discard struct{}

func (discard) Publish(context.Context, []outbox.Message) []error { return nil }

// BenchmarkEnqueue is the cost of writing one message inside an existing
// transaction, per database: ns and allocations per message.
func BenchmarkEnqueue(b *testing.B) {
	for _, database := range servicetest.Databases {
		b.Run(database.Dialect, func(b *testing.B) {
			db := database.Open(b)
			ob := outboxOf(b, db)
			ctx := context.Background()
			payload := []byte(`{"order":"o-1234","total":4200}`)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := ob.Enqueue(ctx, tx, outbox.Message{Topic: "orders", Key: "o-1234", Payload: payload}); err != nil {
					b.Fatal(err)
				}
				if i++; i%1000 == 0 { // keep transactions a realistic size
					b.StopTimer()
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
					if tx, err = db.BeginTx(ctx, nil); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkEnqueueBatch is the cost per message of writing 100 messages in
// one call inside an existing transaction: the ns/msg metric.
func BenchmarkEnqueueBatch(b *testing.B) {
	for _, database := range servicetest.Databases {
		b.Run(database.Dialect, func(b *testing.B) {
			db := database.Open(b)
			ob := outboxOf(b, db)
			ctx := context.Background()
			payload := []byte(`{"order":"o-1234","total":4200}`)
			msgs := make([]outbox.Message, 100)
			b.ReportAllocs()
			var spent time.Duration
			for b.Loop() {
				b.StopTimer()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				for i := range msgs {
					msgs[i] = outbox.Message{Topic: "orders", Key: "o-1234", Payload: payload}
				}
				b.StartTimer()
				start := time.Now()
				if err := ob.Enqueue(ctx, tx, msgs...); err != nil {
					b.Fatal(err)
				}
				spent += time.Since(start)
				b.StopTimer()
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N*len(msgs)), "ns/msg")
		})
	}
}

// BenchmarkRelayThroughput is how fast one relay empties a backlog of
// 20,000 messages into a Publisher that accepts at once, in batches of 500,
// per database and mode: the msgs/s metric.
func BenchmarkRelayThroughput(b *testing.B) {
	const backlog = 20_000
	for _, ordered := range []bool{false, true} {
		mode := map[bool]string{false: "unordered", true: "ordered"}[ordered]
		for _, database := range servicetest.Databases {
			b.Run(mode+"/"+database.Dialect, func(b *testing.B) {
				db := database.Open(b)
				ob := outboxOf(b, db)
				ctx := context.Background()
				opts := []outbox.Option{outbox.WithBatchSize(500)}
				if ordered {
					opts = append(opts, outbox.WithOrdered(), outbox.WithGapGrace(0))
				}
				// One relay for every round, as in a service: a new one each
				// round would find the lanes still leased to the last.
				relay := ob.NewRelay(discard{}, opts...)
				var total time.Duration
				published := 0
				for b.Loop() {
					b.StopTimer()
					fill(b, db, ob, backlog)
					b.StartTimer()
					start := time.Now()
					for {
						n, err := relay.Process(ctx)
						if err != nil {
							b.Fatal(err)
						}
						if n == 0 {
							break
						}
						published += n
					}
					total += time.Since(start)
				}
				if left := count(b, ob); left != 0 {
					b.Fatalf("%d messages left unpublished", left)
				}
				b.ReportMetric(float64(published)/total.Seconds(), "msgs/s")
			})
		}
	}
}

// brokerPublisher stands for a broker that takes delay to accept a batch,
// whatever its size, as a round trip to it does; it closes full once it has
// accepted want messages.
type brokerPublisher struct {
	delay    time.Duration
	accepted atomic.Int64
	want     int64
	full     chan struct{}
}

func (p *brokerPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	time.Sleep(p.delay)
	if p.accepted.Add(int64(len(msgs))) >= p.want && p.want > 0 {
		select {
		case <-p.full:
		default:
			close(p.full)
		}
	}
	return nil
}

// BenchmarkRunThroughput is how fast running relays with default settings
// empty a backlog of 20,000 messages into a broker that takes 2 ms a
// batch, with one relay and with two, per database: the msgs/s metric.
// One relay claims the next batch and acknowledges the last while the
// broker has the current one.
func BenchmarkRunThroughput(b *testing.B) {
	const backlog = 20_000
	for _, relays := range []int{1, 2} {
		for _, database := range servicetest.Databases {
			b.Run(fmt.Sprintf("relays=%d/%s", relays, database.Dialect), func(b *testing.B) {
				db := database.Open(b)
				ob := outboxOf(b, db)
				var total time.Duration
				for b.Loop() {
					b.StopTimer()
					fill(b, db, ob, backlog)
					pub := &brokerPublisher{delay: 2 * time.Millisecond, want: backlog, full: make(chan struct{})}
					ctx, cancel := context.WithCancel(context.Background())
					var wg sync.WaitGroup
					b.StartTimer()
					start := time.Now()
					for range relays {
						relay := ob.NewRelay(pub)
						wg.Go(func() {
							if err := relay.Run(ctx); err != nil {
								b.Error(err)
							}
						})
					}
					<-pub.full
					total += time.Since(start)
					b.StopTimer()
					cancel()
					wg.Wait()
					if left := count(b, ob); left != 0 {
						b.Fatalf("%d messages left unpublished", left)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.N*backlog)/total.Seconds(), "msgs/s")
			})
		}
	}
}

// fill enqueues n messages with 64 keys, 500 to a transaction.
func fill(b testing.TB, db *servicetest.DB, ob *outbox.Outbox, n int) {
	ctx := context.Background()
	payload := []byte(`{"order":"o-1234","total":4200}`)
	for start := 0; start < n; start += 500 {
		msgs := make([]outbox.Message, min(500, n-start))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "orders", Key: fmt.Sprint("o-", (start+i)%64), Payload: payload}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ob.Enqueue(ctx, tx, msgs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// latencyPublisher records how long after its commit each message arrived.
type latencyPublisher struct {
	mu        sync.Mutex
	committed map[string]time.Time
	latencies []time.Duration
}

func (p *latencyPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		if at, ok := p.committed[m.ID]; ok {
			p.latencies = append(p.latencies, now.Sub(at))
		}
	}
	return nil
}

// BenchmarkCommitToPublish measures, at a steady 2,000 messages a second
// from one writer for two seconds, the time from a transaction's commit to
// the Publisher receiving its message, with a running relay woken in
// process: the p50 and p99 metrics, per database.
func BenchmarkCommitToPublish(b *testing.B) {
	for _, database := range servicetest.Databases {
		b.Run(database.Dialect, func(b *testing.B) {
			db := database.Open(b)
			ob := outboxOf(b, db)
			var all []time.Duration
			for b.Loop() {
				pub := &latencyPublisher{committed: map[string]time.Time{}}
				relay := ob.NewRelay(pub)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- relay.Run(ctx) }()
				const rate, seconds = 2000, 2
				tick := time.NewTicker(time.Second / rate)
				for i := range rate * seconds {
					<-tick.C
					id := fmt.Sprint("m-", i)
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := ob.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: "t"}); err != nil {
						b.Fatal(err)
					}
					pub.mu.Lock() // before the commit: the relay may publish at once
					pub.committed[id] = time.Now()
					pub.mu.Unlock()
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
					pub.mu.Lock()
					pub.committed[id] = time.Now()
					pub.mu.Unlock()
				}
				tick.Stop()
				time.Sleep(100 * time.Millisecond)
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				pub.mu.Lock()
				all = append(all, pub.latencies...)
				pub.mu.Unlock()
			}
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
