package grpcresilience_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/internal/policytest"
)

// callMethods calls each of methods once through an interceptor under p,
// with an invoker that succeeds at once.
func callMethods(t *testing.T, p resilience.Policy, methods ...string) {
	t.Helper()
	ic := grpcresilience.UnaryClientInterceptor(p)
	for _, m := range methods {
		require.NoError(t, ic(context.Background(), m, nil, nil, nil, okInvoker))
	}
}

func methodNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("/svc.%s/M%d", prefix, i)
	}
	return names
}

func TestPerMethodMaxKeys(t *testing.T) {
	made := map[string]int{}
	p := grpcresilience.PerMethod(func(m string) resilience.Policy {
		made[m]++
		return resilience.Chain()
	}, grpcresilience.WithMaxKeys(100))
	callMethods(t, p, methodNames("A", 1000)...)
	assert.LessOrEqual(t, grpcresilience.KeysKept(p), int64(100), "the cap holds")
	assert.Positive(t, grpcresilience.KeysKept(p))
	assert.Len(t, made, 1000)

	// The most recent method is kept: calling it again makes no policy.
	callMethods(t, p, "/svc.A/M999")
	assert.Equal(t, 1, made["/svc.A/M999"])
	// An early one was dropped: calling it again makes a new one.
	callMethods(t, p, "/svc.A/M0")
	assert.Equal(t, 2, made["/svc.A/M0"])
}

func TestPerMethodIdleKeysDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		made := map[string]int{}
		p := grpcresilience.PerMethod(func(m string) resilience.Policy {
			made[m]++
			return resilience.Chain()
		}, grpcresilience.WithIdleTimeout(time.Minute))
		old := methodNames("Old", 50)
		callMethods(t, p, old...)
		assert.Equal(t, int64(50), grpcresilience.KeysKept(p))

		time.Sleep(2 * time.Minute)
		callMethods(t, p, methodNames("New", 60)...)
		assert.LessOrEqual(t, grpcresilience.KeysKept(p), int64(60), "the idle methods were dropped")
		callMethods(t, p, old[0])
		assert.Equal(t, 2, made[old[0]], "an idle method's policy was made anew")
	})
}

func TestPerMethodRejectsBadInput(t *testing.T) {
	assert.PanicsWithValue(t, "grpcresilience: PerMethod: nil newPolicy", func() { grpcresilience.PerMethod(nil) })
	assert.PanicsWithValue(t, "grpcresilience: PerTarget: nil KeyOption", func() {
		grpcresilience.PerTarget(func(string) resilience.Policy { return nil }, nil)
	})
	p := grpcresilience.PerTarget(func(string) resilience.Policy { return nil })
	assert.PanicsWithValue(t, `grpcresilience: PerTarget: newPolicy("") returned nil`, func() {
		_ = p.Do(context.Background(), func(context.Context) error { return nil })
	})
	assert.PanicsWithValue(t, "grpcresilience: WithMaxKeys(0): want 1 <= n <= 16777216", func() { grpcresilience.WithMaxKeys(0) })
	assert.PanicsWithValue(t, "grpcresilience: WithIdleTimeout(0s): want d > 0", func() { grpcresilience.WithIdleTimeout(0) })
}

func TestPerTargetHonoursCtx(t *testing.T) {
	p := grpcresilience.PerTarget(func(string) resilience.Policy { return resilience.Chain() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Do(ctx, func(context.Context) error {
		t.Error("op ran under a done ctx")
		return nil
	})
	assert.ErrorIs(t, err, context.Canceled)
}

func TestClientOptionsRejectBadInput(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"grpcresilience: UnaryClientInterceptor: nil Policy", func() { grpcresilience.UnaryClientInterceptor(nil) }},
		{"grpcresilience: StreamClientInterceptor: nil ClientOption", func() {
			grpcresilience.StreamClientInterceptor(resilience.Chain(), nil)
		}},
		{`grpcresilience: WithIdempotent("Svc/M"): want "/package.Service/Method" or "/package.Service/*"`, func() {
			grpcresilience.WithIdempotent("Svc/M")
		}},
		{`grpcresilience: WithIdempotent("/Svc/"): want "/package.Service/Method" or "/package.Service/*"`, func() {
			grpcresilience.WithIdempotent("/Svc/")
		}},
		{"grpcresilience: WithFailureCodes(OK): want codes from Canceled to Unauthenticated", func() {
			grpcresilience.WithFailureCodes(0)
		}},
		{"grpcresilience: WithLogger: nil Logger", func() { grpcresilience.WithLogger(nil) }},
		{"grpcresilience: WithStreamBuffer(0): want 1 <= n <= 65536", func() { grpcresilience.WithStreamBuffer(0) }},
		{"grpcresilience: UnaryServerInterceptor: nil Policy", func() { grpcresilience.UnaryServerInterceptor(nil) }},
		{"grpcresilience: StreamServerInterceptor: nil Policy", func() { grpcresilience.StreamServerInterceptor(nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// TestUnaryAllocations holds the interceptor to one allocation per
// successful call (the call's state), under a chain of a retry and a
// breaker per target, as bench_test.go measures.
func TestUnaryAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	for _, bp := range benchPolicies() {
		ic := grpcresilience.UnaryClientInterceptor(bp.p, grpcresilience.WithIdempotent(unaryMethod))
		allocs := testing.AllocsPerRun(1000, func() {
			_ = ic(context.Background(), unaryMethod, nil, nil, nil, okInvoker)
		})
		assert.LessOrEqual(t, allocs, 1.0, "%s", bp.name)
	}
}

func TestPerMethodContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy {
		return grpcresilience.PerMethod(func(string) resilience.Policy { return bulkhead.New(100) })
	})
}

func TestPerTargetContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy {
		return grpcresilience.PerTarget(func(string) resilience.Policy { return bulkhead.New(100) })
	})
}
