package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/resilience-go/resilience"
)

// EventsKept is how many events an [Events] keeps: the last 200.
const EventsKept = 200

// Events is an [resilience.Observer] that keeps the last [EventsKept]
// events it is given, for a [Dashboard] to show, with the operators'
// actions on that dashboard. A dashboard has an Events of its own, which
// [Dashboard.Observer] returns; make one apart, and give it to the
// dashboard with [WithEvents], when the components that the dashboard
// shows need the observer when they are made, as a breaker's WithObserver
// does. The zero value is ready to use; an Events is safe for concurrent
// use, and must not be copied once used.
type Events struct {
	mu sync.Mutex
	// Guarded by mu:
	n   uint64 // events recorded so far; the newest is number n
	buf [EventsKept]resilience.Event
}

// Observe keeps e, unless it is one of the events of every healthy call:
// a success, an ignored error or a start, which would push out those worth
// seeing. An event with no Time gets the time it is kept. Observe takes a
// lock to copy e into a buffer made once, and allocates nothing.
func (r *Events) Observe(_ context.Context, e resilience.Event) {
	switch e.Kind {
	case resilience.Success, resilience.Ignored, resilience.Started:
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.add(e)
}

// add records e.
func (r *Events) add(e resilience.Event) {
	r.mu.Lock()
	r.buf[r.n%EventsKept] = e
	r.n++
	r.mu.Unlock()
}

// views returns the events kept, newest first, as the page shows them.
func (r *Events) views() []EventView {
	var (
		buf [EventsKept]resilience.Event
		n   uint64
	)
	r.mu.Lock()
	n = r.n
	kept := min(n, EventsKept)
	for i := range kept { // newest first
		buf[i] = r.buf[(n-1-i)%EventsKept]
	}
	r.mu.Unlock()
	out := make([]EventView, kept)
	for i := range out {
		out[i] = eventView(n-uint64(i), buf[i])
	}
	return out
}

// eventView is event e, number seq, as the page shows it.
func eventView(seq uint64, e resilience.Event) EventView {
	v := EventView{
		Seq:      seq,
		Time:     e.Time,
		Policy:   e.Policy.String(),
		Name:     e.Name,
		Kind:     e.Kind.String(),
		Attempt:  e.Attempt,
		Count:    e.Count,
		Delay:    e.Delay,
		Duration: e.Duration,
		From:     e.From,
		To:       e.To,
		Subject:  e.Subject,
	}
	if e.Policy == 0 {
		v.Policy = ""
	}
	if e.Cause != 0 {
		v.Cause = e.Cause.String()
	}
	if e.Err != nil {
		v.Error = clip(e.Err.Error())
	}
	return v
}
