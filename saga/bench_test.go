package saga_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

func noopStep(name string) saga.StepItem {
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

// BenchmarkDurable runs durable sagas of 3 steps, 8 at once, on each
// database, and then, in the same run, its floor: as many single-statement
// writes per saga as the saga commits (an insert of an instance row, then
// updates of it, and the steps' own inserts), 8 at once. The steps do
// nothing (noop), or each inserts a row of its own (writing: 7 commits a
// saga, as a saga whose participants share its database makes). It reports
// sagas per second for both, their ratio, commits per saga, and this
// process's CPU time per saga (user and system, the database server's not
// counted) for both. ns/op is the sagas'.
func BenchmarkDurable(b *testing.B) {
	const workers = 8
	for _, writing := range []bool{false, true} {
		for _, database := range servicetest.Databases {
			b.Run(map[bool]string{false: "noop/", true: "writing/"}[writing]+database.Dialect, func(b *testing.B) {
				benchmarkDurable(b, database, workers, writing)
			})
		}
	}
}

func benchmarkDurable(b *testing.B, database servicetest.Database, workers int, writing bool) {
	s := newStore(b, database.Open(b))
	_, err := s.ExecContext(context.Background(), "CREATE TABLE bench_effects (saga_id VARCHAR(128) NOT NULL, step VARCHAR(16) NOT NULL)")
	if err != nil {
		b.Fatal(err)
	}
	effect := rebind(s.Dialect, "INSERT INTO bench_effects (saga_id, step) VALUES (?, ?)")
	step := func(name string) saga.Item {
		if !writing {
			return noopStep(name)
		}
		return saga.Step(name, func(ctx context.Context, c *saga.Call) error {
			_, err := s.ExecContext(ctx, effect, c.SagaID, name)
			return err
		}, nil)
	}
	def := saga.Define("bench", 1, step("reserve"), step("charge"), step("ship"))
	c := saga.New(saga.WithStore(s.DB.DB, s.d))
	s.DB.SetMaxOpenConns(workers)
	s.DB.SetMaxIdleConns(workers)
	ctx := context.Background()
	run := fmt.Sprint(time.Now().UnixNano())
	// Warm the connections and their statements.
	for i := range workers {
		if err := c.Run(ctx, def, fmt.Sprint("warm-", run, "-", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	warm := c.Stats().Commits
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	start := time.Now()
	concurrently(b, workers, func(i int64) error { return c.Run(ctx, def, fmt.Sprint("s-", run, "-", i), nil) })
	elapsed, sagaCPU := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	commits := int((c.Stats().Commits - warm) / int64(b.N))
	steps := 0
	if writing {
		steps = 3
	}

	insert := rebind(s.Dialect, `INSERT INTO saga_instances (id, name, version, status, input, owner, lease_until,
		created_at, updated_at) VALUES (?, 'bench', 1, 1, NULL, 'floor', 1, 1, 1)`)
	update := rebind(s.Dialect, `UPDATE saga_instances SET status = ?, lease_until = ?, updated_at = ? WHERE id = ?`)
	cpu = cpuTime()
	floorStart := time.Now()
	concurrently(b, workers, func(i int64) error {
		id := fmt.Sprint("f-", run, "-", i)
		if _, err := s.ExecContext(ctx, insert, id); err != nil {
			return err
		}
		for k := range commits - 1 {
			if _, err := s.ExecContext(ctx, update, k+1, i, k, id); err != nil {
				return err
			}
		}
		for range steps {
			if _, err := s.ExecContext(ctx, effect, id, "floor"); err != nil {
				return err
			}
		}
		return nil
	})
	floor, floorCPU := time.Since(floorStart), cpuTime()-cpu

	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sagas/s")
	b.ReportMetric(float64(b.N)/floor.Seconds(), "floor-sagas/s")
	b.ReportMetric(floor.Seconds()/elapsed.Seconds(), "ratio")
	b.ReportMetric(float64(commits+steps), "commits/saga")
	b.ReportMetric(float64(sagaCPU.Microseconds())/float64(b.N), "cpu-µs/saga")
	b.ReportMetric(float64(floorCPU.Microseconds())/float64(b.N), "floor-cpu-µs/saga")
}

// concurrently calls f(i) for i from 0 to b.N-1, from workers goroutines.
func concurrently(b *testing.B, workers int, f func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
