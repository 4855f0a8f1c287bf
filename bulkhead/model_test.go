package bulkhead_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
)

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// A model of a bulkhead: the calls running, the calls waiting in order with
// the time their wait ends and why, and the refusals.
type model struct {
	max, maxQueue int
	maxWait       time.Duration
	running       []int
	waiting       []waiter
	rejected      int64
	outcome       map[int]error // how each finished or refused call ended
}

type waiter struct {
	id  int
	end time.Duration // when the wait ends
	err error         // ErrFull at the maximum wait, or the ctx's error
}

func (m *model) start(id int, now, ctxDeadline time.Duration) {
	switch {
	case len(m.waiting) == 0 && len(m.running) < m.max:
		m.running = append(m.running, id)
	case m.maxWait == 0 || len(m.waiting) >= m.maxQueue:
		m.rejected++
		m.outcome[id] = bulkhead.ErrFull
	default:
		w := waiter{id: id, end: now + m.maxWait, err: bulkhead.ErrFull}
		if ctxDeadline > 0 && ctxDeadline < w.end {
			w.end, w.err = ctxDeadline, context.DeadlineExceeded
		}
		m.waiting = append(m.waiting, w)
	}
}

func (m *model) finish(id int) {
	m.running = slices.DeleteFunc(m.running, func(r int) bool { return r == id })
	m.outcome[id] = nil
	if len(m.waiting) > 0 {
		m.running = append(m.running, m.waiting[0].id)
		m.waiting = m.waiting[1:]
	}
}

func (m *model) advance(now time.Duration) {
	m.waiting = slices.DeleteFunc(m.waiting, func(w waiter) bool {
		if w.end > now {
			return false
		}
		if w.err == bulkhead.ErrFull {
			m.rejected++
		}
		m.outcome[w.id] = w.err
		return true
	})
}

// pending is a call of a model test: its op signals started and runs
// until release is closed; Do's error arrives on result.
type pending struct {
	release chan struct{}
	started chan struct{}
	result  chan error
}

// drawDeadline draws whether a call has a deadline, and if so one of an odd
// number of milliseconds up to most from now; it returns the call's ctx,
// its cancel, and the deadline since start, or 0.
func drawDeadline(rt *rapid.T, start time.Time, most time.Duration) (context.Context, context.CancelFunc, time.Duration) {
	if !rapid.Bool().Draw(rt, "deadline") {
		return context.Background(), func() {}, 0
	}
	d := time.Duration(2*rapid.IntRange(0, int(most/time.Millisecond-1)/2).Draw(rt, "deadlineMs")+1) * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), d)
	return ctx, cancel, time.Since(start) + d
}

// run calls do with ctx on a goroutine, and cancel once it returns.
func (c *pending) run(do func(context.Context, resilience.Op) error, ctx context.Context, cancel context.CancelFunc) {
	go func() {
		defer cancel()
		c.result <- do(ctx, func(context.Context) error {
			close(c.started)
			<-c.release
			return nil
		})
	}()
}

// checkCalls checks the calls against a model's: a call runs only if the
// model runs or has ended it, and every call the model ended has ended
// with the model's error; those are forgotten, from both.
func checkCalls(rt *rapid.T, calls map[int]*pending, running []int, outcome map[int]error) {
	for id, c := range calls {
		select {
		case <-c.started:
			if !slices.Contains(running, id) {
				if _, ended := outcome[id]; !ended {
					rt.Fatalf("call %d runs; the model has it waiting", id)
				}
			}
		default:
			if slices.Contains(running, id) {
				rt.Fatalf("call %d does not run; the model runs it", id)
			}
		}
	}
	for id, want := range outcome {
		select {
		case got := <-calls[id].result:
			if !errors.Is(got, want) && got != want {
				rt.Fatalf("call %d ended with %v, model %v", id, got, want)
			}
			delete(outcome, id)
			delete(calls, id)
		default:
			rt.Fatalf("call %d has not ended; the model ended it with %v", id, want)
		}
	}
}

// The bulkhead and the model agree on who runs, who waits, who is refused
// and how every call ends, over random arrivals, completions, deadlines and
// the passing of time.
func TestModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			max := rapid.IntRange(1, 3).Draw(rt, "max")
			maxWait := time.Duration(rapid.IntRange(0, 3).Draw(rt, "maxWaitSeconds")) * time.Second
			maxQueue := rapid.IntRange(0, 4).Draw(rt, "maxQueue")
			b := bulkhead.New(max, bulkhead.WithMaxWait(maxWait), bulkhead.WithMaxQueue(maxQueue))
			m := &model{max: max, maxQueue: maxQueue, maxWait: maxWait, outcome: map[int]error{}}
			start := time.Now()
			calls := map[int]*pending{}
			next := 0
			rt.Repeat(map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					synctest.Wait()
					want := bulkhead.Metrics{InFlight: int64(len(m.running)), Waiting: int64(len(m.waiting)), Rejected: m.rejected}
					if got := b.Metrics(); got != want {
						rt.Fatalf("metrics %+v, model %+v", got, want)
					}
					checkCalls(rt, calls, m.running, m.outcome)
				},
				"start": func(rt *rapid.T) {
					id := next
					next++
					c := &pending{release: make(chan struct{}), started: make(chan struct{}), result: make(chan error, 1)}
					calls[id] = c
					// Odd milliseconds: never at the same instant as a
					// maximum wait, in whole seconds.
					ctx, cancel, deadline := drawDeadline(rt, start, 4001*time.Millisecond)
					m.start(id, time.Since(start), deadline)
					c.run(b.Do, ctx, cancel)
				},
				"finish": func(rt *rapid.T) {
					if len(m.running) == 0 {
						rt.Skip("nothing runs")
					}
					id := rapid.SampledFrom(m.running).Draw(rt, "call")
					close(calls[id].release)
					m.finish(id)
				},
				"sleep": func(rt *rapid.T) {
					time.Sleep(time.Duration(rapid.IntRange(1, 3000).Draw(rt, "ms")) * time.Millisecond)
					m.advance(time.Since(start))
				},
				"try": func(rt *rapid.T) {
					err := b.TryDo(context.Background(), func(context.Context) error { return nil })
					free := len(m.waiting) == 0 && len(m.running) < m.max
					if free != (err == nil) {
						rt.Fatalf("TryDo: %v, model has a free slot: %v", err, free)
					}
					if !free {
						m.rejected++
					}
				},
			})
			// Let everything end: each finish hands its slot to a waiter.
			for len(m.running) > 0 {
				id := m.running[0]
				close(calls[id].release)
				m.finish(id)
			}
			synctest.Wait()
			if got := b.Metrics(); got.InFlight != 0 || got.Waiting != 0 {
				rt.Fatalf("after every call ended: %+v", got)
			}
		})
	})
}
