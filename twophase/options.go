package twophase

import (
	"context"
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// An Option configures a [Coordinator] made by [New].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	table      string
	grace      time.Duration
	alertAfter time.Duration
	interval   time.Duration
	retention  time.Duration
	name       string
	observer   resilience.Observer
	hook       Hook
}

func defaultConfig() config {
	return config{
		table:      "twophase_decisions",
		grace:      time.Minute,
		alertAfter: 5 * time.Minute,
		interval:   10 * time.Second,
		retention:  24 * time.Hour,
	}
}

// WithTable names the decision table in the home database, which [New]
// creates (with a table of the same name and "_migrations" beside it).
// Default: "twophase_decisions". It must be a plain SQL identifier, or
// schema.table.
func WithTable(name string) Option {
	if err := sqlstore.CheckIdent(name); err != nil {
		panic(fmt.Sprintf("twophase: WithTable(%q): %v", name, err))
	}
	return optionFunc(func(c *config) { c.table = name })
}

// WithGrace sets how long after it began an undecided transaction is
// presumed dead, so that recovery aborts it and rolls back its prepared
// branches. It must be longer than any transaction of the coordinator
// takes from [Begin] to the end of [Tx.Commit]'s decision: a commit that
// runs past it is aborted (safely: the decision is fenced, see the package
// doc). A transaction's age is measured from its beginning on the clock of
// the process that began it to now on the clock of the process that
// recovers, so the clocks of processes sharing a coordinator ID should
// agree to well within the grace; a skew past it costs aborted commits,
// never a half-committed one. Default: 1 minute; d must be > 0.
func WithGrace(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("twophase: WithGrace(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.grace = d })
}

// WithAlertAfter sets the age past which a branch that recovery leaves
// in doubt is reported as an alert: a [resilience.Error] event whose Err
// is an [*InDoubtError]. Default: 5 minutes; d must be > 0.
func WithAlertAfter(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("twophase: WithAlertAfter(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.alertAfter = d })
}

// WithRecoveryInterval sets how often [Coordinator.RunRecovery] runs
// [Coordinator.Recover]. Default: 10 seconds; d must be > 0.
func WithRecoveryInterval(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("twophase: WithRecoveryInterval(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.interval = d })
}

// WithRetention sets how long decisions are kept: [Coordinator.Recover]
// deletes those older than d of which no branch is in doubt. Default: 24
// hours; d must be at least a minute, and longer than the grace.
func WithRetention(d time.Duration) Option {
	if d < time.Minute {
		panic(fmt.Sprintf("twophase: WithRetention(%v): want d >= 1m", d))
	}
	return optionFunc(func(c *config) { c.retention = d })
}

// WithName names the coordinator in its events. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the coordinator's events to o (see
// [resilience.Observer]); their Policy is [resilience.PolicyTwoPhase]:
//
//   - [resilience.Success] when [Tx.Commit] committed, with the
//     transaction's ID as Subject, the branches in Count and how long the
//     commit took;
//   - [resilience.Failure] when it did not, with its error;
//   - [resilience.Error] when the second phase of a committed transaction
//     failed on a branch, which recovery commits later (Subject: the
//     transaction ID, "/" and the participant's name), when recovery
//     fails, and for an alert: a branch still in doubt past
//     [WithAlertAfter], whose Err is an [*InDoubtError].
//
// o is called from the goroutines of Commit and of recovery, so possibly
// at once, and must not block. Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("twophase: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// Point is a point of the commit protocol, where a [Hook] is called.
type Point uint8

// The points of the commit protocol, in the order [Tx.Commit] passes them.
const (
	// BeforePrepare: a branch is about to be prepared.
	BeforePrepare Point = iota + 1
	// AfterPrepare: a branch is prepared.
	AfterPrepare
	// BeforeDecision: every other branch is prepared, and the home
	// transaction, which records the decision, is about to commit.
	BeforeDecision
	// AfterDecision: the home transaction committed: the transaction is
	// committed, and its prepared branches are not yet.
	AfterDecision
	// AfterCommit: a prepared branch is committed; between two of these,
	// some are and some are not.
	AfterCommit
)

var pointNames = [...]string{"", "before-prepare", "after-prepare", "before-decision", "after-decision", "after-commit"}

// Points returns every point, in protocol order.
func Points() []Point {
	return []Point{BeforePrepare, AfterPrepare, BeforeDecision, AfterDecision, AfterCommit}
}

// String returns the point's name, such as "after-prepare", or "Point(n)".
func (p Point) String() string {
	if p > 0 && int(p) < len(pointNames) {
		return pointNames[p]
	}
	return fmt.Sprintf("Point(%d)", uint8(p))
}

// Hook is called by [Tx.Commit] at each point of the protocol, with the
// participant the point is about (the home participant for the decision),
// to inject faults: a test or a demonstration kills the process there, and
// then shows what recovery does. When it returns an error, Commit stops as
// a process that died there would: it drops its connections (the databases
// roll back what was not prepared), says nothing more to the databases,
// and returns the error. Production code sets no hook.
type Hook func(ctx context.Context, at Point, participant string) error

// WithHook sets the hook called at each point of the commit protocol.
// Default: none. h must not be nil.
func WithHook(h Hook) Option {
	if h == nil {
		panic("twophase: WithHook: nil Hook")
	}
	return optionFunc(func(c *config) { c.hook = h })
}
