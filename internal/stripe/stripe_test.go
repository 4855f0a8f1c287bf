package stripe_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/stripe"
)

func TestCount(t *testing.T) {
	n := stripe.Count()
	assert.GreaterOrEqual(t, n, 16)
	assert.LessOrEqual(t, n, 64)
	assert.Zero(t, n&(n-1), "%d stripes: not a power of two", n)
}

func TestIndexWithinMask(t *testing.T) {
	for _, mask := range []int{0, 1, 3, 63} {
		i := stripe.Index(mask)
		assert.GreaterOrEqual(t, i, 0)
		assert.LessOrEqual(t, i, mask)
	}
}

func TestCounterSumsConcurrentAdds(t *testing.T) {
	c := stripe.NewCounter()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for range 1000 {
				c.Add(int64(g%3) - 1)
			}
		})
	}
	wg.Wait()
	want := int64(0)
	for g := range 32 {
		want += 1000 * (int64(g%3) - 1)
	}
	assert.Equal(t, want, c.Sum())
}

func TestGoroutinesSpreadOverStripes(t *testing.T) {
	seen := make(map[int]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			i := stripe.Index(63)
			mu.Lock()
			seen[i] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Greater(t, len(seen), 8, "64 goroutines landed on %d of 64 stripes", len(seen))
}
