package saga_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

func noopStep(name string) saga.Item {
	noop := func(context.Context, *saga.Call) error { return nil }
	return saga.Step(name, noop, noop)
}

// BenchmarkInMemory runs sagas of 1 and 4 no-op steps without a store: the
// difference, divided by 3, is the coordinator's cost per step.
func BenchmarkInMemory(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("steps=%d", n), func(b *testing.B) {
			var items []saga.Item
			for i := range n {
				items = append(items, noopStep(fmt.Sprint("s", i)))
			}
			def := saga.Define("bench", 1, items...)
			c := saga.New()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Run(ctx, def, "id", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInMemoryCompensated runs a saga of 3 steps whose last fails: the
// cost of the failure path, with two compensations.
func BenchmarkInMemoryCompensated(b *testing.B) {
	fail := func(context.Context, *saga.Call) error { return errDeclined }
	def := saga.Define("bench", 1, noopStep("a"), noopStep("b"), saga.Step("c", fail, nil))
	c := saga.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Run(ctx, def, "id", nil); err == nil {
			b.Fatal("succeeded")
		}
	}
}

// BenchmarkDurable runs durable sagas of 3 no-op steps, 16 at once, on each
// database, and reports sagas per second and commits per saga.
func BenchmarkDurable(b *testing.B) {
	for _, database := range servicetest.Databases {
		b.Run(database.Dialect, func(b *testing.B) {
			s := newStore(b, database.Open(b))
			def := saga.Define("bench", 1, noopStep("reserve"), noopStep("charge"), noopStep("ship"))
			c := saga.New(saga.WithStore(s.DB.DB, s.d))
			s.DB.SetMaxOpenConns(16)
			s.DB.SetMaxIdleConns(16)
			ctx := context.Background()
			var seq atomic.Int64
			b.SetParallelism(8) // 16 goroutines on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Run(ctx, def, fmt.Sprint("s-", seq.Add(1)), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sagas/s")
			b.ReportMetric(float64(c.Stats().Commits)/float64(b.N), "commits/saga")
		})
	}
}
