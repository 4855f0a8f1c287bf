package saga

import (
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Coordinator] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	db            *sql.DB
	dialect       Dialect
	defs          []*Definition
	owner         string
	lease         time.Duration
	settleTimeout time.Duration
	attempts      int
	attemptBase   time.Duration
	attemptMax    time.Duration
	roundBase     time.Duration
	roundMax      time.Duration
	alertAfter    int
	stuckAfter    int
	retention     time.Duration
	name          string
	observer      resilience.Observer
	onEvent       func(Event)
	afterCommit   func() // tests only: runs after each durable write
	purgeBatch    int    // how many instances Purge deletes at once
}

func defaultConfig() config {
	return config{
		owner:         "coordinator",
		lease:         30 * time.Second,
		settleTimeout: 30 * time.Second,
		attempts:      3,
		attemptBase:   100 * time.Millisecond,
		attemptMax:    2 * time.Second,
		roundBase:     time.Second,
		roundMax:      5 * time.Minute,
		alertAfter:    5,
		stuckAfter:    20,
		purgeBatch:    500,
	}
}

// WithStore makes the coordinator durable: it records every instance and
// every step's intent and result in db, through d, so that
// [Coordinator.Recover] can finish what a crashed process left. Call
// [Migrate] first. Default: in memory, nothing kept.
func WithStore(db *sql.DB, d Dialect) Option {
	if db == nil || d.db == nil {
		panic("saga: WithStore: nil db or zero Dialect")
	}
	return optionFunc(func(c *config) { c.db, c.dialect = db, d })
}

// WithDefinitions registers the definitions a durable coordinator may find
// in the store when it recovers. Run registers its definition itself; an
// instance of a definition (name and version) the coordinator does not know
// is left alone, never guessed. Default: none.
func WithDefinitions(defs ...*Definition) Option {
	if slices.Contains(defs, nil) {
		panic("saga: WithDefinitions: nil Definition")
	}
	return optionFunc(func(c *config) { c.defs = append(c.defs, defs...) })
}

// WithOwner names the coordinator in the leases it takes (a host name, say),
// at most 64 bytes, for operators who read the store. Each claim of an
// instance adds a random part of its own, so that coordinators of one name
// never pass for one another. Default: "coordinator".
func WithOwner(name string) Option {
	if name == "" || len(name) > 64 {
		panic(fmt.Sprintf("saga: WithOwner(%q): want 1 to 64 bytes", name))
	}
	return optionFunc(func(c *config) { c.owner = name })
}

// WithLease sets how long a durable coordinator holds an instance before
// another may take it over; the coordinator renews it every third of that
// while it drives the instance, and starts a call only while more than a
// tenth of it is left. Default: 30s. d must be at least a second.
func WithLease(d time.Duration) Option {
	if d < time.Second {
		panic(fmt.Sprintf("saga: WithLease(%v): want d >= 1s", d))
	}
	return optionFunc(func(c *config) { c.lease = d })
}

// WithSettleTimeout bounds each attempt of a compensation, cancel or
// confirm: they run detached from the caller's cancellation, under this
// deadline of their own. Default: 30s. d must be positive.
func WithSettleTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("saga: WithSettleTimeout(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.settleTimeout = d })
}

// WithAttempts sets how many times, in one round, a compensation (or
// cancel, or confirm) is tried before the round is given up, with a backoff
// from base to max between attempts. A durable coordinator then records the
// round and retries it later; an in-memory one returns an Error with the
// compensation errors. Default: 3, 100ms and 2s. n >= 1, 0 < base <= max.
func WithAttempts(n int, base, max time.Duration) Option {
	if n < 1 || base <= 0 || max < base {
		panic(fmt.Sprintf("saga: WithAttempts(%d, %v, %v): want n >= 1 and 0 < base <= max", n, base, max))
	}
	return optionFunc(func(c *config) { c.attempts, c.attemptBase, c.attemptMax = n, base, max })
}

// WithRoundBackoff sets the persisted wait between rounds of a durable
// coordinator's compensations (or confirms): a random time between half
// and all of base·2^(rounds-1), at most max. Default: 1s and 5m.
// 0 < base <= max.
func WithRoundBackoff(base, max time.Duration) Option {
	if base <= 0 || max < base {
		panic(fmt.Sprintf("saga: WithRoundBackoff(%v, %v): want 0 < base <= max", base, max))
	}
	return optionFunc(func(c *config) { c.roundBase, c.roundMax = base, max })
}

// WithAlertAfter sends an [Alert] event when an instance's compensations (or
// confirms) have failed n rounds, or when it is parked as stuck, if that
// comes first ([WithStuckAfter]). Default: 5. n must be at least 1.
func WithAlertAfter(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("saga: WithAlertAfter(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.alertAfter = n })
}

// WithStuckAfter parks an instance as [Stuck] once its compensations (or
// confirms) have failed n rounds: it is never reported as done, and waits
// for an operator. Default: 20. n must be at least 1.
func WithStuckAfter(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("saga: WithStuckAfter(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.stuckAfter = n })
}

// WithRetention makes [Coordinator.RunRecovery] purge the instances that
// ended longer ago than d (see [Coordinator.Purge]) each time it recovers.
// Default: none, every instance is kept. d must be positive.
func WithRetention(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("saga: WithRetention(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.retention = d })
}

// WithName names the coordinator in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the coordinator's events to o (see
// [resilience.Observer]), with the ctx of the call, saga or recovery they
// are about. The Subject of a saga's events is its ID:
//
//   - [resilience.Started] when Run starts a new instance;
//   - [resilience.Success] or [resilience.Compensated] when it ends so,
//     with how long its last drive took, Run's or recovery's;
//   - [resilience.Retry] when a round of its compensations (or confirms)
//     failed and another comes after Delay, with the rounds failed so far
//     in Attempt;
//   - [resilience.Dead] when it is parked as [Stuck];
//   - [resilience.Error] for an alert ([WithAlertAfter], with the rounds in
//     Attempt), a lease lost (matching [ErrLeaseLost]), an instance of an
//     unknown definition left alone, or an error of the store.
//
// The Subject of a step's events is the saga's ID, "/" and the step's
// name: [resilience.Started] for each attempt of a call of one of its
// phases, the attempts its policy makes included, numbered in Attempt from
// the first of the phase's; then, for the call, [resilience.Success] (an
// action, try or confirm), [resilience.Compensated] (a compensation or a
// cancel), [resilience.Failure], whose Err names the phase unless it is an
// action or a try, or [resilience.Ignored] for an error once its ctx was
// done (the caller cancelled, the saga's [Timeout] passed, or the lease
// was lost), with the attempts made and how long the call took.
//
// o is called from the goroutines of Run, of recovery, of the steps of a
// [Parallel] group and of the lease renewals, so possibly at once; it must
// be safe for concurrent use and must not block. Without an observer, the
// coordinator builds no event. Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("saga: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// WithOnEvent calls f for what the coordinator reports: alerts, instances
// parked as stuck, leases lost, instances of unknown definitions left
// alone, and store errors. f is called from the goroutines of Run, of
// recovery and of the lease renewals, so possibly at once; it must be safe
// for concurrent use and must not block. Default: none. f must not be nil.
// Both it and [WithObserver] may be given.
//
// Deprecated: Use [WithObserver]: a StuckEvent is a [resilience.Dead]
// event, and an Alert, a LeaseLost, an UnknownDefinition and a StoreError
// are [resilience.Error] events, with the saga's ID as their Subject.
func WithOnEvent(f func(Event)) Option {
	if f == nil {
		panic("saga: WithOnEvent: nil func")
	}
	return optionFunc(func(c *config) { c.onEvent = f })
}

// EventKind says what an [Event] reports, to the function of the
// deprecated [WithOnEvent].
type EventKind uint8

const (
	// Alert: an instance's compensations or confirms failed WithAlertAfter
	// rounds.
	Alert EventKind = iota + 1
	// StuckEvent: an instance was parked as Stuck.
	StuckEvent
	// LeaseLost: a coordinator gave an instance up, because another took
	// it over or because the lease could not be renewed in time.
	LeaseLost
	// UnknownDefinition: recovery found an instance of a definition this
	// coordinator does not know, and left it alone.
	UnknownDefinition
	// StoreError: the store failed; the coordinator goes on.
	StoreError
)

var eventNames = [...]string{"", "alert", "stuck", "lease lost", "unknown definition", "store error"}

// String returns the kind's name, "lease lost" say, or "EventKind(n)" for
// a value that is none of the kinds.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k > 0 {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event reports what a coordinator did, to the function of the deprecated
// [WithOnEvent]; the events of [WithObserver] carry the same.
type Event struct {
	Kind     EventKind
	SagaID   string
	Attempts int
	Err      error
}
