package retry_test

import (
	"context"
	"errors"
	"testing"

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
