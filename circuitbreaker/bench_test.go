package circuitbreaker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
)

func nop(context.Context) error { return nil }

// BenchmarkDo is the success path of a closed breaker with the default count
// window.
func BenchmarkDo(b *testing.B) {
	cb := circuitbreaker.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = cb.Do(ctx, nop)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once.
func BenchmarkDoParallel(b *testing.B) {
	cb := circuitbreaker.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = cb.Do(ctx, nop)
		}
	})
}

// BenchmarkDoTimeWindow is the success path with a 10s time window of 10
// buckets: one clock read per call.
func BenchmarkDoTimeWindow(b *testing.B) {
	cb := circuitbreaker.New(circuitbreaker.WithTimeWindow(10*time.Second, 10))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = cb.Do(ctx, nop)
	}
}

// BenchmarkDoTimeWindowParallel is BenchmarkDoTimeWindow from every P at once.
func BenchmarkDoTimeWindowParallel(b *testing.B) {
	cb := circuitbreaker.New(circuitbreaker.WithTimeWindow(10*time.Second, 10))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = cb.Do(ctx, nop)
		}
	})
}

// BenchmarkDoFailing records failures that never trip the breaker: a
// degraded dependency (30% failures) under a 50% threshold.
func BenchmarkDoFailing(b *testing.B) {
	cb := circuitbreaker.New()
	ctx := context.Background()
	errDown := errors.New("down")
	i := 0
	op := func(context.Context) error {
		i++
		if i%10 < 3 {
			return errDown
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = cb.Do(ctx, op)
	}
}

// BenchmarkDoRejected is the rejection path of an open breaker.
func BenchmarkDoRejected(b *testing.B) {
	cb := circuitbreaker.New(circuitbreaker.WithBreakDuration(time.Hour, time.Hour))
	cb.OpenFor(time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = cb.Do(ctx, nop)
	}
}

// BenchmarkDoRejectedParallel is BenchmarkDoRejected from every P at once.
func BenchmarkDoRejectedParallel(b *testing.B) {
	cb := circuitbreaker.New()
	cb.OpenFor(time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = cb.Do(ctx, nop)
		}
	})
}

// BenchmarkAllow is the two-step success path of a closed breaker.
func BenchmarkAllow(b *testing.B) {
	cb := circuitbreaker.New()
	b.ReportAllocs()
	for b.Loop() {
		done, err := cb.Allow()
		if err == nil {
			done(nil)
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
			cb := circuitbreaker.New(circuitbreaker.WithObserver(o.o))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = cb.Do(ctx, nop)
			}
		})
	}
}

// BenchmarkDoRejectedObserved is BenchmarkDoRejected with an observer.
func BenchmarkDoRejectedObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			cb := circuitbreaker.New(circuitbreaker.WithBreakDuration(time.Hour, time.Hour), circuitbreaker.WithObserver(o.o))
			cb.OpenFor(time.Hour)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = cb.Do(ctx, nop)
			}
		})
	}
}
