package hedge_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
)

// backend answers each request after a latency drawn, from a seeded
// source, from latency, and counts the requests it gets.
type backend struct {
	mu       sync.Mutex
	rand     *rand.Rand
	latency  func(r *rand.Rand) time.Duration
	requests int
}

func (b *backend) call(ctx context.Context) error {
	b.mu.Lock()
	b.requests++
	d := b.latency(b.rand)
	b.mu.Unlock()
	return sleep(ctx, d)
}

// longTail is a healthy backend: 98% of requests take 5 to 15 ms, the
// other 2% (a GC pause, a busy replica) 200 ms to a second.
func longTail(r *rand.Rand) time.Duration {
	if r.Float64() < 0.02 {
		return 200*time.Millisecond + time.Duration(r.Int64N(int64(800*time.Millisecond)))
	}
	return 5*time.Millisecond + time.Duration(r.Int64N(int64(10*time.Millisecond)))
}

// slow is a backend in an incident: every request takes 200 to 400 ms.
func slow(r *rand.Rand) time.Duration {
	return 200*time.Millisecond + time.Duration(r.Int64N(int64(200*time.Millisecond)))
}

// measure makes n calls, one after another, through p to b, and returns
// their latencies, sorted, and the requests b got for them.
func measure(t *testing.T, p resilience.Policy, b *backend, n int) ([]time.Duration, int) {
	t.Helper()
	before := b.requests
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		require.NoError(t, p.Do(context.Background(), b.call))
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	return lat, b.requests - before
}

func p99(sorted []time.Duration) time.Duration { return sorted[len(sorted)*99/100] }

// TestSimulationTail runs 10000 calls on virtual time against a backend
// whose latency has a long tail, bare and through a default Hedger, from
// the same seed: the hedger cuts the 99th percentile by at least 5× and
// adds at most 5% to the load. Then the backend turns slow for every
// call, and the hedges stay within the 5% cap while the quantile catches
// up, and stop once it has.
func TestSimulationTail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10000
		bare := &backend{rand: rand.New(rand.NewPCG(7, 8)), latency: longTail}
		direct := resilience.Chain()
		bareLat, _ := measure(t, direct, bare, n)

		h := hedge.New()
		b := &backend{rand: rand.New(rand.NewPCG(7, 8)), latency: longTail}
		measure(t, h, b, 1000) // learn the latencies
		lat, requests := measure(t, h, b, n)
		extra := float64(requests-n) / n
		delay, _ := h.Delay()
		t.Logf("long tail: p99 %v bare, %v hedged after %v (p50 %v, %v), extra load %.2f%%",
			p99(bareLat), p99(lat), delay, bareLat[n/2], lat[n/2], 100*extra)
		assert.GreaterOrEqual(t, p99(bareLat), 5*p99(lat), "p99 bare and hedged")
		assert.LessOrEqual(t, extra, 0.05, "extra load of the hedges")
		assert.Positive(t, extra, "hedges sent")

		b.latency = slow
		lat, requests = measure(t, h, b, 2000)
		extra = float64(requests-2000) / 2000
		delay, known := h.Delay()
		t.Logf("incident: p99 %v, extra load %.2f%%, delay now %v (known %v)", p99(lat), 100*extra, delay, known)
		assert.LessOrEqual(t, extra, 0.05, "extra load of the hedges while every call is slow")
		// At 3 calls a second, the window holds fewer than 100 latencies:
		// the hedger waits for more before it hedges on a delay again.
		assert.True(t, !known || delay >= 200*time.Millisecond, "the delay %v follows the latencies up, or is unknown", delay)
		_, requests = measure(t, h, b, 1000)
		assert.LessOrEqual(t, requests-1000, 5, "hedges once the delay has caught up")

		// With 20 callers at once, the window holds enough latencies, and
		// the delay follows them up.
		var wg sync.WaitGroup
		before := b.requests
		for range 20 {
			wg.Go(func() {
				for range 100 {
					assert.NoError(t, h.Do(context.Background(), b.call))
				}
			})
		}
		wg.Wait()
		extra = float64(b.requests-before-2000) / 2000
		delay, known = h.Delay()
		t.Logf("incident, 20 callers: extra load %.2f%%, delay now %v", 100*extra, delay)
		assert.LessOrEqual(t, extra, 0.05, "extra load of the hedges of 20 callers while every call is slow")
		assert.True(t, known && delay >= 200*time.Millisecond, "the delay %v (known %v) follows the latencies up", delay, known)

		// A fixed delay below the incident's latency would hedge every
		// call but for the cap.
		fixed := hedge.New(hedge.WithDelay(20 * time.Millisecond))
		_, requests = measure(t, fixed, b, 2000)
		extra = float64(requests-2000) / 2000
		t.Logf("incident, fixed delay: extra load %.2f%%", 100*extra)
		assert.LessOrEqual(t, extra, 0.05+10.0/2000, "extra load of a fixed delay, the 10 saved hedges included")
	})
}
