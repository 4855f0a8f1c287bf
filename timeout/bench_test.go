package timeout_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/timeout"
)

func nop(context.Context) error { return nil }

// BenchmarkDo is a call well within its deadline.
func BenchmarkDo(b *testing.B) {
	t := timeout.New(time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = t.Do(ctx, nop)
	}
}

// BenchmarkBareWithTimeout is what Do replaces: context.WithTimeout, the
// call, and cancel.
func BenchmarkBareWithTimeout(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_ = nop(c)
		cancel()
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once.
func BenchmarkDoParallel(b *testing.B) {
	t := timeout.New(time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = t.Do(ctx, nop)
		}
	})
}

// BenchmarkDoParentSooner is a call whose caller's deadline comes first: no
// timer of its own.
func BenchmarkDoParentSooner(b *testing.B) {
	t := timeout.New(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		_ = t.Do(ctx, nop)
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
			t := timeout.New(time.Second, timeout.WithObserver(o.o))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = t.Do(ctx, nop)
			}
		})
	}
}

// BenchmarkAdaptiveDo is BenchmarkDo through an adaptive timeout, which
// learns from each call.
func BenchmarkAdaptiveDo(b *testing.B) {
	t := timeout.Adaptive()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = t.Do(ctx, nop)
	}
}

// BenchmarkAdaptiveDoParallel is BenchmarkAdaptiveDo from every P at once.
func BenchmarkAdaptiveDoParallel(b *testing.B) {
	t := timeout.Adaptive()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = t.Do(ctx, nop)
		}
	})
}
