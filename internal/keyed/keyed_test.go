package keyed_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/internal/keyed"
	"github.com/resilience-go/resilience/internal/policytest"
)

func nop(context.Context) error { return nil }

// made is a policy numbered in the order of its key's policies.
type made struct{ n int }

func (*made) Do(ctx context.Context, op resilience.Op) error { return op(ctx) }

// counter makes policies and counts them per key.
type counter struct {
	mu   sync.Mutex
	made map[string]int
}

func (c *counter) newPolicy(key string) resilience.Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.made == nil {
		c.made = map[string]int{}
	}
	c.made[key]++
	return &made{n: c.made[key]}
}

func (c *counter) of(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made[key]
}

func has(m *keyed.Map, key string) bool { return slices.Contains(m.Keys(), key) }

// A key keeps its policy while it is used, and gets the same one back.
func TestPolicyIsKept(t *testing.T) {
	var c counter
	m := keyed.New("keyed: Test", c.newPolicy, 10, time.Minute)
	a := m.Policy("a")
	for range 3 {
		assert.Same(t, a, m.Policy("a"))
	}
	assert.Equal(t, 1, c.of("a"))
	assert.Equal(t, 1, m.Len())
	assert.Equal(t, []string{"a"}, m.Keys())
}

// A key idle for the idle timeout is dropped at the next sweep, and gets a
// new policy when called again.
func TestIdleKeysAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		m := keyed.New("keyed: Test", c.newPolicy, 100, time.Minute)
		m.Policy("a")
		m.Policy("b")
		time.Sleep(50 * time.Second)
		m.Policy("a")
		time.Sleep(10 * time.Second)
		// b has been idle for a minute; adding keys brings a sweep.
		for i := range 3 {
			m.Policy(fmt.Sprintf("new%d", i))
		}
		assert.True(t, has(m, "a"), "used 10s ago: kept")
		assert.False(t, has(m, "b"), "idle a minute: dropped")
		m.Policy("b")
		assert.Equal(t, 2, c.of("b"), "b gets a new policy")
		assert.Equal(t, 1, c.of("a"))
	})
}

// Past the cap, the least recently used keys are dropped, down to three
// quarters of it.
func TestMaxKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		m := keyed.New("keyed: Test", c.newPolicy, 8, time.Hour)
		for i := range 8 {
			m.Policy(fmt.Sprintf("k%d", i))
			time.Sleep(2 * time.Second) // uses are told apart to the second
		}
		m.Policy("k0") // the least recently used is now k1
		time.Sleep(2 * time.Second)
		m.Policy("k8") // the ninth key passes the cap
		assert.Equal(t, 6, m.Len(), "three quarters of 8")
		assert.ElementsMatch(t, []string{"k0", "k4", "k5", "k6", "k7", "k8"}, m.Keys())
	})
}

// The key whose addition brings a sweep is never dropped by it, even when
// every key kept was used in the same instant: a key called twice in a row
// keeps its policy. Which of the tied keys a sweep drops depends on map
// order, so the check is made over many Maps.
func TestFreshKeyKeptOnTie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, maxKeys := range []int{1, 2, 4, 8} {
			for trial := range 50 {
				var c counter
				m := keyed.New("keyed: Test", c.newPolicy, maxKeys, time.Minute)
				for i := range maxKeys + 1 {
					key := fmt.Sprintf("k%d", i)
					m.Policy(key)
					require.True(t, has(m, key), "cap %d, trial %d: %s dropped by its own sweep", maxKeys, trial, key)
					m.Policy(key)
					require.Equal(t, 1, c.of(key), "cap %d, trial %d: %s got a new policy", maxKeys, trial, key)
				}
				assert.LessOrEqual(t, m.Len(), maxKeys)
			}
		}
	})
}

// An idle timeout shorter than the time between a key's addition and its
// sweep does not drop the key either.
func TestFreshKeyKeptWhenIdleTimeoutIsTiny(t *testing.T) {
	var c counter
	m := keyed.New("keyed: Test", c.newPolicy, 2, time.Nanosecond)
	for i := range 100 {
		key := fmt.Sprintf("k%d", i)
		m.Policy(key)
		require.True(t, has(m, key), "%s dropped by its own sweep", key)
	}
	assert.LessOrEqual(t, m.Len(), 2)
}

// Keys that come and go keep the memory bounded.
func TestManyKeysStayBounded(t *testing.T) {
	var c counter
	m := keyed.New("keyed: Test", c.newPolicy, 100, time.Hour)
	for i := range 10_000 {
		m.Policy(fmt.Sprintf("k%d", i))
		if n := m.Len(); n > 100 {
			t.Fatalf("after key %d: %d keys kept, past the cap of 100", i, n)
		}
	}
	assert.Len(t, m.Keys(), m.Len(), "the count matches the maps")
}

// Calls racing on new and old keys all get their own key's policy, and
// the cap holds once they are done.
func TestConcurrentCalls(t *testing.T) {
	type named struct {
		resilience.Policy
		key string
	}
	m := keyed.New("keyed: Test", func(key string) resilience.Policy {
		return named{resilience.Chain(), key}
	}, 16, time.Hour)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprintf("k%d", (i*7+g)%40)
				if p := m.Policy(key).(named); p.key != key {
					t.Errorf("a call to %s got the policy of %s", key, p.key)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, m.Len(), 16)
	assert.Len(t, m.Keys(), m.Len())
}

// Each key has a policy of its own: a breaker that opens for one key
// leaves the others closed.
func TestPolicyPerKey(t *testing.T) {
	breakers := keyed.New("keyed: Test", func(string) resilience.Policy {
		return circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1))
	}, 10, time.Minute)
	ctx := context.Background()
	boom := fmt.Errorf("boom")
	assert.ErrorIs(t, breakers.Policy("a").Do(ctx, func(context.Context) error { return boom }), boom)
	assert.ErrorIs(t, breakers.Policy("a").Do(ctx, nop), circuitbreaker.ErrOpen, "a's breaker is open")
	assert.NoError(t, breakers.Policy("b").Do(ctx, nop), "b has a breaker of its own")
}

// A Map held by value and readied with Init works as one from New.
func TestInit(t *testing.T) {
	var c counter
	var m keyed.Map
	m.Init("keyed: Test", c.newPolicy, 1, time.Minute)
	a := m.Policy("a")
	assert.Same(t, a, m.Policy("a"))
	m.Policy("b")
	assert.Equal(t, []string{"b"}, m.Keys(), "the cap of 1 holds")
}

func TestPanics(t *testing.T) {
	newPolicy := func(string) resilience.Policy { return resilience.Chain() }
	assert.PanicsWithValue(t, "pkg: PerX: nil newPolicy", func() { keyed.New("pkg: PerX", nil, 1, time.Second) })
	assert.PanicsWithValue(t, "pkg: PerX: maxKeys 0, idle 1s: want maxKeys >= 1 and idle > 0",
		func() { keyed.New("pkg: PerX", newPolicy, 0, time.Second) })
	assert.PanicsWithValue(t, "pkg: PerX: maxKeys 1, idle 0s: want maxKeys >= 1 and idle > 0",
		func() { keyed.New("pkg: PerX", newPolicy, 1, 0) })
	assert.PanicsWithValue(t, "pkg: PerX: nil newPolicy", func() { new(keyed.Map).Init("pkg: PerX", nil, 1, time.Second) })

	m := keyed.New("pkg: PerX", func(string) resilience.Policy { return nil }, 1, time.Second)
	assert.PanicsWithValue(t, `pkg: PerX: newPolicy("k") returned nil`, func() { m.Policy("k") })
	var nilBreaker *circuitbreaker.Breaker
	m = keyed.New("pkg: PerX", func(string) resilience.Policy { return nilBreaker }, 1, time.Second)
	assert.PanicsWithValue(t, `pkg: PerX: newPolicy("k") returned nil`, func() { m.Policy("k") },
		"a nil pointer in the interface is nil too")
	assert.Zero(t, m.Len(), "nothing kept after a panic")
}

func TestIsNil(t *testing.T) {
	var nilBreaker *circuitbreaker.Breaker
	var nilFunc resilience.PolicyFunc
	tests := []struct {
		p    resilience.Policy
		want bool
	}{
		{nil, true},
		{nilBreaker, true},
		{nilFunc, true},
		{circuitbreaker.New(), false},
		{resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error { return op(ctx) }), false},
		{struct{ resilience.Policy }{}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, keyed.IsNil(tt.p), "%#v", tt.p)
	}
}

// A call to a key kept allocates nothing.
func TestPolicyAllocations(t *testing.T) {
	if policytest.RaceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	m := keyed.New("keyed: Test", func(string) resilience.Policy { return resilience.Chain() }, 10, time.Minute)
	ctx := context.Background()
	m.Policy("a")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = m.Policy("a").Do(ctx, nop) }))
}
