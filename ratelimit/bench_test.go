package ratelimit_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/ratelimit"
)

// BenchmarkAllow takes tokens from a bucket that always has one: the
// non-blocking path.
func BenchmarkAllow(b *testing.B) {
	l := ratelimit.New(1e9, 1e9)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

// BenchmarkAllowParallel is BenchmarkAllow from every P at once, on one
// bucket.
func BenchmarkAllowParallel(b *testing.B) {
	l := ratelimit.New(1e9, 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

// BenchmarkDo is an admitted call through Do.
func BenchmarkDo(b *testing.B) {
	l := ratelimit.New(1e9, 1e9)
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Do(ctx, op)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once.
func BenchmarkDoParallel(b *testing.B) {
	l := ratelimit.New(1e9, 1e9)
	op := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = l.Do(ctx, op)
		}
	})
}

// BenchmarkDoRefused is a refused call: the bucket is empty.
func BenchmarkDoRefused(b *testing.B) {
	l := ratelimit.New(1e-3, 1)
	l.Allow()
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Do(ctx, op)
	}
}

// BenchmarkXTimeRateAllow is golang.org/x/time/rate's Allow, for scale.
func BenchmarkXTimeRateAllow(b *testing.B) {
	l := rate.NewLimiter(1e9, 1e9)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

// BenchmarkXTimeRateAllowParallel is BenchmarkXTimeRateAllow from every P
// at once.
func BenchmarkXTimeRateAllowParallel(b *testing.B) {
	l := rate.NewLimiter(1e9, 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

// BenchmarkClock reads the monotonic clock as Allow does, once a call: the
// floor of Allow on this machine, since a token bucket that is exact has
// to know the time of every call that finds it full.
func BenchmarkClock(b *testing.B) {
	start := time.Now()
	var sum time.Duration
	for b.Loop() {
		sum += time.Since(start)
	}
	sink = sum
}

// BenchmarkClockAndSwapParallel reads the clock and swaps one word that
// every P writes, from every P at once: the floor of AllowParallel for a
// bucket in one word, set by how fast the word's cache line moves between
// processors.
func BenchmarkClockAndSwapParallel(b *testing.B) {
	var word struct {
		_ [64]byte
		n atomic.Int64
		_ [64]byte
	}
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := int64(time.Since(start))
			for {
				n := word.n.Load()
				if word.n.CompareAndSwap(n, max(n, t)+1) {
					break
				}
			}
		}
	})
}

var sink time.Duration

// BenchmarkAllowKey takes tokens of one of 1000 keys, each of a bucket deep
// enough never to refuse nor refill during the benchmark: keys in use, kept
// from one call to the next.
func BenchmarkAllowKey(b *testing.B) {
	k := ratelimit.NewKeyed(1, 1e9)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k.AllowKey(keys[i%len(keys)])
		i++
	}
}

// BenchmarkAllowKeyParallel is BenchmarkAllowKey from every P at once.
func BenchmarkAllowKeyParallel(b *testing.B) {
	k := ratelimit.NewKeyed(1, 1e9)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k.AllowKey(keys[i%len(keys)])
			i++
		}
	})
}

// BenchmarkAllowKeyChurn takes a token of a key seen once, out of a million,
// as a gateway facing many client addresses does: each call makes a bucket,
// and sweeps drop the idle ones, within WithMaxKeys.
func BenchmarkAllowKeyChurn(b *testing.B) {
	k := ratelimit.NewKeyed(10, 10, ratelimit.WithMaxKeys(10_000))
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = "203.0." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&255)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k.AllowKey(keys[i&(len(keys)-1)])
		i++
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
			l := ratelimit.New(1e9, 1e9, ratelimit.WithObserver(o.o))
			ctx := context.Background()
			op := func(context.Context) error { return nil }
			b.ReportAllocs()
			for b.Loop() {
				_ = l.Do(ctx, op)
			}
		})
	}
}

// BenchmarkDoRefusedObserved is BenchmarkDoRefused with an observer, which
// is told the refusal's retry-after hint.
func BenchmarkDoRefusedObserved(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			l := ratelimit.New(1e-3, 1, ratelimit.WithObserver(o.o))
			l.Allow()
			ctx := context.Background()
			op := func(context.Context) error { return nil }
			b.ReportAllocs()
			for b.Loop() {
				_ = l.Do(ctx, op)
			}
		})
	}
}
