package rabbitoutbox_test

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/contrib/rabbitoutbox"
	"github.com/resilience-go/resilience/outbox"
)

const benchBatch = 256

// firstErr returns the first error of a Publish, or nil.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkPublish publishes batches of 256 small messages and waits for
// their confirms: to a transient queue, and persistent messages to a durable
// one, which confirms once they are on disk.
func BenchmarkPublish(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name := "transient"
		if durable {
			name = "durable"
		}
		b.Run(name, func(b *testing.B) {
			url, ch := broker(b)
			top := declare(b, url, ch, durable, amqp.Table{"x-max-length": int32(10_000)})
			p := dial(b, url, rabbitoutbox.WithPersistent(durable))
			msgs := messages(top.name, "m", benchBatch)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := firstErr(p.Publish(ctx, msgs)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRelay measures a relay from a database to RabbitMQ: each
// iteration claims a batch of 256 messages, publishes them to a durable
// queue with confirms, and deletes them. Writing the messages is not timed.
func BenchmarkRelay(b *testing.B) {
	url, ch := broker(b)
	for _, database := range databases {
		b.Run(database.name, func(b *testing.B) {
			db := database.open(b)
			require.NoError(b, outbox.New(db.DB, database.dialect).Migrate(context.Background()))
			top := declare(b, url, ch, true, amqp.Table{"x-max-length": int32(10_000)})
			p := dial(b, url, rabbitoutbox.WithExchange(top.name))
			relay := outbox.New(db.DB, database.dialect).NewRelay(p, outbox.WithBatchSize(benchBatch))
			msgs := make([]outbox.Message, benchBatch)
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				for i := range msgs {
					msgs[i] = outbox.Message{Topic: top.name, Payload: []byte(`{"n":1}`)}
				}
				enqueue(b, db.DB, database.dialect, msgs...)
				b.StartTimer()
				n, err := relay.Process(ctx)
				if err != nil || n != benchBatch {
					b.Fatalf("Process: %d published, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkEncode maps one message to its publishing.
func BenchmarkEncode(b *testing.B) {
	m := outbox.Message{ID: "0190f0c4-5b1e-7c3a-9d2f-4e6a8b0c1d2e", Topic: "orders.created", Key: "order-42",
		Payload: []byte(`{"order":42}`), Headers: map[string]string{"trace-id": "4bf92f35"}}
	opts := []rabbitoutbox.Option{rabbitoutbox.WithExchange("events")}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := rabbitoutbox.Encode(m, opts...); err != nil {
			b.Fatal(err)
		}
	}
}
