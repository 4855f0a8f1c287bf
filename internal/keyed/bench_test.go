package keyed_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
)

func newMap(maxKeys int) *keyed.Map {
	return keyed.New("keyed: Bench", func(string) resilience.Policy { return resilience.Chain() }, maxKeys, 5*time.Minute)
}

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("k%d.test:443", i)
	}
	return ks
}

// BenchmarkDo is a call to a key whose policy is kept: the path of nearly
// every call.
func BenchmarkDo(b *testing.B) {
	m := newMap(10_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Policy("api.test:443").Do(ctx, nop); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDoParallel is BenchmarkDo from every P at once, over 64 keys.
func BenchmarkDoParallel(b *testing.B) {
	m := newMap(10_000)
	ks := keys(64)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := int(next.Add(7))
		for pb.Next() {
			i++
			_ = m.Policy(ks[i%len(ks)]).Do(ctx, nop)
		}
	})
}

// BenchmarkChurn is a call to a key not kept, over 4096 keys under a cap
// of 1000: each call makes a policy, and the sweeps that keep the cap are
// spread over the calls.
func BenchmarkChurn(b *testing.B) {
	m := newMap(1000)
	ks := keys(4096)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		_ = m.Policy(ks[i%len(ks)]).Do(ctx, nop)
	}
}
