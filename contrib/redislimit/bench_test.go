package redislimit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/resilience-go/resilience/contrib/redislimit"
)

// benchRate admits every call: a token a microsecond, and a burst no
// benchmark spends.
const benchRate, benchBurst = 1e6, 1 << 30

// BenchmarkAllow takes tokens from a bucket that always has one: a round
// trip to Redis.
func BenchmarkAllow(b *testing.B) {
	c, prefix := redisClient(b)
	l := redislimit.New(c, prefix+"allow", benchRate, benchBurst, timeout)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx)
	}
	if m := l.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkAllowParallel is BenchmarkAllow from every P at once, on one
// bucket.
func BenchmarkAllowParallel(b *testing.B) {
	c, prefix := redisClient(b)
	l := redislimit.New(c, prefix+"allow", benchRate, benchBurst, timeout)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			l.Allow(ctx)
		}
	})
	if m := l.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkDo is an admitted call through Do.
func BenchmarkDo(b *testing.B) {
	c, prefix := redisClient(b)
	l := redislimit.New(c, prefix+"do", benchRate, benchBurst, timeout)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Do(ctx, nop)
	}
	if m := l.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once, on one bucket.
func BenchmarkDoParallel(b *testing.B) {
	c, prefix := redisClient(b)
	l := redislimit.New(c, prefix+"do", benchRate, benchBurst, timeout)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = l.Do(ctx, nop)
		}
	})
	if m := l.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkDoRefused is a call that Redis refuses: the bucket is empty.
func BenchmarkDoRefused(b *testing.B) {
	c, prefix := redisClient(b)
	l := redislimit.New(c, prefix+"refused", hourly, 1, decided()...)
	ctx := context.Background()
	l.Allow(ctx)
	b.ReportAllocs()
	for b.Loop() {
		if l.Do(ctx, nop) == nil {
			b.Fatal("admitted")
		}
	}
	if m := l.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkDoKey is an admitted call for one of 1000 keys.
func BenchmarkDoKey(b *testing.B) {
	c, prefix := redisClient(b)
	k := redislimit.NewKeyed(c, prefix, benchRate, benchBurst, timeout)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = k.DoKey(ctx, keys[i%len(keys)], nop)
		i++
	}
	if m := k.Metrics(); m.Errors > 0 {
		b.Fatalf("%d calls to Redis failed", m.Errors)
	}
}

// BenchmarkDoFallback is a call admitted by the local fallback while Redis
// is down, within the probe interval: no round trip. It needs no Redis.
func BenchmarkDoFallback(b *testing.B) {
	c := newClient(b, "127.0.0.1:1") // nothing listens there
	l := redislimit.New(c, "k", benchRate, benchBurst,
		redislimit.WithLocalFallback(4), redislimit.WithProbeInterval(time.Hour))
	ctx := context.Background()
	_ = l.Do(ctx, nop) // Redis fails once
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Do(ctx, nop); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDoFallbackRefused is a call refused by the local fallback while
// Redis is down, within the probe interval. It needs no Redis.
func BenchmarkDoFallbackRefused(b *testing.B) {
	c := newClient(b, "127.0.0.1:1") // nothing listens there
	l := redislimit.New(c, "k", hourly, 1,
		redislimit.WithLocalFallback(1), redislimit.WithProbeInterval(time.Hour))
	ctx := context.Background()
	_ = l.Do(ctx, nop) // Redis fails once; the local burst is spent
	b.ReportAllocs()
	for b.Loop() {
		if l.Do(ctx, nop) == nil {
			b.Fatal("admitted")
		}
	}
}
