// Package event holds what the policies of this module share to emit their
// [resilience.Event]s.
package event

import (
	"context"
	"time"

	"github.com/resilience-go/resilience"
)

// Outcome returns the kind of the event that ends a call through a policy
// that returned err: [resilience.Success] for nil, [resilience.Ignored] for
// an error that came once the caller's ctx was done (the caller gave up,
// which says nothing sure of the dependency), and [resilience.Failure]
// otherwise.
func Outcome(ctx context.Context, err error) resilience.EventKind {
	switch {
	case err == nil:
		return resilience.Success
	case ctx.Err() != nil:
		return resilience.Ignored
	}
	return resilience.Failure
}

// End returns when a call that started at start ends, now, and how long it
// took, from one read of the monotonic clock: half the cost of time.Now,
// which reads the wall clock too.
func End(start time.Time) (now time.Time, took time.Duration) {
	took = time.Since(start)
	return start.Add(took), took
}
