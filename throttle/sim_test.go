package throttle_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/throttle"
)

// errOverloaded is the simulated backend's refusal.
var errOverloaded error = resilience.Rejection("backend: overloaded")

// backend accepts up to capacity calls a second of virtual time and
// refuses the rest, and counts what it sees.
type backend struct {
	capacity       int
	second         int64
	inSecond       int
	seen, accepted int
}

func (b *backend) call(context.Context) error {
	b.seen++
	if s := time.Now().Unix(); s != b.second {
		b.second, b.inSecond = s, 0
	}
	if b.inSecond >= b.capacity {
		return errOverloaded
	}
	b.inSecond++
	b.accepted++
	return nil
}

// simulate makes rate calls a second for d through th to b.
func simulate(th *throttle.Throttle, b *backend, rate int, d time.Duration) {
	gap := time.Second / time.Duration(rate)
	for end := time.Now().Add(d); time.Now().Before(end); {
		_ = th.Do(context.Background(), b.call)
		time.Sleep(gap)
	}
}

// TestSimulationOverload runs 100 calls a second, on virtual time, against
// a backend that is healthy for a window, then can take only 20 calls a
// second (so that it would refuse 80% of them) for three windows, then
// recovers. Once the window has turned over in the overload, the backend
// sees twice what it accepts (K = 2) and no more, and after it recovers the
// throttle opens fully within seconds: the recent span decides once the
// backend accepts clearly more than it did. The book's formula over the
// window alone (WithRecovery(0)) opens only as the overload's buckets leave
// the window.
func TestSimulationOverload(t *testing.T) {
	tests := []struct {
		window   time.Duration
		buckets  int
		recovery time.Duration
		most     float64       // the most the backend sees, in accepts
		opens    time.Duration // the rejection is 0 this long after recovery
	}{
		{2 * time.Minute, 120, 5 * time.Second, 2.02, 5 * time.Second}, // the defaults
		{2 * time.Minute, 120, 0, 2.02, 90 * time.Second},
		// A short window's counts are coarser.
		{10 * time.Second, 10, 5 * time.Second, 2.15, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/recovery=%v", tt.window, tt.recovery), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				th := throttle.New(throttle.WithWindow(tt.window, tt.buckets), throttle.WithRecovery(tt.recovery),
					throttle.WithRand(rand.New(rand.NewPCG(1, 2))))
				b := &backend{capacity: 1000}
				simulate(th, b, 100, tt.window)
				b.capacity = 20
				simulate(th, b, 100, 2*tt.window) // the window turns over
				*b = backend{capacity: 20}
				simulate(th, b, 100, 2*time.Minute) // the steady state, measured
				ratio := float64(b.seen) / float64(b.accepted)
				assert.True(t, ratio > 1.9 && ratio <= tt.most, "window %v: the overloaded backend saw %d calls and accepted %d: want about 2×, at most %v×",
					tt.window, b.seen, b.accepted, tt.most)
				assert.InDelta(t, 0.6, th.Metrics().Rejection, 0.05, "window %v: rejection in the overload", tt.window)

				b.capacity = 1000
				var opened time.Duration
				for s := time.Second; s <= 2*tt.window; s += time.Second {
					simulate(th, b, 100, time.Second)
					if th.Metrics().Rejection == 0 {
						opened = s
						break
					}
				}
				t.Logf("window %v, recovery %v: backend saw %.3f× its accepts in the overload; the throttle opened %v after recovery",
					tt.window, tt.recovery, ratio, opened)
				assert.NotZero(t, opened, "window %v: still rejecting %v after recovery", tt.window, 2*tt.window)
				assert.LessOrEqual(t, opened, tt.opens, "window %v: time to open after recovery", tt.window)
			})
		})
	}
}
