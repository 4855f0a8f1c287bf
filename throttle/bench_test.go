package throttle_test

import (
	"context"
	"testing"
	"time"

	"github.com/resilience-go/resilience/throttle"
)

func BenchmarkDo(b *testing.B) {
	th := throttle.New()
	op := func(context.Context) error { return nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = th.Do(ctx, op)
	}
}

func BenchmarkDoParallel(b *testing.B) {
	th := throttle.New()
	op := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = th.Do(ctx, op)
		}
	})
}

// BenchmarkDoRejected measures a throttle that rejects 90% of calls.
func BenchmarkDoRejected(b *testing.B) {
	th := throttle.New(throttle.WithK(1))
	ctx := context.Background()
	refused := func(context.Context) error { return errOverloaded }
	b.ReportAllocs()
	for b.Loop() {
		_ = th.Do(ctx, refused)
	}
}

// BenchmarkClock measures the one read of the monotonic clock that Do
// makes, for comparison: the rest of Do's cost is the difference.
func BenchmarkClock(b *testing.B) {
	start := time.Now()
	var d time.Duration
	for b.Loop() {
		d = time.Since(start)
	}
	_ = d
}
