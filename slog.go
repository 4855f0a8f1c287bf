package resilience

import (
	"context"
	"log/slog"
)

// slogMessages holds each event kind's message, "resilience: " and its name.
var slogMessages = func() (m [len(eventNames)]string) {
	for k := range m {
		m[k] = "resilience: " + EventKind(k).String()
	}
	return m
}()

// The attribute keys of [SlogObserver]'s records.
const (
	SlogKeyPolicy  = "resilience.policy"
	SlogKeyName    = "resilience.name"
	SlogKeyEvent   = "resilience.event"
	SlogKeyAttempt = "resilience.attempt"
	SlogKeyCount   = "resilience.count"
	SlogKeyDelay   = "resilience.delay"
	SlogKeyFrom    = "resilience.from"
	SlogKeyTo      = "resilience.to"
	SlogKeyCause   = "resilience.cause"
	SlogKeySubject = "resilience.subject"
)

// SlogObserver returns an [Observer] that logs events to l, at a level
// that keeps a production log readable: never Info for each call or
// attempt.
//
//   - Warn: a state change into a state that refuses calls (a breaker
//     opened or forced open), dead items, a retry that gave up, a
//     component's own errors.
//   - Info: any other state change (a breaker half-open or closed),
//     operators' actions, stale work, compensations.
//   - Debug: retries, rejections, timeouts, fallbacks, overruns, failures.
//   - Not logged: successes, ignored errors and starts, the events of every
//     healthy call.
//
// Each record's message is "resilience: " and the event kind, such as
// "resilience: state change"; its attributes are resilience.policy,
// resilience.name, resilience.event, and those of the event's fields that
// are set: resilience.attempt, resilience.count, resilience.delay,
// resilience.from, resilience.to, resilience.cause, resilience.subject and
// error. The record goes to l's handler with the event's ctx, so a handler
// that reads trace IDs from it finds the caller's. A record below l's level
// costs one call to l's handler's Enabled and allocates nothing. It panics
// if l is nil.
func SlogObserver(l *slog.Logger) Observer {
	if l == nil {
		panic("resilience: SlogObserver: nil Logger")
	}
	return slogObserver{l}
}

type slogObserver struct{ l *slog.Logger }

// slogLevel returns the level at which e is logged, and false for an event
// that is not logged.
func slogLevel(e Event) (slog.Level, bool) {
	switch e.Kind {
	case StateChange:
		if e.To == "open" || e.To == "forced-open" {
			return slog.LevelWarn, true
		}
		return slog.LevelInfo, true
	case Dead, GaveUp, Error:
		return slog.LevelWarn, true
	case Action, Stale, Compensated:
		return slog.LevelInfo, true
	case Retry, Rejected, TimedOut, FellBack, Overrun, Failure:
		return slog.LevelDebug, true
	}
	return 0, false
}

func (o slogObserver) Observe(ctx context.Context, e Event) {
	level, ok := slogLevel(e)
	if !ok {
		return
	}
	if !o.l.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(e.Time, level, slogMessages[e.Kind], 0)
	r.AddAttrs(
		slog.String(SlogKeyPolicy, e.Policy.String()),
		slog.String(SlogKeyName, e.Name),
		slog.String(SlogKeyEvent, e.Kind.String()))
	if e.Attempt != 0 {
		r.AddAttrs(slog.Int(SlogKeyAttempt, e.Attempt))
	}
	if e.Count != 0 {
		r.AddAttrs(slog.Int(SlogKeyCount, e.Count))
	}
	if e.Delay != 0 {
		r.AddAttrs(slog.Duration(SlogKeyDelay, e.Delay))
	}
	if e.From != "" || e.To != "" {
		r.AddAttrs(slog.String(SlogKeyFrom, e.From), slog.String(SlogKeyTo, e.To))
	}
	if e.Cause != 0 {
		r.AddAttrs(slog.String(SlogKeyCause, e.Cause.String()))
	}
	if e.Subject != "" {
		r.AddAttrs(slog.String(SlogKeySubject, e.Subject))
	}
	if e.Err != nil {
		r.AddAttrs(slog.Any("error", e.Err))
	}
	_ = o.l.Handler().Handle(ctx, r)
}
