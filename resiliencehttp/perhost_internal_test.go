package resiliencehttp

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
)

// onHost returns a ctx that tells PerHost the host, as a Transport's does.
func onHost(host string) context.Context { return &call{ctx: context.Background(), host: host} }

// hostsOf returns the hosts p keeps.
func hostsOf(p resilience.Policy) map[string]bool {
	hosts := map[string]bool{}
	for _, host := range p.(*perHost).hosts.Keys() {
		hosts[host] = true
	}
	return hosts
}

func nop(context.Context) error { return nil }

// A host idle for the idle timeout is dropped at the next sweep, and gets
// a new policy when called again.
func TestIdleHostsAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		made := map[string]int{}
		p := PerHost(func(host string) resilience.Policy { made[host]++; return resilience.Chain() },
			WithHostIdleTimeout(time.Minute))
		for _, host := range []string{"a:80", "b:80"} {
			require.NoError(t, p.Do(onHost(host), nop))
		}
		time.Sleep(50 * time.Second)
		require.NoError(t, p.Do(onHost("a:80"), nop), "a stays busy")
		time.Sleep(10 * time.Second)
		// b has been idle for a minute; adding hosts brings a sweep.
		for i := range 3 {
			require.NoError(t, p.Do(onHost(fmt.Sprintf("new%d:80", i)), nop))
		}
		hosts := hostsOf(p)
		assert.True(t, hosts["a:80"], "used 10s ago: kept")
		assert.False(t, hosts["b:80"], "idle a minute: dropped")
		require.NoError(t, p.Do(onHost("b:80"), nop))
		assert.Equal(t, 2, made["b:80"], "b gets a new policy")
		assert.Equal(t, 1, made["a:80"])
	})
}

// Past the cap, the least recently used hosts are dropped, down to three
// quarters of it.
func TestMaxHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := PerHost(func(string) resilience.Policy { return resilience.Chain() }, WithMaxHosts(8))
		for i := range 8 {
			require.NoError(t, p.Do(onHost(fmt.Sprintf("h%d", i)), nop))
			time.Sleep(2 * time.Second) // uses are told apart to the second
		}
		require.NoError(t, p.Do(onHost("h0"), nop), "h0 is used again: the least recently used is now h1")
		time.Sleep(2 * time.Second)
		require.NoError(t, p.Do(onHost("h8"), nop), "the ninth host passes the cap")
		hosts := hostsOf(p)
		assert.Len(t, hosts, 6, "three quarters of 8")
		for _, host := range []string{"h0", "h5", "h6", "h7", "h8"} {
			assert.True(t, hosts[host], "%s was used lately: kept", host)
		}
		for _, host := range []string{"h1", "h2", "h3"} {
			assert.False(t, hosts[host], "%s was the least recently used: dropped", host)
		}
		assert.Equal(t, 6, p.(*perHost).hosts.Len())
	})
}

// Hosts that come and go keep the memory bounded: the hosts kept stay
// within the cap however many were called.
func TestManyHostsStayBounded(t *testing.T) {
	p := PerHost(func(string) resilience.Policy { return resilience.Chain() }, WithMaxHosts(100))
	for i := range 10_000 {
		require.NoError(t, p.Do(onHost(fmt.Sprintf("h%d", i)), nop))
		if n := p.(*perHost).hosts.Len(); n > 100 {
			t.Fatalf("after host %d: %d hosts kept, past the cap of 100", i, n)
		}
	}
	assert.Equal(t, len(hostsOf(p)), p.(*perHost).hosts.Len(), "the count matches the maps")
}

// A host just added is never dropped by the sweep its own addition brings,
// even when every host kept was last used in the same second as it, so
// that a host called twice in a row keeps its policy. In virtual time the
// hosts' uses tie exactly; which of the tied hosts a sweep drops depends on
// map order, so the check is made over many policies.
func TestFreshHostKeptOnTie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, maxHosts := range []int{1, 2, 4, 8} {
			for trial := range 50 {
				made := map[string]int{}
				p := PerHost(func(host string) resilience.Policy { made[host]++; return resilience.Chain() },
					WithMaxHosts(maxHosts))
				for i := range maxHosts + 1 {
					host := fmt.Sprintf("h%d:80", i)
					require.NoError(t, p.Do(onHost(host), nop))
					require.True(t, hostsOf(p)[host], "cap %d, trial %d: %s dropped by the sweep its addition brought",
						maxHosts, trial, host)
					require.NoError(t, p.Do(onHost(host), nop))
					require.Equal(t, 1, made[host], "cap %d, trial %d: %s called twice in a row got a new policy",
						maxHosts, trial, host)
				}
			}
		}
	})
}
