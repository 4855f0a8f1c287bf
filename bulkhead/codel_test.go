package bulkhead_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/internal/policytest"
)

func TestCoDelContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy {
		return bulkhead.Adaptive(bulkhead.WithLimits(1, 4, 8), bulkhead.WithCoDel(5*time.Millisecond, 100*time.Millisecond))
	})
}

func TestCoDelObserved(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyAdaptiveLimiter, func(name string, o resilience.Observer) resilience.Policy {
		opts := []bulkhead.AdaptiveOption{bulkhead.WithName(name), bulkhead.WithCoDel(5*time.Millisecond, 100*time.Millisecond)}
		if o != nil {
			opts = append(opts, bulkhead.WithObserver(o))
		}
		return bulkhead.Adaptive(opts...)
	})
}

// queued starts a call that waits for a permit of a, and records when its
// op starts in order; it returns where its result arrives.
func queued(a *bulkhead.AdaptiveBulkhead, ctx context.Context, id int, mu *sync.Mutex, order *[]int) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- a.Do(ctx, func(context.Context) error {
			mu.Lock()
			*order = append(*order, id)
			mu.Unlock()
			return nil
		})
	}()
	synctest.Wait()
	return done
}

// While the queue drains, a call waits up to the interval, and permits go
// first come, first served.
func TestCoDelFIFOWhileTheQueueDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec policytest.Recorder
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1), bulkhead.WithCoDel(5*time.Millisecond, 100*time.Millisecond),
			bulkhead.WithObserver(&rec))
		release := make(chan struct{})
		held := hold(t, a, 1, release)

		start := time.Now()
		err := a.Do(context.Background(), nop)
		assert.ErrorIs(t, err, bulkhead.ErrFull)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "a lone waiter waits the interval")
		assert.Equal(t, int64(1), a.Metrics().Rejected)
		events := rec.Events()
		require.Len(t, events, 1)
		assert.Equal(t, resilience.Rejected, events[0].Kind)
		assert.Equal(t, 100*time.Millisecond, events[0].Duration)

		var mu sync.Mutex
		var order []int
		var results []<-chan error
		for i := range 3 {
			results = append(results, queued(a, context.Background(), i, &mu, &order))
			time.Sleep(10 * time.Millisecond)
		}
		assert.Equal(t, int64(3), a.Metrics().Waiting)
		close(release)
		require.NoError(t, <-held)
		for _, r := range results {
			require.NoError(t, <-r)
		}
		assert.Equal(t, []int{0, 1, 2}, order, "first come, first served")
		assert.Equal(t, bulkhead.AdaptiveMetrics{Limit: 1, Rejected: 1}, a.Metrics())
	})
}

// Once the queue has not been empty for an interval, a newcomer waits at
// most the target, and a freed permit goes to the newest waiter.
func TestCoDelLIFOWhenCongested(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1), bulkhead.WithCoDel(5*time.Millisecond, 100*time.Millisecond))
		release := make(chan struct{})
		held := hold(t, a, 1, release)

		// Waiters come every 30ms, each waiting the interval, so that the
		// queue is never empty.
		var mu sync.Mutex
		var order []int
		var results []<-chan error
		for i := range 5 {
			results = append(results, queued(a, context.Background(), i, &mu, &order))
			time.Sleep(30 * time.Millisecond)
		}
		// 150ms since the queue was last empty: congested. A newcomer
		// waits the target only.
		start := time.Now()
		assert.ErrorIs(t, a.Do(context.Background(), nop), bulkhead.ErrFull)
		assert.Equal(t, 5*time.Millisecond, time.Since(start), "a newcomer to a standing queue waits the target")

		// The first waiters' waits ran out; the newest still wait.
		newest := queued(a, context.Background(), 5, &mu, &order)
		close(release)
		require.NoError(t, <-held)
		require.NoError(t, <-newest)
		// Waiters 0 to 3 came while the queue was young and wait the
		// interval: 0 and 1 ran out of it. Waiter 4 came at 120ms, to a
		// queue not empty for more than the interval, and waited the
		// target only.
		for i, r := range results {
			err := <-r
			if i < 2 || i == 4 {
				assert.ErrorIs(t, err, bulkhead.ErrFull, "waiter %d", i)
			} else {
				assert.NoError(t, err, "waiter %d", i)
			}
		}
		assert.Equal(t, []int{5, 3, 2}, order, "newest first")
	})
}

// A waiter whose ctx ends leaves the queue with ctx.Err(), and is not
// counted as refused; a limit that grows hands permits to waiters.
func TestCoDelWaiterGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := bulkhead.Adaptive(bulkhead.WithLimits(1, 1, 1), bulkhead.WithCoDel(time.Second, time.Minute))
		release := make(chan struct{})
		held := hold(t, a, 1, release)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		assert.Equal(t, context.DeadlineExceeded, a.Do(ctx, nop))
		assert.Equal(t, bulkhead.AdaptiveMetrics{Limit: 1, InFlight: 1}, a.Metrics())
		close(release)
		require.NoError(t, <-held)
	})
}

func TestCoDelBadArgumentsPanic(t *testing.T) {
	assert.PanicsWithValue(t, "bulkhead: WithCoDel(0s, 1s): want 0 < target <= interval", func() { bulkhead.WithCoDel(0, time.Second) })
	assert.PanicsWithValue(t, "bulkhead: WithCoDel(2s, 1s): want 0 < target <= interval", func() { bulkhead.WithCoDel(2*time.Second, time.Second) })
}

// FuzzCoDel drives a CoDel queue at a fixed limit with the arrivals,
// completions, deadlines and sleeps the input spells out, and checks after
// each: never more in flight than the limit, refusals never go down, no
// call waits longer than the interval, and every call ends.
func FuzzCoDel(f *testing.F) {
	f.Add([]byte{2, 3, 0, 0, 0, 0, 1, 7, 0, 0, 2, 11, 0, 0, 6})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 3, 0, 2, 2, 2, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		synctest.Test(t, func(t *testing.T) { fuzzCoDel(t, data) })
	})
}

func fuzzCoDel(t *testing.T, data []byte) {
	limit := int64(data[0]%3) + 1
	target := time.Duration(data[1]%8+1) * time.Millisecond
	interval := target * 5
	a := bulkhead.Adaptive(bulkhead.WithLimits(int(limit), int(limit), int(limit)), bulkhead.WithCoDel(target, interval))
	var (
		mu       sync.Mutex
		releases []chan struct{}
		running  []int
		wg       sync.WaitGroup
		waited   []time.Duration // how long each call waited before it ran or was refused
	)
	var lastRejected int64
	for _, c := range data[2:] {
		switch c % 4 {
		case 0, 1: // a call arrives, with or without a deadline
			id := len(releases)
			release := make(chan struct{})
			releases = append(releases, release)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if c%4 == 1 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(c/4)*time.Millisecond)
			}
			wg.Go(func() {
				defer cancel()
				start := time.Now()
				err := a.Do(ctx, func(context.Context) error {
					mu.Lock()
					running = append(running, id)
					waited = append(waited, time.Since(start))
					mu.Unlock()
					<-release
					return nil
				})
				if err != nil {
					mu.Lock()
					waited = append(waited, time.Since(start))
					mu.Unlock()
				}
			})
		case 2: // the oldest running call finishes
			mu.Lock()
			if len(running) > 0 {
				close(releases[running[0]])
				running = running[1:]
			}
			mu.Unlock()
		case 3:
			time.Sleep(time.Duration(c/4) * time.Millisecond)
		}
		synctest.Wait()
		m := a.Metrics()
		if m.InFlight > limit || m.InFlight < 0 || m.Waiting < 0 || m.Rejected < lastRejected {
			t.Fatalf("limit %d: %+v after %d refusals", limit, m, lastRejected)
		}
		lastRejected = m.Rejected
	}
	for {
		mu.Lock()
		if len(running) == 0 {
			mu.Unlock()
			break
		}
		close(releases[running[0]])
		running = running[1:]
		mu.Unlock()
		synctest.Wait()
	}
	time.Sleep(interval)
	synctest.Wait()
	for {
		mu.Lock()
		n := len(running)
		for _, id := range running {
			close(releases[id])
		}
		running = nil
		mu.Unlock()
		if n == 0 {
			break
		}
		synctest.Wait()
	}
	wg.Wait()
	if m := a.Metrics(); m.InFlight != 0 || m.Waiting != 0 {
		t.Fatalf("every call ended, yet %+v", m)
	}
	if len(waited) != len(releases) {
		t.Fatalf("%d calls, %d ended", len(releases), len(waited))
	}
	for i, w := range waited {
		if w > interval {
			t.Fatalf("call %d waited %v, past the interval %v", i, w, interval)
		}
	}
}
