package hedge_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-go/resilience/hedge"
)

func nop(context.Context) error { return nil }

// BenchmarkBareCallAndTimer is what a call that no hedge could follow
// costs at least: the op, and a timer set and stopped. Compare
// BenchmarkDo.
func BenchmarkBareCallAndTimer(b *testing.B) {
	ctx := context.Background()
	f := func() {}
	b.ReportAllocs()
	for b.Loop() {
		t := time.AfterFunc(time.Hour, f)
		_ = nop(ctx)
		t.Stop()
	}
}

// BenchmarkDo is a call whose first attempt ends before the delay, with
// a fixed delay.
func BenchmarkDo(b *testing.B) {
	h := hedge.New(hedge.WithDelay(time.Hour))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Do(ctx, nop)
	}
}

// BenchmarkDoQuantile is BenchmarkDo with the default quantile delay,
// which records each call's latency.
func BenchmarkDoQuantile(b *testing.B) {
	h := hedge.New()
	ctx := context.Background()
	for range 1000 {
		_ = h.Do(ctx, nop)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Do(ctx, nop)
	}
}

func BenchmarkDoParallel(b *testing.B) {
	h := hedge.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = h.Do(ctx, nop)
		}
	})
}

// BenchmarkDoHedged is a call that is hedged at once, and whose first
// attempt waits for the hedge to win.
func BenchmarkDoHedged(b *testing.B) {
	h := hedge.New(hedge.WithDelay(0), hedge.WithMaxExtraLoad(4))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		var n atomic.Int32
		_ = h.Do(ctx, func(ctx context.Context) error {
			if n.Add(1) == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
	}
}
