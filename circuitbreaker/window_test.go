package circuitbreaker_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	cb "github.com/resilience-go/resilience/circuitbreaker"
)

func TestCountWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithCountWindow(10), cb.WithFailureRate(0.5, 10))
		run(b, 4, fail)
		run(b, 6, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10, Failures: 4}, b.Metrics())
		// Four more successes push the four failures out.
		run(b, 4, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10, Failures: 0}, b.Metrics())
		// Four failures are 4 of 10: closed. A fifth is 5 of 10: open.
		run(b, 4, fail)
		assert.Equal(t, cb.Closed, b.State())
		run(b, 1, fail)
		assert.Equal(t, cb.Open, b.State())
	})
}

func TestTimeWindowForgetsOldBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithTimeWindow(10*time.Second, 10), cb.WithFailureRate(0.5, 10))
		run(b, 9, fail)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 9, Failures: 9, ConsecutiveFailures: 9}, b.Metrics(), "9 calls: below the minimum")
		time.Sleep(10 * time.Second)
		run(b, 10, succeed)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 10}, b.Metrics(), "the failures left the window")
	})
}

func TestTimeWindowTripsAndExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := cb.New(cb.WithTimeWindow(10*time.Second, 10), cb.WithFailureRate(0.5, 10))
		run(b, 20, succeed)
		time.Sleep(9 * time.Second)
		run(b, 9, fail)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 29, Failures: 9, ConsecutiveFailures: 9}, b.Metrics())
		// The 20 successes were recorded in the first bucket; once it
		// leaves the window the 9 failures are all there is, and the next
		// outcome, even a success, finds 9 of 10 failed.
		time.Sleep(1500 * time.Millisecond)
		assert.Equal(t, cb.Metrics{State: cb.Closed, Calls: 9, Failures: 9, ConsecutiveFailures: 9}, b.Metrics())
		run(b, 1, succeed)
		assert.Equal(t, cb.Open, b.State())
	})
}

// Counts stay exact under concurrency: 32 goroutines, a known number of
// failures, a window that holds them all.
func TestExactCountsUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // time stands still: the time window keeps every call
		for _, window := range []cb.Option{cb.WithCountWindow(100_000), cb.WithTimeWindow(time.Minute, 60)} {
			b := cb.New(window, cb.WithSlowCalls(time.Hour, 1))
			b.MetricsOnly()
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 500 {
						if (g+i)%4 == 0 {
							_ = b.Do(context.Background(), fail)
						} else {
							_ = b.Do(context.Background(), succeed)
						}
						_ = b.Metrics() // readers race with the writers
					}
				})
			}
			wg.Wait()
			assert.Equal(t, cb.Metrics{State: cb.MetricsOnly, Calls: 16000, Failures: 4000}, withoutConsecutive(b.Metrics()))
		}
	})
}

// withoutConsecutive zeroes the one count that depends on the interleaving.
func withoutConsecutive(m cb.Metrics) cb.Metrics {
	m.ConsecutiveFailures = 0
	return m
}
