package projection_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/projection"
)

// BenchmarkRebuild replays a log of 5000 events over 50 SKUs into a new
// generation of the stock read model: an update (or insert) per event, in
// batches of 1000.
func BenchmarkRebuild(b *testing.B) {
	const events = 5000
	for _, database := range []servicetest.Database{{Dialect: "postgres", Open: servicetest.Postgres}, {Dialect: "sqlite", Open: servicetest.SQLite}} {
		b.Run(database.Dialect, func(b *testing.B) {
			db := database.Open(b)
			s := eventstore.New(db.DB, dialectNamed(db.Dialect))
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			pr := projection.New(s, stock(db.Dialect))
			if err := pr.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			batch := make([]eventstore.Event, 1000)
			for done := 0; done < events; done += len(batch) {
				for i := range batch {
					batch[i] = eventstore.Event{Type: "Received", Payload: fmt.Appendf(nil, "sku%d 1", (done+i)%50)}
				}
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Append(ctx, tx, "fill", eventstore.Any, batch...); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := pr.Rebuild(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
