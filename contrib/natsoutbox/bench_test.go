package natsoutbox_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/contrib/natsoutbox"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// fileStream makes the streams of the benchmarks keep their messages on
// disk, as a stream that an outbox feeds would.
func fileStream(c *jetstream.StreamConfig) { c.Storage = jetstream.FileStorage }

// batchOf returns n messages of 128 bytes to topic.
func batchOf(n int, topic string) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: topic, Key: "k" + strconv.Itoa(i%16), Payload: make([]byte, 128),
			Headers: map[string]string{"Content-Type": "application/json"}}
	}
	return msgs
}

// BenchmarkPublish publishes batches of 256 messages of 128 bytes, each
// with a new ID, to a file stream, and waits for their acknowledgements.
func BenchmarkPublish(b *testing.B) {
	_, js := connect(b)
	_, name := newStream(b, js, fileStream)
	pub := natsoutbox.New(js)
	const size = 256
	msgs := batchOf(size, name+".orders")
	ctx := context.Background()
	seq := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range msgs {
			seq++
			msgs[i].ID = strconv.Itoa(seq)
		}
		if errs := pub.Publish(ctx, msgs); errs != nil {
			b.Fatalf("Publish: %v", errs)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublishParallel publishes batches of 256 messages from several
// goroutines through one Publisher.
func BenchmarkPublishParallel(b *testing.B) {
	_, js := connect(b)
	_, name := newStream(b, js, fileStream)
	pub := natsoutbox.New(js)
	const size = 256
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		msgs := batchOf(size, name+".orders")
		prefix := servicetest.UniqueName(b) + "-"
		seq := 0
		for pb.Next() {
			for i := range msgs {
				seq++
				msgs[i].ID = prefix + strconv.Itoa(seq)
			}
			if errs := pub.Publish(ctx, msgs); errs != nil {
				b.Errorf("Publish: %v", errs)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRelayPostgresToJetStream measures a relay's throughput from an
// outbox in PostgreSQL to a file stream: each round enqueues 20,000
// messages (untimed), then times draining them with Relay.Process in
// batches of 500.
func BenchmarkRelayPostgresToJetStream(b *testing.B) {
	db := servicetest.Postgres(b)
	_, js := connect(b)
	_, name := newStream(b, js, fileStream)
	ctx := context.Background()
	require.NoError(b, outbox.New(db.DB, outbox.Postgres).Migrate(ctx))
	relay := outbox.New(db.DB, outbox.Postgres).NewRelay(natsoutbox.New(js), outbox.WithBatchSize(500))
	const n = 20_000
	var elapsed time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		enqueue(b, db.DB, name+".orders", n)
		b.StartTimer()
		start := time.Now()
		if got := drain(b, relay); got != n {
			b.Fatalf("published %d messages, want %d", got, n)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkRunPostgresToJetStream measures running relays with default
// settings, one and two, from an outbox in PostgreSQL to a file stream:
// each round enqueues 20,000 messages (untimed), then times the relays'
// Run until the stream holds them all.
func BenchmarkRunPostgresToJetStream(b *testing.B) {
	for _, relays := range []int{1, 2} {
		b.Run(fmt.Sprintf("relays=%d", relays), func(b *testing.B) {
			db := servicetest.Postgres(b)
			_, js := connect(b)
			stream, name := newStream(b, js, fileStream)
			ctx := context.Background()
			orders := outbox.New(db.DB, outbox.Postgres)
			require.NoError(b, orders.Migrate(ctx))
			const n = 20_000
			var elapsed time.Duration
			stored := uint64(0)
			for b.Loop() {
				b.StopTimer()
				enqueue(b, db.DB, name+".orders", n)
				rctx, cancel := context.WithCancel(ctx)
				var wg sync.WaitGroup
				b.StartTimer()
				start := time.Now()
				for range relays {
					relay := orders.NewRelay(natsoutbox.New(js))
					wg.Go(func() {
						if err := relay.Run(rctx); err != nil {
							b.Error(err)
						}
					})
				}
				stored += n
				for {
					info, err := stream.Info(ctx)
					require.NoError(b, err)
					if info.State.Msgs >= stored {
						break
					}
					time.Sleep(time.Millisecond)
				}
				elapsed += time.Since(start)
				b.StopTimer()
				cancel()
				wg.Wait()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAckError reads a PubAck as the server sends it, through
// ackError's fast path, and by decoding it in full as ackError would
// without one.
func BenchmarkAckError(b *testing.B) {
	ack := &nats.Msg{Data: []byte(`{"stream":"ORDERS", "seq":1234567}`)}
	b.Run("fast path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := natsoutbox.AckError(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := natsoutbox.DecodeAck(ack.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
