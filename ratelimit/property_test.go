package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/ratelimit"
)

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// checkWindow fails t if some interval between two admissions holds more
// than r·length + burst of them. admitted is in time order.
func checkWindow(t *rapid.T, admitted []time.Duration, r float64, burst int) {
	for i := range admitted {
		for j := i; j < len(admitted); j++ {
			n := j - i + 1
			allowed := r*(admitted[j]-admitted[i]).Seconds() + float64(burst)
			if float64(n) > allowed+1e-9 {
				t.Fatalf("%d admitted between %v and %v: more than %v·%v + %d", n, admitted[i], admitted[j],
					r, admitted[j]-admitted[i], burst)
			}
		}
	}
}

// Over any interval of length T, no more than r·T + burst calls are
// admitted, whatever the pattern of calls.
func TestAdmittedWithinRateAndBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			r := rapid.SampledFrom([]float64{1, 10, 100, 1000}).Draw(rt, "rate")
			burst := rapid.IntRange(1, 20).Draw(rt, "burst")
			l := ratelimit.New(rate.Limit(r), burst)
			start := time.Now()
			var admitted []time.Duration
			steps := rapid.IntRange(1, 40).Draw(rt, "steps")
			perToken := time.Duration(float64(time.Second) / r)
			for range steps {
				time.Sleep(time.Duration(rapid.Int64Range(0, int64(2*perToken)*int64(burst)).Draw(rt, "sleep")))
				for range rapid.IntRange(1, 30).Draw(rt, "calls") {
					if l.Allow() {
						admitted = append(admitted, time.Since(start))
					}
				}
			}
			checkWindow(rt, admitted, r, burst)
		})
	})
}

// The same holds for callers that wait for their tokens, concurrently.
func TestWaitingCallersWithinRateAndBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			r := rapid.SampledFrom([]float64{10, 100}).Draw(rt, "rate")
			burst := rapid.IntRange(1, 10).Draw(rt, "burst")
			maxWait := time.Duration(rapid.IntRange(0, 500).Draw(rt, "maxWaitMs")) * time.Millisecond
			l := ratelimit.New(rate.Limit(r), burst, ratelimit.WithMaxWait(maxWait))
			start := time.Now()
			var (
				mu       sync.Mutex
				admitted []time.Duration
				wg       sync.WaitGroup
			)
			for g := range rapid.IntRange(1, 8).Draw(rt, "callers") {
				pause := time.Duration(rapid.IntRange(0, 200).Draw(rt, "pauseMs")) * time.Millisecond
				calls := rapid.IntRange(1, 20).Draw(rt, "calls")
				wg.Go(func() {
					for i := range calls {
						time.Sleep(pause + time.Duration(g+i)*time.Millisecond)
						_ = l.Do(context.Background(), func(context.Context) error {
							mu.Lock()
							admitted = append(admitted, time.Since(start))
							mu.Unlock()
							return nil
						})
					}
				})
			}
			wg.Wait()
			checkWindow(rt, admitted, r, burst)
		})
	})
}

// A caller that keeps to the rate is never refused, whatever the burst.
func TestSteadyCallerIsNeverRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			r := rapid.SampledFrom([]float64{1, 3, 10, 50, 1000}).Draw(rt, "rate")
			burst := rapid.IntRange(1, 5).Draw(rt, "burst")
			l := ratelimit.New(rate.Limit(r), burst)
			every := time.Duration(float64(time.Second) / r)
			if rapid.Bool().Draw(rt, "afterBurst") {
				for l.Allow() { // spend the burst first
				}
				time.Sleep(every)
			}
			for i := range 200 {
				if !l.Allow() {
					rt.Fatalf("call %d at the rate of %v a second refused", i, r)
				}
				time.Sleep(every)
			}
		})
	})
}
