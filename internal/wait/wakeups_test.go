package wait_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/wait"
)

func TestWakeups(t *testing.T) {
	var w wait.Wakeups
	w.Wake() // nobody listens: nothing happens
	a, stopA := w.Subscribe()
	b, stopB := w.Subscribe()
	w.Wake()
	w.Wake() // one signal pending at most
	assert.Len(t, a, 1)
	assert.Len(t, b, 1)
	<-a
	stopA()
	w.Wake()
	assert.Empty(t, a, "no signal after stop")
	assert.Len(t, b, 1)
	stopB()
}

// After a wakeup, Idle takes quick looks of 1, 4, 16 and 64ms, then waits
// the poll interval; work ends the quick looks.
func TestIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var idle wait.Idle
		idle.Worked()
		wakeups := make(chan struct{}, 1)
		waited := func() time.Duration {
			start := time.Now()
			assert.True(t, idle.Wait(ctx, time.Second, wakeups, nil))
			return time.Since(start)
		}
		assert.Equal(t, time.Second, waited(), "no wakeup: the poll interval")
		wakeups <- struct{}{}
		assert.Zero(t, waited(), "a wakeup ends the wait")
		var looks []time.Duration
		for range 5 {
			looks = append(looks, waited())
		}
		assert.Equal(t, []time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond, 64 * time.Millisecond, time.Second}, looks)
		wakeups <- struct{}{}
		waited()
		idle.Worked()
		assert.Equal(t, time.Second, waited(), "work found: no more quick looks")

		ctx, cancel := context.WithCancel(ctx)
		cancel()
		assert.False(t, idle.Wait(ctx, time.Second, nil, nil))
	})
}

// Forward turns a blocking wait into signals, reports its errors, and
// stops with its goroutine.
func TestForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		var (
			mu       sync.Mutex
			reported []error
		)
		c, stop := wait.Forward(context.Background(), func(ctx context.Context) error {
			calls++
			switch calls {
			case 1:
				return nil
			case 2:
				return errors.New("listen failed")
			}
			<-ctx.Done()
			return ctx.Err()
		}, func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() })
		<-c
		time.Sleep(2 * time.Second) // past the pause after the error
		synctest.Wait()
		stop()
		mu.Lock()
		defer mu.Unlock()
		assert.Len(t, reported, 1)
		assert.Equal(t, 3, calls)
	})
}
