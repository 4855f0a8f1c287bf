package resiliencehttp

import (
	"context"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
)

// PerHost returns a [resilience.Policy] that runs each call under a policy
// of its request's host (URL.Host, with its port), made by newPolicy the
// first time the host is called: a circuit breaker per host, so that one
// failing server does not open the circuit to the others. Place it in the
// policy of a [Transport], which tells it the host through the ctx; a call
// whose ctx comes from no Transport runs under the policy of host "".
//
// Memory stays bounded however many hosts come and go: a host's policy
// unused for the idle timeout ([WithHostIdleTimeout], 5 minutes by default)
// is dropped at the next sweep, and [WithMaxHosts] (10000) caps the hosts
// kept at once, dropping the least recently used. A sweep runs when the cap
// is passed, or when more hosts were added since the last sweep than it
// kept, so that its cost is spread over the hosts added, as in
// ratelimit.Keyed; it never drops the host whose call brought it, so that a
// host called twice in a row keeps its policy. A host called again after its
// policy was dropped gets a new one, which has forgotten the old one's
// state. When calls to a new host race, newPolicy may be called more than
// once for it; one result is kept. newPolicy is called with no lock held.
//
// The policy is safe for concurrent use, and keeps the contract of
// resilience.Policy as the host policies do. PerHost panics if newPolicy is
// nil or an option is nil; its Do panics if newPolicy returns nil.
func PerHost(newPolicy func(host string) resilience.Policy, opts ...HostOption) resilience.Policy {
	cfg := hostConfig{maxHosts: 10_000, idle: 5 * time.Minute}
	for _, o := range opts {
		if o == nil {
			panic("resiliencehttp: PerHost: nil HostOption")
		}
		o.applyHost(&cfg)
	}
	h := new(perHost)
	h.hosts.Init("resiliencehttp: PerHost", newPolicy, cfg.maxHosts, cfg.idle)
	return h
}

// perHost is the policy of PerHost.
type perHost struct{ hosts keyed.Map }

func (h *perHost) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("resiliencehttp: PerHost.Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.hosts.Policy(hostOf(ctx)).Do(ctx, op)
}
