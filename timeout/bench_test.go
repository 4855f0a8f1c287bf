package timeout_test

import (
	"context"
	"testing"
	"time"

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
