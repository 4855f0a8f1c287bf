package resiliencehttp

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/resilience-go/resilience"
)

// hostCtxs returns n ctxs, one per host, as Transports make them.
func hostCtxs(n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = onHost(fmt.Sprintf("h%d.test:443", i))
	}
	return ctxs
}

// BenchmarkPerHost is a call to a host whose policy is kept: the path of
// nearly every call.
func BenchmarkPerHost(b *testing.B) {
	p := PerHost(func(string) resilience.Policy { return resilience.Chain() })
	ctx := onHost("api.test:443")
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, nop); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPerHostParallel is BenchmarkPerHost from every P at once, over
// 64 hosts.
func BenchmarkPerHostParallel(b *testing.B) {
	p := PerHost(func(string) resilience.Policy { return resilience.Chain() })
	ctxs := hostCtxs(64)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7))
		for pb.Next() {
			i++
			_ = p.Do(ctxs[i%len(ctxs)], nop)
		}
	})
}

// BenchmarkPerHostChurn is a call to a host not kept, over 4096 hosts
// under a cap of 1000: each call makes a policy, and the sweeps that keep
// the cap are spread over the calls.
func BenchmarkPerHostChurn(b *testing.B) {
	p := PerHost(func(string) resilience.Policy { return resilience.Chain() }, WithMaxHosts(1000))
	ctxs := hostCtxs(4096)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		_ = p.Do(ctxs[i%len(ctxs)], nop)
	}
}
