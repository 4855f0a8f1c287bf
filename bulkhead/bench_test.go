package bulkhead_test

import (
	"context"
	"testing"

	"golang.org/x/sync/semaphore"

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
	hold := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_ = bh.Do(context.Background(), func(context.Context) error { close(started); <-hold; return nil })
	}()
	<-started
	defer close(hold)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = bh.Do(ctx, nop)
	}
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
