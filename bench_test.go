package resilience_test

import (
	"context"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

func nop(context.Context) error { return nil }

var fourLayers = resilience.Chain(pass{}, pass{}, pass{}, pass{})

// BenchmarkChain calls a four-layer chain through its Do method.
func BenchmarkChain(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = fourLayers.Do(ctx, nop)
	}
}

// BenchmarkWrap calls a four-layer chain bound to its op once with Wrap.
func BenchmarkWrap(b *testing.B) {
	ctx := context.Background()
	op := resilience.Wrap(fourLayers, nop)
	b.ReportAllocs()
	for b.Loop() {
		_ = op(ctx)
	}
}

// BenchmarkDo calls a four-layer chain through the generic Do.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = resilience.Do(ctx, fourLayers, fn)
	}
}

// BenchmarkWrapParallel is BenchmarkWrap from every P at once.
func BenchmarkWrapParallel(b *testing.B) {
	op := resilience.Wrap(fourLayers, nop)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = op(ctx)
		}
	})
}

// BenchmarkRetryBreakerTimeout is the success path of Chain(retry,
// circuitbreaker, timeout), bound with Wrap; compare BenchmarkTimeoutAlone.
func BenchmarkRetryBreakerTimeout(b *testing.B) {
	op := resilience.Wrap(resilience.Chain(retry.New(), circuitbreaker.New(), timeout.New(time.Second)), nop)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = op(ctx)
	}
}

// BenchmarkTimeoutAlone is the timeout of BenchmarkRetryBreakerTimeout on
// its own.
func BenchmarkTimeoutAlone(b *testing.B) {
	op := resilience.Wrap(timeout.New(time.Second), nop)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = op(ctx)
	}
}
