package dashboard

import (
	"context"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/saga"
)

// Snapshot is what a [Dashboard] shows at one moment: the state of each
// component it was given, in the order given, and the events it keeps. It
// is the document that snapshot.json serves, in JSON, where durations are
// in nanoseconds. A component whose state could not be read carries the
// error in its Error field.
type Snapshot struct {
	Time      time.Time      `json:"time"`
	Breakers  []BreakerView  `json:"breakers"`
	Bulkheads []BulkheadView `json:"bulkheads"`
	Limiters  []LimiterView  `json:"limiters"`
	Budgets   []BudgetView   `json:"retry_budgets"`
	Outboxes  []OutboxView   `json:"outboxes"`
	Sagas     []SagasView    `json:"sagas"`
	TwoPhase  []TwoPhaseView `json:"two_phase"`
	// Projections are the projections of each event store, by store.
	Projections []ProjectionsView `json:"projections"`
	// Events are the events kept, newest first: at most [EventsKept].
	Events []EventView `json:"events"`
}

// BreakerView is a circuit breaker, as [circuitbreaker.Breaker.Metrics]
// describes it.
type BreakerView struct {
	Name string `json:"name"`
	// State is the breaker's state by its name, such as "half-open".
	State               string `json:"state"`
	Calls               int64  `json:"calls"`
	Failures            int64  `json:"failures"`
	SlowCalls           int64  `json:"slowCalls"`
	ConsecutiveFailures int64  `json:"consecutiveFailures"`
	Rejections          int64  `json:"rejections"`
	// FailureRate is Failures/Calls, or 0 with no calls.
	FailureRate float64 `json:"failureRate"`
	// History is the failure rate over the last minute, oldest first, one
	// sample a second at most: a second in which nobody looked at the
	// dashboard has none.
	History []Sample `json:"history"`
}

// Sample is a breaker's failure rate at one second.
type Sample struct {
	Time        time.Time `json:"time"`
	FailureRate float64   `json:"failureRate"`
}

// BulkheadView is a bulkhead, as [bulkhead.Bulkhead.Metrics] describes it.
type BulkheadView struct {
	Name     string `json:"name"`
	InFlight int64  `json:"inFlight"`
	Waiting  int64  `json:"waiting"`
	Rejected int64  `json:"rejected"`
}

// LimiterView is a rate limiter, as [ratelimit.Limiter.Metrics] describes
// it.
type LimiterView struct {
	Name     string `json:"name"`
	Rejected int64  `json:"rejected"`
}

// BudgetView is a retry budget, as [retry.Budget.Metrics] describes it.
type BudgetView struct {
	Name      string  `json:"name"`
	Available float64 `json:"available"`
	Retries   int64   `json:"retries"`
	Refused   int64   `json:"refused"`
}

// OutboxView is an outbox, as [outbox.Outbox.Backlog] and
// [outbox.Outbox.ListDead] describe it.
type OutboxView struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	Dead    int64  `json:"dead"`
	// OldestPending is how long the oldest pending message has waited.
	OldestPending time.Duration `json:"oldestPending"`
	// DeadLetters are the oldest dead messages, at most [DeadLettersShown].
	DeadLetters []DeadLetterView `json:"deadLetters"`
	Error       string           `json:"error,omitempty"`
}

// DeadLettersShown is how many dead letters an [OutboxView] holds at most.
const DeadLettersShown = 20

// DeadLetterView is a dead message of an outbox.
type DeadLetterView struct {
	ID       string    `json:"id"`
	Topic    string    `json:"topic"`
	Key      string    `json:"key"`
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
	// Error is the error of its last attempt.
	Error string `json:"error"`
}

// SagasView is the saga instances of a coordinator's store that have not
// ended, as [saga.Coordinator.List] describes them.
type SagasView struct {
	Name string `json:"name"`
	// Running, Compensating, Confirming and Stuck count the instances of
	// Instances in each status; Orphaned those that no coordinator drives.
	Running      int `json:"running"`
	Compensating int `json:"compensating"`
	Confirming   int `json:"confirming"`
	Stuck        int `json:"stuck"`
	Orphaned     int `json:"orphaned"`
	// Instances are the oldest instances, at most [SagasShown].
	Instances []SagaView `json:"instances"`
	// More says that there are more instances than Instances holds.
	More  bool   `json:"more"`
	Error string `json:"error,omitempty"`
}

// SagasShown is how many instances a [SagasView] holds at most.
const SagasShown = 100

// SagaView is a saga instance; see [saga.Instance].
type SagaView struct {
	ID         string `json:"id"`
	Definition string `json:"definition"`
	Version    int    `json:"version"`
	// Status is the instance's status by its name, such as "stuck".
	Status   string `json:"status"`
	Orphaned bool   `json:"orphaned"`
	// Step is the step that failed, or the one running.
	Step     string        `json:"step"`
	Age      time.Duration `json:"age"`
	Attempts int           `json:"attempts"`
	// Cause is why the instance stopped going forward; LastError the error
	// of its last failed round of compensation or confirmation.
	Cause     string `json:"cause"`
	LastError string `json:"lastError"`
}

// EventView is an event, as the dashboard shows it: a
// [resilience.Event] whose kinds and cause are words and whose error is
// its text.
type EventView struct {
	// Seq numbers the events the dashboard kept, from 1.
	Seq      uint64        `json:"seq"`
	Time     time.Time     `json:"time"`
	Policy   string        `json:"policy"`
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Attempt  int           `json:"attempt,omitempty"`
	Count    int           `json:"count,omitempty"`
	Delay    time.Duration `json:"delay,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Error    string        `json:"error,omitempty"`
	From     string        `json:"from,omitempty"`
	To       string        `json:"to,omitempty"`
	Cause    string        `json:"cause,omitempty"`
	Subject  string        `json:"subject,omitempty"`
}

// historyLen is how many seconds of failure rate a breaker's history
// holds.
const historyLen = 60

// breakerPanel is a breaker and the history of its failure rate.
type breakerPanel struct {
	b    *circuitbreaker.Breaker
	name string

	mu sync.Mutex
	// Guarded by mu: a ring of samples, the newest at (n-1)%historyLen.
	samples [historyLen]Sample
	n       int
}

// sample records the breaker's failure rate at now, once per second (a
// later sample of the same second replaces the first), and returns the
// samples of the last minute, oldest first.
func (p *breakerPanel) sample(now time.Time, rate float64) []Sample {
	sec := now.Truncate(time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 || !p.samples[(p.n-1)%historyLen].Time.Equal(sec) {
		p.n++
	}
	p.samples[(p.n-1)%historyLen] = Sample{Time: sec, FailureRate: rate}
	out := make([]Sample, 0, min(p.n, historyLen))
	for i := max(p.n-historyLen, 0); i < p.n; i++ {
		if s := p.samples[i%historyLen]; sec.Sub(s.Time) < historyLen*time.Second {
			out = append(out, s)
		}
	}
	return out
}

// snapshot reads the state of every component, at now.
func (d *Dashboard) snapshot(ctx context.Context, now time.Time) *Snapshot {
	s := &Snapshot{
		Time:      now,
		Breakers:  make([]BreakerView, len(d.breakers)),
		Bulkheads: make([]BulkheadView, len(d.cfg.bulkheads)),
		Limiters:  make([]LimiterView, len(d.cfg.limiters)),
		Budgets:   make([]BudgetView, len(d.cfg.budgets)),
		Outboxes:  make([]OutboxView, len(d.cfg.outboxes)),
		Sagas:     make([]SagasView, len(d.cfg.sagas)),
		TwoPhase:  make([]TwoPhaseView, len(d.cfg.twoPhase)),
	}
	for i, p := range d.breakers {
		m := p.b.Metrics()
		v := BreakerView{Name: p.name, State: m.State.String(), Calls: m.Calls, Failures: m.Failures,
			SlowCalls: m.SlowCalls, ConsecutiveFailures: m.ConsecutiveFailures, Rejections: m.Rejections}
		if m.Calls > 0 {
			v.FailureRate = float64(m.Failures) / float64(m.Calls)
		}
		v.History = p.sample(now, v.FailureRate)
		s.Breakers[i] = v
	}
	for i, b := range d.cfg.bulkheads {
		m := b.v.Metrics()
		s.Bulkheads[i] = BulkheadView{Name: b.name, InFlight: m.InFlight, Waiting: m.Waiting, Rejected: m.Rejected}
	}
	for i, l := range d.cfg.limiters {
		s.Limiters[i] = LimiterView{Name: l.name, Rejected: l.v.Metrics().Rejected}
	}
	for i, b := range d.cfg.budgets {
		m := b.v.Metrics()
		s.Budgets[i] = BudgetView{Name: b.name, Available: m.Available, Retries: m.Retries, Refused: m.Refused}
	}
	for i, o := range d.cfg.outboxes {
		s.Outboxes[i] = outboxView(ctx, o.name, o.v)
	}
	for i, c := range d.cfg.sagas {
		s.Sagas[i] = sagasView(ctx, c.name, c.v)
	}
	for i, c := range d.cfg.twoPhase {
		s.TwoPhase[i] = twoPhaseView(ctx, c.name, c.v)
	}
	s.Projections = make([]ProjectionsView, len(d.cfg.stores))
	for i, st := range d.cfg.stores {
		s.Projections[i] = projectionsView(ctx, st.name, st.v)
	}
	s.Events = d.events.views()
	return s
}

func outboxView(ctx context.Context, name string, ob *outbox.Outbox) OutboxView {
	v := OutboxView{Name: name, DeadLetters: []DeadLetterView{}}
	b, err := ob.Backlog(ctx)
	if err != nil {
		v.Error = clip(err.Error())
		return v
	}
	v.Pending, v.Dead, v.OldestPending = b.Pending, b.Dead, b.OldestPending
	if b.Dead == 0 {
		return v
	}
	dead, err := ob.ListDead(ctx, DeadLettersShown)
	if err != nil {
		v.Error = clip(err.Error())
		return v
	}
	for _, m := range dead {
		v.DeadLetters = append(v.DeadLetters, DeadLetterView{ID: m.ID, Topic: m.Topic, Key: m.Key,
			Attempts: m.Attempts, Created: m.CreatedAt, Error: clip(m.LastError)})
	}
	return v
}

// unended are the statuses of the saga instances the dashboard shows.
var unended = []saga.Status{saga.Running, saga.Compensating, saga.Confirming, saga.Stuck}

func sagasView(ctx context.Context, name string, c *saga.Coordinator) SagasView {
	v := SagasView{Name: name, Instances: []SagaView{}}
	list, err := c.List(ctx, saga.Filter{Status: unended, Limit: SagasShown + 1})
	if err != nil {
		v.Error = clip(err.Error())
		return v
	}
	if len(list) > SagasShown {
		list, v.More = list[:SagasShown], true
	}
	for _, in := range list {
		switch in.Status {
		case saga.Running:
			v.Running++
		case saga.Compensating:
			v.Compensating++
		case saga.Confirming:
			v.Confirming++
		case saga.Stuck:
			v.Stuck++
		}
		if in.Orphaned {
			v.Orphaned++
		}
		v.Instances = append(v.Instances, SagaView{ID: in.ID, Definition: in.Name, Version: in.Version,
			Status: in.Status.String(), Orphaned: in.Orphaned, Step: in.Step, Age: in.Age,
			Attempts: in.Attempts, Cause: clip(in.Cause), LastError: clip(in.LastError)})
	}
	return v
}

// maxText is how many bytes of an error's text the dashboard shows.
const maxText = 1000

// clip returns s cut to at most maxText bytes, at a rune's boundary, with
// an ellipsis where it was cut.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
