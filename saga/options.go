package saga

import (
	"database/sql"
	"fmt"
	"slices"
	"time"
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
	onEvent       func(Event)
	afterCommit   func() // tests only: runs after each durable write
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
	}
}

// WithStore makes the coordinator durable: it records every instance and
// every step's intent and result in db, through d, so that
// [Coordinator.Recover] can finish what a crashed process left. Call
// [Migrate] first. Default: in memory, nothing kept.
func WithStore(db *sql.DB, d Dialect) Option {
	if db == nil || d.flavor == 0 {
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
// while it drives the instance. Default: 30s. d must be at least a second.
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

// WithOnEvent calls f for what the coordinator reports: alerts, instances
// parked as stuck, leases lost, instances of unknown definitions left
// alone, and store errors. f is called from the goroutines of Run, of
// recovery and of the lease renewals, so possibly at once; it must be safe
// for concurrent use and must not block. Default: none.
func WithOnEvent(f func(Event)) Option {
	return optionFunc(func(c *config) { c.onEvent = f })
}

// EventKind says what an [Event] reports.
type EventKind uint8

const (
	// Alert: an instance's compensations or confirms failed WithAlertAfter
	// rounds.
	Alert EventKind = iota + 1
	// StuckEvent: an instance was parked as Stuck.
	StuckEvent
	// LeaseLost: another coordinator took over an instance.
	LeaseLost
	// UnknownDefinition: recovery found an instance of a definition this
	// coordinator does not know, and left it alone.
	UnknownDefinition
	// StoreError: the store failed; the coordinator goes on.
	StoreError
)

// Event reports what a coordinator did; see [WithOnEvent].
type Event struct {
	Kind     EventKind
	SagaID   string
	Attempts int
	Err      error
}
