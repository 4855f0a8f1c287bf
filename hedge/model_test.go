package hedge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
)

// The model of a hedger with a fixed delay: a plain event-by-event
// statement of the rules, run beside a Hedger on the same calls. Each
// call is a list of steps, one per attempt that may start; an attempt's
// time is a whole number of milliseconds plus 2^i microseconds, so that
// no two events of a call fall at the same instant.

const modelDelay = 10 * time.Millisecond

// outcome of an attempt.
const (
	succeeds = iota
	failsRetryable
	failsFatal
)

type modelStep struct {
	ms      int
	outcome int
}

// takes returns how long attempt i of a step takes.
func (s modelStep) takes(i int) time.Duration {
	return time.Duration(s.ms)*time.Millisecond + time.Duration(1<<i)*time.Microsecond
}

func (s modelStep) err() error {
	switch s.outcome {
	case failsRetryable:
		return errSlow
	case failsFatal:
		return errFatal
	}
	return nil
}

// hedgeModel is the hedger's state across calls: the extra-load cap, in
// millionths of a hedge.
type hedgeModel struct {
	maxHedges       int
	ratio           int64
	deposits, spent int64
}

func (m *hedgeModel) allow() bool {
	balance := m.deposits - m.spent
	if balance > 10_000_000 {
		m.spent += balance - 10_000_000
		balance = 10_000_000
	}
	if balance < 1_000_000 {
		return false
	}
	m.spent += 1_000_000
	return true
}

// outcomeOf is what a call should come to.
type outcomeOf struct {
	starts []time.Duration
	winner int
	err    error
	took   time.Duration
	losers []any
}

// call runs the rules over steps.
func (m *hedgeModel) call(steps []modelStep) outcomeOf {
	m.deposits += m.ratio
	type running struct {
		i   int
		end time.Duration
	}
	var (
		starts  = []time.Duration{0}
		run     = []running{{0, steps[0].takes(0)}}
		timerAt = time.Duration(-1)
	)
	if m.maxHedges >= 1 {
		timerAt = modelDelay
	}
	start := func(at time.Duration) {
		i := len(starts)
		starts = append(starts, at)
		run = append(run, running{i, at + steps[i].takes(i)})
	}
	decide := func(i int, at time.Duration) outcomeOf {
		o := outcomeOf{starts: starts, winner: i, err: steps[i].err(), took: at}
		for j := range starts {
			if j != i {
				o.losers = append(o.losers, j)
			}
		}
		return o
	}
	for {
		next := slices.MinFunc(run, func(a, b running) int { return int(a.end - b.end) })
		if timerAt >= 0 && timerAt < next.end {
			at := timerAt
			timerAt = -1
			if len(starts) <= m.maxHedges && m.allow() {
				start(at)
				if len(starts) <= m.maxHedges {
					timerAt = at + modelDelay
				}
			}
			continue
		}
		run = slices.DeleteFunc(run, func(r running) bool { return r.i == next.i })
		switch st := steps[next.i]; {
		case st.outcome != failsRetryable:
			return decide(next.i, next.end)
		case len(starts) <= m.maxHedges && m.allow():
			start(next.end)
		case len(run) == 0:
			return decide(next.i, next.end)
		}
	}
}

// modelRun is a Hedger and its model, and the values the Hedger discards.
type modelRun struct {
	h *hedge.Hedger
	m *hedgeModel
	d *discarded
}

func newModelRun(maxHedges int, ratio float64) *modelRun {
	d := new(discarded)
	h := hedge.New(hedge.WithDelay(modelDelay), hedge.WithMaxHedges(maxHedges), hedge.WithMaxExtraLoad(ratio),
		hedge.WithDiscard(d.discard), hedge.WithRetryIf(func(err error) bool { return !errors.Is(err, errFatal) }))
	return &modelRun{h: h, m: &hedgeModel{maxHedges: maxHedges, ratio: int64(ratio * 1e6)}, d: d}
}

// call runs steps through the Hedger and compares with the model: when
// the attempts started, the value and error Do returned, how long it took
// and the values discarded.
func (r *modelRun) call(steps []modelStep) error {
	want := r.m.call(steps)
	r.d.values = nil
	s := &script{t0: time.Now()}
	for i, st := range steps {
		s.steps = append(s.steps, step{st.takes(i), st.err()})
	}
	start := time.Now()
	v, err := resilience.Do(context.Background(), r.h, s.fn)
	losers := r.d.all()
	slices.SortFunc(losers, func(a, b any) int { return a.(int) - b.(int) })
	switch {
	case !slices.Equal(s.starts(), want.starts):
		return fmt.Errorf("attempts started at %v, model %v", s.starts(), want.starts)
	case v != want.winner || !errors.Is(err, want.err) || (err == nil) != (want.err == nil):
		return fmt.Errorf("Do returned %v, %v; model %v, %v", v, err, want.winner, want.err)
	case time.Since(start) != want.took:
		return fmt.Errorf("Do took %v, model %v", time.Since(start), want.took)
	case !slices.Equal(losers, want.losers):
		return fmt.Errorf("values discarded %v, model %v", losers, want.losers)
	}
	return nil
}

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// The Hedger and the model agree on every call of random sequences: when
// each attempt starts, which wins, what Do returns and when, and which
// values are discarded, with the extra-load cap carried from call to call.
func TestModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			maxHedges := rapid.IntRange(1, hedge.MaxHedges).Draw(rt, "maxHedges")
			r := newModelRun(maxHedges, rapid.SampledFrom([]float64{0.1, 0.5, 1, 4}).Draw(rt, "ratio"))
			stepGen := rapid.Custom(func(t *rapid.T) modelStep {
				return modelStep{ms: rapid.IntRange(1, 45).Draw(t, "ms"), outcome: rapid.IntRange(0, 2).Draw(t, "outcome")}
			})
			for range rapid.IntRange(1, 20).Draw(rt, "calls") {
				steps := rapid.SliceOfN(stepGen, maxHedges+1, maxHedges+1).Draw(rt, "steps")
				if err := r.call(steps); err != nil {
					rt.Fatal(err)
				}
			}
		})
	})
}
