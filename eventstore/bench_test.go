package eventstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
)

// benchDatabases are the databases the benchmarks run on: PostgreSQL, the
// one the figures in the README come from, and the embedded SQLite.
var benchDatabases = []servicetest.Database{{Dialect: "postgres", Open: servicetest.Postgres}, {Dialect: "sqlite", Open: servicetest.SQLite}}

func benchStore(b *testing.B, database servicetest.Database) (*servicetest.DB, *eventstore.Store) {
	db := database.Open(b)
	s := eventstore.New(db.DB, dialectNamed(db.Dialect))
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return db, s
}

// BenchmarkAppend appends one event per transaction, against
// BenchmarkRawInsert, which commits one row of the same size per
// transaction into a plain table: the store's cost over the database's
// commit.
func BenchmarkAppend(b *testing.B) {
	payload := []byte(`{"sku":"A-1","quantity":3}`)
	for _, database := range benchDatabases {
		b.Run(database.Dialect, func(b *testing.B) {
			_, s := benchStore(b, database)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := appendTx(ctx, s, fmt.Sprint("stream-", i%100), eventstore.Any, eventstore.Event{Type: "ItemAdded", Payload: payload}); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkRawInsert(b *testing.B) {
	payload := []byte(`{"sku":"A-1","quantity":3}`)
	for _, database := range benchDatabases {
		b.Run(database.Dialect, func(b *testing.B) {
			db := database.Open(b)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `CREATE TABLE raw (id BIGINT PRIMARY KEY, stream VARCHAR(255) NOT NULL,
				event_id VARCHAR(64) NOT NULL, event_type VARCHAR(255) NOT NULL, payload `+map[string]string{"postgres": "BYTEA", "sqlite": "BLOB"}[db.Dialect]+` NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			insert := rebind(db.Dialect, "INSERT INTO raw (id, stream, event_id, event_type, payload) VALUES (?, ?, ?, ?, ?)")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, insert, i, fmt.Sprint("stream-", i%100), fmt.Sprint("id-", i), "ItemAdded", payload); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// fill appends n events in transactions of 1000.
func fill(b *testing.B, s *eventstore.Store, n int) {
	ctx := context.Background()
	batch := make([]eventstore.Event, 1000)
	for done := 0; done < n; done += len(batch) {
		for i := range batch {
			batch[i] = eventstore.Event{Type: "ItemAdded", Payload: []byte(`{"sku":"A-1","quantity":3}`)}
		}
		if _, err := appendTx(ctx, s, fmt.Sprint("fill-", done/1000%50), eventstore.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadAll reads the log in pages of 1000 events.
func BenchmarkReadAll(b *testing.B) {
	const events = 20_000
	for _, database := range benchDatabases {
		b.Run(database.Dialect, func(b *testing.B) {
			_, s := benchStore(b, database)
			fill(b, s, events)
			ctx := context.Background()
			b.ReportAllocs()
			read := 0
			from := int64(1)
			for b.Loop() {
				page, err := s.ReadAll(ctx, from, 1000)
				if err != nil {
					b.Fatal(err)
				}
				read += len(page)
				from += int64(len(page))
				if from > events {
					from = 1
				}
			}
			b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkCatchUp runs a subscription from the start of a log of 20000
// events to its end, with a handler that does nothing in its transaction:
// what the subscription costs by itself.
func BenchmarkCatchUp(b *testing.B) {
	const events = 20_000
	for _, database := range benchDatabases {
		b.Run(database.Dialect, func(b *testing.B) {
			_, s := benchStore(b, database)
			fill(b, s, events)
			ctx := context.Background()
			handled := 0
			h := func(_ context.Context, _ *sql.Tx, batch []eventstore.Event) error {
				handled += len(batch)
				return nil
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := s.Subscribe(ctx, fmt.Sprint("catch-up-", i), h, eventstore.WithBatchSize(1000), eventstore.UntilCaughtUp()); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if handled != events*b.N {
				b.Fatalf("handled %d events, want %d", handled, events*b.N)
			}
			b.ReportMetric(float64(handled)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAppendParallel appends one event per transaction from 16
// goroutines, to streams of their own, on PostgreSQL, against
// BenchmarkRawInsertParallel, which commits one row per transaction from as
// many: appends to different streams commit side by side, and share their
// commits' flushes as plain inserts do.
func BenchmarkAppendParallel(b *testing.B) {
	_, s := benchStore(b, benchDatabases[0])
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprint("stream-", seq.Add(1))
		for pb.Next() {
			if _, err := appendTx(ctx, s, stream, eventstore.Any, eventstore.Event{Type: "ItemAdded", Payload: []byte(`{}`)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkRawInsertParallel(b *testing.B) {
	db := servicetest.Postgres(b)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE raw (id BIGINT PRIMARY KEY, stream VARCHAR(255) NOT NULL, payload BYTEA NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := seq.Add(1)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO raw (id, stream, payload) VALUES ($1, $2, $3)", id, fmt.Sprint("stream-", id%16), []byte(`{}`)); err != nil {
				b.Error(err)
				return
			}
			if err := tx.Commit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAppendVsRawInsert alternates, in one loop, an append of one event
// in its own transaction and a raw insert of one row of the same size in
// its own transaction, and reports each rate and their ratio: on a shared
// machine, whose disk's flush time swings from run to run, the pairs see
// the same conditions.
func BenchmarkAppendVsRawInsert(b *testing.B) {
	payload := []byte(`{"sku":"A-1","quantity":3}`)
	for _, database := range benchDatabases {
		b.Run(database.Dialect, func(b *testing.B) {
			db, s := benchStore(b, database)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `CREATE TABLE raw (id BIGINT PRIMARY KEY, stream VARCHAR(255) NOT NULL,
				event_id VARCHAR(64) NOT NULL, event_type VARCHAR(255) NOT NULL, payload `+map[string]string{"postgres": "BYTEA", "sqlite": "BLOB"}[db.Dialect]+` NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			insert := rebind(db.Dialect, "INSERT INTO raw (id, stream, event_id, event_type, payload) VALUES (?, ?, ?, ?, ?)")
			var appending, inserting time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				if _, err := appendTx(ctx, s, fmt.Sprint("stream-", i%100), eventstore.Any, eventstore.Event{Type: "ItemAdded", Payload: payload}); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, insert, i, fmt.Sprint("stream-", i%100), fmt.Sprint("id-", i), "ItemAdded", payload); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				appending += mid.Sub(start)
				inserting += time.Since(mid)
				i++
			}
			b.ReportMetric(float64(b.N)/appending.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/inserting.Seconds(), "rows/s")
			b.ReportMetric(100*inserting.Seconds()/appending.Seconds(), "%raw")
		})
	}
}
