package bulkhead

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/wait"
)

// Under heavy traffic only a sample of the calls is timed, and the p90
// latency is still right; when the traffic falls, every call is timed
// again within a window or two.
func TestAdaptiveSamplesLatencies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := Adaptive(WithLimits(1, 200, 200))
		load := func(goroutines int, d time.Duration) {
			var wg sync.WaitGroup
			start := time.Now()
			for range goroutines {
				wg.Go(func() {
					for time.Since(start) < d {
						_ = a.Do(context.Background(), func(ctx context.Context) error {
							wait.Sleep(ctx, 10*time.Millisecond)
							return nil
						})
					}
				})
			}
			wg.Wait()
		}
		load(128, 5*time.Second) // 12800 calls a second, 3200 a window
		assert.GreaterOrEqual(t, a.shift.Load(), uint32(3), "one call in 8 or fewer timed")
		m := a.Metrics()
		assert.GreaterOrEqual(t, m.Latency, 10*time.Millisecond)
		assert.LessOrEqual(t, m.Latency, 11*time.Millisecond)

		load(1, 3*time.Second) // 100 calls a second, 25 a window
		assert.Zero(t, a.shift.Load(), "every call timed")
		a.mu.Lock()
		end := time.Duration(a.windowEnd.Load())
		a.mu.Unlock()
		assert.Greater(t, end, time.Since(a.epoch)-2*time.Second, "windows still end")
	})
}
