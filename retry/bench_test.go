package retry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/retry"
)

func nop(context.Context) error { return nil }

// BenchmarkDo is the success path: one attempt, with the default budget.
func BenchmarkDo(b *testing.B) {
	r := retry.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Do(ctx, nop)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once, sharing the
// retrier and its budget.
func BenchmarkDoParallel(b *testing.B) {
	r := retry.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = r.Do(ctx, nop)
		}
	})
}

// BenchmarkDoTwoFailures is two failures, then success, with no waits.
func BenchmarkDoTwoFailures(b *testing.B) {
	r := retry.New(retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil))
	ctx := context.Background()
	errFlaky := errors.New("flaky")
	n := 0
	op := func(context.Context) error {
		n++
		if n%3 != 0 {
			return errFlaky
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Do(ctx, op)
	}
}

// BenchmarkDoExhausted is three failed attempts with no waits, ending in an
// ExhaustedError.
func BenchmarkDoExhausted(b *testing.B) {
	r := retry.New(retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil))
	ctx := context.Background()
	errDown := errors.New("down")
	op := func(context.Context) error { return errDown }
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Do(ctx, op)
	}
}

// BenchmarkFullJitter is the cost of one jittered wait computation.
func BenchmarkFullJitter(b *testing.B) {
	bo := retry.FullJitter(100e6, 10e9)
	b.ReportAllocs()
	for b.Loop() {
		_ = bo.Delay(5, 0)
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
			r := retry.New(retry.WithObserver(o.o))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Do(ctx, nop)
			}
		})
	}
}

// BenchmarkDoExhaustedObserved is BenchmarkDoExhausted with an observer:
// two retries, giving up, and the failure, which SlogObserver logs at
// Warn (giving up) and not at all (the rest, at Debug).
func BenchmarkDoExhaustedObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			r := retry.New(retry.WithBackoff(retry.Constant(0)), retry.WithBudget(nil), retry.WithObserver(o.o))
			ctx := context.Background()
			errDown := errors.New("down")
			op := func(context.Context) error { return errDown }
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Do(ctx, op)
			}
		})
	}
}
