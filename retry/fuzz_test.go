package retry_test

import (
	"testing"
	"time"

	"github.com/resilience-go/resilience/retry"
)

// FuzzDelay checks the wait arithmetic of every strategy at extreme inputs:
// never negative, never past the ceiling, never a panic.
func FuzzDelay(f *testing.F) {
	f.Add(uint8(1), int64(time.Millisecond), int64(time.Second), 3, int64(0))
	f.Add(uint8(2), int64(1), int64(1<<62), 1<<30, int64(1<<62))
	f.Add(uint8(4), int64(1<<40), int64(1<<63-1), 64, int64(1<<63-1))
	f.Fuzz(func(t *testing.T, kind uint8, base, maxDelay int64, attempt int, prev int64) {
		if base <= 0 || maxDelay < base {
			return
		}
		b := []func(time.Duration, time.Duration) retry.Backoff{
			retry.Exponential, retry.FullJitter, retry.EqualJitter, retry.DecorrelatedJitter,
		}[int(kind)%4](time.Duration(base), time.Duration(maxDelay))
		d := b.Delay(attempt, time.Duration(prev))
		if d < 0 || d > time.Duration(maxDelay) {
			t.Fatalf("kind %d, base %d, maxDelay %d, attempt %d, prev %d: wait %d", kind%4, base, maxDelay, attempt, prev, d)
		}
	})
}
