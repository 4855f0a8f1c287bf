package bulkhead_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
)

// BenchmarkDo is an uncontended call: a slot is always free.
func BenchmarkDo(b *testing.B) {
	bh := bulkhead.New(100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = bh.Do(ctx, nop)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once, on one bulkhead.
func BenchmarkDoParallel(b *testing.B) {
	bh := bulkhead.New(100)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = bh.Do(ctx, nop)
		}
	})
}

// BenchmarkDoRefused is a call refused by a full bulkhead.
func BenchmarkDoRefused(b *testing.B) {
	bh := bulkhead.New(1)
	defer occupy(bh)()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = bh.Do(ctx, nop)
	}
}

// occupy fills the single slot of p with a call that holds it until the
// returned release is called.
func occupy(p resilience.Policy) (release func()) {
	hold := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_ = p.Do(context.Background(), func(context.Context) error { close(started); <-hold; return nil })
	}()
	<-started
	return func() { close(hold) }
}

// BenchmarkSemaphore is golang.org/x/sync/semaphore's TryAcquire and
// Release around a call, for scale.
func BenchmarkSemaphore(b *testing.B) {
	s := semaphore.NewWeighted(100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if s.TryAcquire(1) {
			_ = nop(ctx)
			s.Release(1)
		}
	}
}

// observers are the observers the observed benchmarks run with: one that
// does nothing, the least an observer costs, and SlogObserver over a text
// handler at its default level, Info.
var observers = []struct {
	name string
	o    resilience.Observer
}{
	{"nop", resilience.ObserverFunc(func(context.Context, resilience.Event) {})},
	{"slog", resilience.SlogObserver(slog.New(slog.NewTextHandler(io.Discard, nil)))},
}

// BenchmarkDoObserved is BenchmarkDo with an observer.
func BenchmarkDoObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			bh := bulkhead.New(100, bulkhead.WithObserver(o.o))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = bh.Do(ctx, nop)
			}
		})
	}
}

// BenchmarkDoRefusedObserved is BenchmarkDoRefused with an observer.
func BenchmarkDoRefusedObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			bh := bulkhead.New(1, bulkhead.WithObserver(o.o))
			defer occupy(bh)()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = bh.Do(ctx, nop)
			}
		})
	}
}

// warm runs calls through a for a little over four windows, by which time
// it times one call in 16, as it does under steady heavy traffic.
func warm(a *bulkhead.AdaptiveBulkhead) {
	ctx := context.Background()
	for start := time.Now(); time.Since(start) < 1100*time.Millisecond; {
		for range 1000 {
			_ = a.Do(ctx, nop)
		}
	}
}

// BenchmarkAdaptiveDo is an uncontended call through an adaptive bulkhead
// under steady traffic: a permit taken and freed, one call in 16 timed.
func BenchmarkAdaptiveDo(b *testing.B) {
	a := bulkhead.Adaptive()
	warm(a)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Do(ctx, nop)
	}
}

// warmParallel is the bulkhead of BenchmarkAdaptiveDoParallel, warmed
// once for all the runs the benchmark makes.
var warmParallel = sync.OnceValue(func() *bulkhead.AdaptiveBulkhead {
	a := bulkhead.Adaptive(bulkhead.WithLimits(1, 200, 200))
	warm(a)
	return a
})

// BenchmarkAdaptiveDoParallel is BenchmarkAdaptiveDo from every P at once,
// on one bulkhead.
func BenchmarkAdaptiveDoParallel(b *testing.B) {
	a := warmParallel()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = a.Do(ctx, nop)
		}
	})
}

// BenchmarkAdaptiveDoRefused is a call refused by a full adaptive
// bulkhead.
func BenchmarkAdaptiveDoRefused(b *testing.B) {
	a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1))
	defer occupy(a)()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Do(ctx, nop)
	}
}
