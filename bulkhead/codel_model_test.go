package bulkhead_test

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/bulkhead"
)

// A model of the CoDel queue of an adaptive bulkhead at a fixed limit: the
// calls running, the calls waiting (oldest first) with the end of their
// wait, when the queue was last empty, and how every call ended.
type codelModel struct {
	limit            int
	target, interval time.Duration
	running          []int
	waiting          []codelWaiter
	lastEmpty        time.Duration
	rejected         int64
	outcome          map[int]error
}

type codelWaiter struct {
	id  int
	end time.Duration
	err error // the FullError at the end of the wait, or the ctx's error
}

func (m *codelModel) congested(now time.Duration) bool {
	return len(m.waiting) > 0 && now-m.lastEmpty > m.interval
}

func (m *codelModel) arrive(id int, now, ctxDeadline time.Duration) {
	if len(m.waiting) == 0 && len(m.running) < m.limit {
		m.running = append(m.running, id)
		return
	}
	if len(m.waiting) == 0 {
		m.lastEmpty = now
	}
	w := codelWaiter{id: id, end: now + m.interval, err: bulkhead.ErrFull}
	if m.congested(now) {
		w.end = now + m.target
	}
	if ctxDeadline > 0 && ctxDeadline < w.end {
		w.end, w.err = ctxDeadline, context.DeadlineExceeded
	}
	m.waiting = append(m.waiting, w)
}

func (m *codelModel) finish(id int, now time.Duration) {
	m.running = slices.DeleteFunc(m.running, func(r int) bool { return r == id })
	m.outcome[id] = nil
	for len(m.waiting) > 0 && len(m.running) < m.limit {
		i := 0
		if m.congested(now) {
			i = len(m.waiting) - 1
		}
		m.running = append(m.running, m.waiting[i].id)
		m.waiting = slices.Delete(m.waiting, i, i+1)
		if len(m.waiting) == 0 {
			m.lastEmpty = now
		}
	}
}

// advance ends the waits that run out by now, in the order they do.
func (m *codelModel) advance(now time.Duration) {
	for {
		first := -1
		for i, w := range m.waiting {
			if w.end <= now && (first < 0 || w.end < m.waiting[first].end) {
				first = i
			}
		}
		if first < 0 {
			return
		}
		w := m.waiting[first]
		m.waiting = slices.Delete(m.waiting, first, first+1)
		if len(m.waiting) == 0 {
			m.lastEmpty = w.end
		}
		if w.err == bulkhead.ErrFull {
			m.rejected++
		}
		m.outcome[w.id] = w.err
	}
}

// The CoDel queue and the model agree on who runs, who waits, who is
// refused and how every call ends, over random arrivals, completions,
// deadlines and the passing of time.
func TestCoDelModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			limit := rapid.IntRange(1, 3).Draw(rt, "limit")
			// Whole milliseconds, even, so that no wait ends at the
			// instant of another event.
			target := time.Duration(2*rapid.IntRange(1, 10).Draw(rt, "target2ms")) * time.Millisecond
			interval := target + time.Duration(2*rapid.IntRange(0, 10).Draw(rt, "extra2ms"))*time.Millisecond
			a := bulkhead.Adaptive(bulkhead.WithLimits(limit, limit, limit), bulkhead.WithCoDel(target, interval))
			m := &codelModel{limit: limit, target: target, interval: interval, outcome: map[int]error{}}
			start := time.Now()
			calls := map[int]*pending{}
			next := 0
			arrive := func(rt *rapid.T) {
				id := next
				next++
				c := &pending{release: make(chan struct{}), started: make(chan struct{}), result: make(chan error, 1)}
				calls[id] = c
				ctx, cancel, deadline := drawDeadline(rt, start, 201*time.Millisecond)
				m.arrive(id, time.Since(start), deadline)
				c.run(a.Do, ctx, cancel)
				synctest.Wait()
			}
			rt.Repeat(map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					synctest.Wait()
					got := a.Metrics()
					if got.InFlight != int64(len(m.running)) || got.Waiting != int64(len(m.waiting)) || got.Rejected != m.rejected {
						rt.Fatalf("metrics %+v, model running %v waiting %v rejected %d", got, m.running, m.waiting, m.rejected)
					}
					checkCalls(rt, calls, m.running, m.outcome)
				},
				"arrive": func(rt *rapid.T) { arrive(rt) },
				"burst": func(rt *rapid.T) { // calls every few milliseconds, so that the queue stands
					for range rapid.IntRange(2, 12).Draw(rt, "n") {
						arrive(rt)
						time.Sleep(time.Duration(2*rapid.IntRange(1, 4).Draw(rt, "gap2ms")) * time.Millisecond)
						synctest.Wait() // the waits that ended by now have ended
						m.advance(time.Since(start))
					}
				},
				"finish": func(rt *rapid.T) {
					if len(m.running) == 0 {
						rt.Skip("nothing runs")
					}
					id := rapid.SampledFrom(m.running).Draw(rt, "call")
					close(calls[id].release)
					m.finish(id, time.Since(start))
					synctest.Wait()
				},
				"sleep": func(rt *rapid.T) {
					time.Sleep(time.Duration(2*rapid.IntRange(1, 60).Draw(rt, "2ms")) * time.Millisecond)
					m.advance(time.Since(start))
				},
			})
			for len(m.running) > 0 {
				id := m.running[0]
				close(calls[id].release)
				m.finish(id, time.Since(start))
				synctest.Wait()
			}
			time.Sleep(interval + time.Millisecond) // the waits still running end
			synctest.Wait()
			if got := a.Metrics(); got.InFlight != 0 || got.Waiting != 0 {
				rt.Fatalf("after every call ended: %+v", got)
			}
		})
	})
}
