package grpcresilience_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/retry"
)

// benchPolicies are the policies the benchmarks run: none at all, a policy
// that only runs op, and a realistic client chain of a retry and a breaker
// per target.
func benchPolicies() []struct {
	name string
	p    resilience.Policy
} {
	return []struct {
		name string
		p    resilience.Policy
	}{
		{"noop", resilience.Chain()},
		{"retry+breaker", resilience.Chain(
			retry.New(retry.WithBudget(retry.NewBudget(0.2, 10))),
			circuitbreaker.New(),
		)},
		{"retry+perTarget", resilience.Chain(
			retry.New(retry.WithBudget(retry.NewBudget(0.2, 10))),
			grpcresilience.PerTarget(func(string) resilience.Policy { return circuitbreaker.New() }),
		)},
	}
}

func okInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// BenchmarkUnaryOverhead measures the interceptor alone, around an invoker
// that succeeds at once: what it adds to every successful call.
func BenchmarkUnaryOverhead(b *testing.B) {
	ctx := context.Background()
	req, reply := &testpb.SimpleRequest{}, &testpb.SimpleResponse{}
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = okInvoker(ctx, unaryMethod, req, reply, nil)
		}
	})
	for _, bp := range benchPolicies() {
		ic := grpcresilience.UnaryClientInterceptor(bp.p, grpcresilience.WithIdempotent(unaryMethod))
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := ic(ctx, unaryMethod, req, reply, nil, okInvoker); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnaryOverheadParallel(b *testing.B) {
	req, reply := &testpb.SimpleRequest{}, &testpb.SimpleResponse{}
	for _, bp := range benchPolicies() {
		ic := grpcresilience.UnaryClientInterceptor(bp.p, grpcresilience.WithIdempotent(unaryMethod))
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					_ = ic(ctx, unaryMethod, req, reply, nil, okInvoker)
				}
			})
		})
	}
}

// BenchmarkUnaryLoopback makes real calls to a server on a loopback TCP
// port, with and without the interceptor.
func BenchmarkUnaryLoopback(b *testing.B) {
	addr := serve(b, &testServer{})
	ctx := context.Background()
	run := func(b *testing.B, client testpb.TestServiceClient) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("none", func(b *testing.B) { run(b, dial(b, addr)) })
	for _, bp := range benchPolicies() {
		b.Run(bp.name, func(b *testing.B) {
			run(b, dial(b, addr, grpc.WithChainUnaryInterceptor(
				grpcresilience.UnaryClientInterceptor(bp.p, grpcresilience.WithIdempotent(unaryMethod)))))
		})
	}
}

// BenchmarkServerShed measures the server interceptor around a handler
// that answers at once, admitted and refused.
func BenchmarkServerShed(b *testing.B) {
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.Run("admitted", func(b *testing.B) {
		ic := grpcresilience.UnaryServerInterceptor(bulkhead.New(1000))
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ic(ctx, nil, info, handler)
		}
	})
	b.Run("refused", func(b *testing.B) {
		full := bulkhead.New(1)
		release := make(chan struct{})
		held := make(chan struct{})
		go func() {
			_ = full.Do(ctx, func(context.Context) error { close(held); <-release; return nil })
		}()
		<-held
		defer close(release)
		ic := grpcresilience.UnaryServerInterceptor(full)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ic(ctx, nil, info, handler)
		}
	})
}

// BenchmarkPerMethod is PerMethod alone, under an interceptor: a call to a
// method whose policy is kept (hit), the same from every P at once over 64
// methods (parallel), and a call to a method not kept, over 4096 methods
// under a cap of 1000 (churn).
func BenchmarkPerMethod(b *testing.B) {
	newPolicy := func(string) resilience.Policy { return resilience.Chain() }
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		ic := grpcresilience.UnaryClientInterceptor(grpcresilience.PerMethod(newPolicy))
		b.ReportAllocs()
		for b.Loop() {
			if err := ic(ctx, unaryMethod, nil, nil, nil, okInvoker); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		ic := grpcresilience.UnaryClientInterceptor(grpcresilience.PerMethod(newPolicy))
		methods := methodNames("P", 64)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7))
			for pb.Next() {
				i++
				_ = ic(ctx, methods[i%len(methods)], nil, nil, nil, okInvoker)
			}
		})
	})
	b.Run("churn", func(b *testing.B) {
		ic := grpcresilience.UnaryClientInterceptor(grpcresilience.PerMethod(newPolicy, grpcresilience.WithMaxKeys(1000)))
		methods := methodNames("C", 4096)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			_ = ic(ctx, methods[i%len(methods)], nil, nil, nil, okInvoker)
		}
	})
}
