package wait_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/wait"
)

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		assert.True(t, wait.Sleep(context.Background(), time.Second))
		assert.Equal(t, time.Second, time.Since(start))

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start = time.Now()
		assert.False(t, wait.Sleep(ctx, time.Hour), "the ctx ends first")
		assert.Equal(t, 300*time.Millisecond, time.Since(start))

		assert.True(t, wait.Sleep(ctx, 0), "no wait at all, even with ctx done")
		assert.True(t, wait.Sleep(ctx, -time.Second))
	})
}

func ExampleSleep() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fmt.Println(wait.Sleep(ctx, time.Hour))
	fmt.Println(wait.Sleep(context.Background(), time.Millisecond))
	// Output:
	// false
	// true
}

// BenchmarkSleepDone is a wait that ends at once, its ctx being done: the
// cost of the timer.
func BenchmarkSleepDone(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.ReportAllocs()
	for b.Loop() {
		wait.Sleep(ctx, time.Hour)
	}
}
