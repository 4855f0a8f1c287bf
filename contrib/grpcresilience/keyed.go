package grpcresilience

import (
	"context"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
)

// PerMethod returns a [resilience.Policy] that runs each call under a
// policy of its method ("/package.Service/Method"), made by newPolicy the
// first time the method is called: a circuit breaker or a bulkhead per
// method, so that one failing or slow method does not refuse calls to the
// others. Place it in the policy of a client interceptor of this package,
// which tells it the method through the ctx; a call whose ctx comes from
// no interceptor runs under the policy of method "".
//
// Memory stays bounded however many methods are called: see [PerTarget].
// PerMethod panics if newPolicy or an option is nil; its Do panics if
// newPolicy returns nil.
func PerMethod(newPolicy func(method string) resilience.Policy, opts ...KeyOption) resilience.Policy {
	return newPerKey("PerMethod", newPolicy, methodOf, opts)
}

// PerTarget returns a [resilience.Policy] that runs each call under a
// policy of the target of its connection (grpc.ClientConn.Target, such as
// "dns:///orders:443"), made by newPolicy the first time the target is
// called: a circuit breaker per target, so that one failing service does
// not open the circuit to the others when one interceptor serves several
// connections. Place it in the policy of a client interceptor of this
// package, which tells it the target through the ctx; a call whose ctx
// comes from no interceptor runs under the policy of target "".
//
// Memory stays bounded however many keys come and go: a key's policy
// unused for the idle timeout ([WithIdleTimeout], 5 minutes by default) is
// dropped at the next sweep, and [WithMaxKeys] (10000) caps the keys kept
// at once, dropping the least recently used. A sweep runs when the cap is
// passed, or when more keys were added since the last sweep than it kept,
// so that its cost is spread over the keys added; it never drops the key
// whose call brought it, so that a key called twice in a row keeps its
// policy. A key called again after
// its policy was dropped gets a new one, which has forgotten the old one's
// state. When calls to a new key race, newPolicy may be called more than
// once for it; one result is kept. newPolicy is called with no lock held.
//
// The policy is safe for concurrent use, and keeps the contract of
// resilience.Policy as the policies it makes do. PerTarget panics if
// newPolicy or an option is nil; its Do panics if newPolicy returns nil.
func PerTarget(newPolicy func(target string) resilience.Policy, opts ...KeyOption) resilience.Policy {
	return newPerKey("PerTarget", newPolicy, targetOf, opts)
}

func methodOf(ctx context.Context) string {
	if r := rpcOf(ctx); r != nil {
		return r.method
	}
	return ""
}

func targetOf(ctx context.Context) string {
	if r := rpcOf(ctx); r != nil && r.cc != nil {
		return r.cc.Target()
	}
	return ""
}

// perKey is the policy of PerMethod and PerTarget.
type perKey struct {
	name  string
	keyOf func(context.Context) string
	keys  keyed.Map
}

func newPerKey(name string, newPolicy func(string) resilience.Policy, keyOf func(context.Context) string, opts []KeyOption) *perKey {
	cfg := keyConfig{maxKeys: 10_000, idle: 5 * time.Minute}
	for _, o := range opts {
		if o == nil {
			panic("grpcresilience: " + name + ": nil KeyOption")
		}
		o.applyKey(&cfg)
	}
	k := &perKey{name: name, keyOf: keyOf}
	k.keys.Init("grpcresilience: "+name, newPolicy, cfg.maxKeys, cfg.idle)
	return k
}

func (k *perKey) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("grpcresilience: " + k.name + ".Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return k.keys.Policy(k.keyOf(ctx)).Do(ctx, op)
}
