package fallback_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/fallback"
)

func nop(context.Context) error { return nil }

// BenchmarkDo is the success path: the fallback is not needed.
func BenchmarkDo(b *testing.B) {
	f := fallback.New(func(context.Context, error) error { return nil })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = f.Do(ctx, nop)
	}
}

// BenchmarkDoFallback is a failure the fallback answers.
func BenchmarkDoFallback(b *testing.B) {
	f := fallback.New(func(context.Context, error) error { return nil })
	ctx := context.Background()
	errDown := errors.New("down")
	op := func(context.Context) error { return errDown }
	b.ReportAllocs()
	for b.Loop() {
		_ = f.Do(ctx, op)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once.
func BenchmarkDoParallel(b *testing.B) {
	f := fallback.New(func(context.Context, error) error { return nil })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = f.Do(ctx, nop)
		}
	})
}

// BenchmarkGenericDo is the generic form, without a policy.
func BenchmarkGenericDo(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	alt := func(context.Context, error) (int, error) { return 0, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = fallback.Do(ctx, nil, fn, alt)
	}
}

// BenchmarkFailover is a primary that fails and a secondary that answers.
func BenchmarkFailover(b *testing.B) {
	errDown := errors.New("down")
	op := fallback.Failover(func(context.Context) error { return errDown }, nop)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = op(ctx)
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
			f := fallback.New(func(context.Context, error) error { return nil }, fallback.WithObserver(o.o))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = f.Do(ctx, nop)
			}
		})
	}
}

// BenchmarkDoFallbackObserved is BenchmarkDoFallback with an observer.
func BenchmarkDoFallbackObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			f := fallback.New(func(context.Context, error) error { return nil }, fallback.WithObserver(o.o))
			ctx := context.Background()
			errDown := errors.New("down")
			op := func(context.Context) error { return errDown }
			b.ReportAllocs()
			for b.Loop() {
				_ = f.Do(ctx, op)
			}
		})
	}
}
