package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/throttle"
)

// model is a plain statement of the throttle's rule: every request is kept
// with its tick and whether it was accepted, and the counts are recomputed
// from the list.
type model struct {
	epoch      time.Time
	width      time.Duration
	n          int64
	recent     int64 // buckets of the recent span; 0 for none
	k, ceiling float64
	rand       *rand.Rand // seeded as the throttle's
	entries    []*entry
}

type entry struct {
	tick     int64
	accepted bool
}

func (m *model) tick() int64 { return int64(time.Since(m.epoch) / m.width) }

// counts returns the requests and accepts in the window at tick t.
func (m *model) counts(t int64) (requests, accepts int64) {
	for _, e := range m.entries {
		if e.tick > t-m.n {
			requests++
			if e.accepted {
				accepts++
			}
		}
	}
	return requests, accepts
}

// recentCounts returns the requests and accepts in the recent span at
// tick t.
func (m *model) recentCounts(t int64) (requests, accepts int64) {
	for _, e := range m.entries {
		if e.tick > t-m.recent && e.tick > t-m.n {
			requests++
			if e.accepted {
				accepts++
			}
		}
	}
	return requests, accepts
}

// rejection is the formula's over the window or, once the recent span's
// is at most half of it, the recent span's.
func (m *model) rejection(t int64) float64 {
	formula := func(r, a int64) float64 {
		p := (float64(r) - m.k*float64(a)) / float64(r+1)
		return min(max(p, 0), m.ceiling)
	}
	p := formula(m.counts(t))
	if recent := formula(m.recentCounts(t)); m.recent > 0 && recent <= p/2 {
		return recent
	}
	return p
}

// outcomes of a call, for the model test and the fuzz target.
const (
	accepted  = iota // op succeeds
	failed           // op fails with an error that is not a refusal
	refused          // op fails with a refusal
	cancelled        // the caller cancels while op runs
	outcomes
)

// pair drives a Throttle and a model side by side, in a synctest bubble.
type pair struct {
	th *throttle.Throttle
	m  *model
}

// newPair makes a throttle with a window of n one-second buckets, the
// last recent of them its recent span.
func newPair(n, recent int, k, ceiling float64, seed uint64) *pair {
	th := throttle.New(throttle.WithWindow(time.Duration(n)*time.Second, n), throttle.WithK(k),
		throttle.WithRecovery(time.Duration(recent)*time.Second),
		throttle.WithMaxRejection(ceiling), throttle.WithRand(rand.New(rand.NewPCG(seed, seed))))
	return &pair{th: th, m: &model{epoch: time.Now(), width: time.Second, n: int64(n), recent: int64(min(recent, n)),
		k: k, ceiling: ceiling, rand: rand.New(rand.NewPCG(seed, seed))}}
}

// call makes a call that ends with outcome after d, and reports whether
// the throttle and the model agree on its rejection.
func (r *pair) call(outcome int, d time.Duration) error {
	m := r.m
	t := m.tick()
	p := m.rejection(t)
	e := &entry{tick: t}
	m.entries = append(m.entries, e)
	wantRejected := p > 0 && m.rand.Float64() < p

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := false
	err := r.th.Do(ctx, func(ctx context.Context) error {
		called = true
		time.Sleep(d)
		switch outcome {
		case failed:
			return errDown
		case refused:
			return errOverloaded
		case cancelled:
			cancel()
			return ctx.Err()
		}
		return nil
	})
	if rejected := errors.Is(err, throttle.ErrThrottled); rejected != wantRejected || rejected == called {
		return fmt.Errorf("tick %d, rejection %v: rejected %v (op called %v), model %v", t, p, rejected, called, wantRejected)
	}
	e.accepted = called && outcome != refused && e.tick > m.tick()-m.n
	return nil
}

// check compares the throttle's metrics with the model's.
func (r *pair) check() error {
	t := r.m.tick()
	requests, accepts := r.m.counts(t)
	want := throttle.Metrics{Requests: requests, Accepts: accepts, Rejection: r.m.rejection(t)}
	if got := r.th.Metrics(); got != want {
		return fmt.Errorf("tick %d: metrics %+v, model %+v", t, got, want)
	}
	return nil
}

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// The throttle and the model agree on every rejection and count, over
// random sequences of calls of every outcome, calls that span buckets, and
// waits that move the window on.
func TestModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			r := newPair(rapid.SampledFrom([]int{1, 2, 5, 10}).Draw(rt, "buckets"),
				rapid.SampledFrom([]int{0, 1, 2, 5}).Draw(rt, "recent"),
				rapid.SampledFrom([]float64{1, 1.5, 2, 3}).Draw(rt, "k"),
				rapid.SampledFrom([]float64{0, 0.5, 0.9, 1}).Draw(rt, "ceiling"),
				rapid.Uint64().Draw(rt, "seed"))
			rt.Repeat(map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					if err := r.check(); err != nil {
						rt.Fatal(err)
					}
				},
				"call": func(rt *rapid.T) {
					outcome := rapid.IntRange(0, outcomes-1).Draw(rt, "outcome")
					d := time.Duration(rapid.SampledFrom([]int{0, 0, 0, 300, 1500}).Draw(rt, "ms")) * time.Millisecond
					if err := r.call(outcome, d); err != nil {
						rt.Fatal(err)
					}
				},
				"burst": func(rt *rapid.T) {
					outcome := rapid.IntRange(0, outcomes-1).Draw(rt, "outcome")
					for range rapid.IntRange(1, 50).Draw(rt, "calls") {
						if err := r.call(outcome, 0); err != nil {
							rt.Fatal(err)
						}
					}
				},
				"sleep": func(rt *rapid.T) {
					time.Sleep(time.Duration(rapid.IntRange(0, 12000).Draw(rt, "ms")) * time.Millisecond)
				},
			})
		})
	})
}
