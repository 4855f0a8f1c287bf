package dashboard

import (
	"fmt"
	"net/http"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
	"github.com/resilience-go/resilience/twophase"
)

// An Option configures a [Dashboard] made by [New]: what it shows, and
// whether operators may act.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	breakers  []*circuitbreaker.Breaker
	bulkheads []named[*bulkhead.Bulkhead]
	limiters  []named[*ratelimit.Limiter]
	budgets   []named[*retry.Budget]
	outboxes  []named[*outbox.Outbox]
	sagas     []named[*saga.Coordinator]
	twoPhase  []named[*twophase.Coordinator]
	stores    []named[*eventstore.Store]
	authorize func(*http.Request) bool
	events    *Events
}

// named is a component and the name the dashboard shows it by.
type named[T any] struct {
	name string
	v    T
}

// WithBreaker shows b, by its name ([circuitbreaker.WithName]): its state,
// its counts, and its failure rate over the last minute. With
// [WithActions], an operator may force it open and reset it. b must not be
// nil and must have a name that no other breaker of the dashboard has.
func WithBreaker(b *circuitbreaker.Breaker) Option {
	if b == nil {
		panic("dashboard: WithBreaker: nil Breaker")
	}
	name := b.Name() // a zero Breaker panics here
	if name == "" {
		panic("dashboard: WithBreaker: a breaker with no name; make it with circuitbreaker.WithName")
	}
	return optionFunc(func(c *config) { c.breakers = append(c.breakers, b) })
}

// WithBulkhead shows b by name: the calls in flight and waiting, and those
// refused. b must not be nil, and name must not be empty or another
// bulkhead's.
func WithBulkhead(name string, b *bulkhead.Bulkhead) Option {
	if b == nil {
		panic("dashboard: WithBulkhead: nil Bulkhead")
	}
	b.Metrics() // a zero Bulkhead panics here
	return optionFunc(func(c *config) { c.bulkheads = append(c.bulkheads, named[*bulkhead.Bulkhead]{name, b}) })
}

// WithLimiter shows l by name: the calls it refused. l must not be nil,
// and name must not be empty or another limiter's.
func WithLimiter(name string, l *ratelimit.Limiter) Option {
	if l == nil {
		panic("dashboard: WithLimiter: nil Limiter")
	}
	l.Metrics() // a zero Limiter panics here
	return optionFunc(func(c *config) { c.limiters = append(c.limiters, named[*ratelimit.Limiter]{name, l}) })
}

// WithRetryBudget shows b by name: the retries it would allow now, and
// those it allowed and refused. b must not be nil, and name must not be
// empty or another budget's.
func WithRetryBudget(name string, b *retry.Budget) Option {
	if b == nil {
		panic("dashboard: WithRetryBudget: nil Budget")
	}
	b.Metrics() // a zero Budget panics here
	return optionFunc(func(c *config) { c.budgets = append(c.budgets, named[*retry.Budget]{name, b}) })
}

// WithOutbox shows ob by name: the messages pending, how long the oldest
// has waited, and the dead letters, the oldest 20, with the error of their
// last attempt. Each look costs two queries against ob's database. With
// [WithActions], an operator may retry or discard a dead letter. ob must
// not be nil, and name must not be empty or another outbox's.
func WithOutbox(name string, ob *outbox.Outbox) Option {
	if ob == nil {
		panic("dashboard: WithOutbox: nil Outbox")
	}
	return optionFunc(func(c *config) { c.outboxes = append(c.outboxes, named[*outbox.Outbox]{name, ob}) })
}

// WithSagas shows the saga instances of coord's store that have not ended,
// by name: running, compensating, confirming or stuck, the oldest 100,
// with their step, age and last error, and which of them are orphaned. Each
// look costs one or two queries against the store. coord needs a durable
// store ([saga.WithStore]): for an in-memory coordinator the dashboard shows
// the error of [saga.Coordinator.List]. With [WithActions], an operator may
// retry a stuck saga or mark it resolved. coord must not be nil, and name
// must not be empty or another coordinator's.
func WithSagas(name string, coord *saga.Coordinator) Option {
	if coord == nil {
		panic("dashboard: WithSagas: nil Coordinator")
	}
	return optionFunc(func(c *config) { c.sagas = append(c.sagas, named[*saga.Coordinator]{name, coord}) })
}

// WithTwoPhase shows by name the branches in doubt on the participants of c,
// a two-phase commit coordinator, as [twophase.Coordinator.ListInDoubt]
// lists them (those of every coordinator: prepared, and not yet committed or
// rolled back), the oldest [InDoubtShown], with their transaction,
// coordinator, age and decision. Those in doubt for longer than c's
// [twophase.WithAlertAfter] are marked as alerts. Recovery
// ([twophase.Coordinator.RunRecovery]) ends them; the page offers no action.
// Each look costs a query on each participant and one on c's home for each
// branch in doubt. c must not be nil, and name must not be empty or another
// WithTwoPhase's.
func WithTwoPhase(name string, c *twophase.Coordinator) Option {
	if c == nil {
		panic("dashboard: WithTwoPhase: nil Coordinator")
	}
	if c.ID() == "" {
		panic("dashboard: WithTwoPhase: a zero Coordinator; make it with twophase.New")
	}
	return optionFunc(func(cfg *config) { cfg.twoPhase = append(cfg.twoPhase, named[*twophase.Coordinator]{name, c}) })
}

// WithProjections shows by name the projections (CQRS read models) of the
// event store s, as [projection.Status] reports them: for each, the last
// event applied, the store's head, how many events the read model has yet
// to apply and how long the oldest of them has waited, its generation,
// and whether a rebuild is under way. Each look costs four queries
// against s's database. The page offers no action. s must not be nil, and
// name must not be empty or another WithProjections's.
func WithProjections(name string, s *eventstore.Store) Option {
	if s == nil {
		panic("dashboard: WithProjections: nil Store")
	}
	if s.DB() == nil {
		panic("dashboard: WithProjections: a Store with no database; make it with eventstore.New")
	}
	return optionFunc(func(c *config) { c.stores = append(c.stores, named[*eventstore.Store]{name, s}) })
}

// WithActions lets operators act from the page: force a breaker open or
// reset it, retry or discard a dead letter, retry a stuck saga or mark it
// resolved. authorize decides, for each request, whether its sender may
// act: the page shows the buttons only to those it allows, and an action it
// refuses is answered 403 and changes nothing. It is called for each page
// load and each action, and must be safe for concurrent use. See the
// package documentation for how actions are protected from cross-site
// requests. Default: no actions; every POST is answered 403. authorize
// must not be nil.
func WithActions(authorize func(*http.Request) bool) Option {
	if authorize == nil {
		panic("dashboard: WithActions: nil authorize")
	}
	return optionFunc(func(c *config) { c.authorize = authorize })
}

// WithEvents shows the events that e keeps, and keeps the operators'
// actions there: see [Events] for when to make one apart. Default: an
// Events of the dashboard's own. e must not be nil.
func WithEvents(e *Events) Option {
	if e == nil {
		panic("dashboard: WithEvents: nil Events")
	}
	return optionFunc(func(c *config) { c.events = e })
}

// newConfig applies opts and checks the names.
func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		if o == nil {
			panic("dashboard: New: nil Option")
		}
		o.apply(&c)
	}
	breakers := make([]string, len(c.breakers))
	for i, b := range c.breakers {
		breakers[i] = b.Name()
	}
	checkNames("breakers", breakers)
	checkNames("bulkheads", names(c.bulkheads))
	checkNames("limiters", names(c.limiters))
	checkNames("retry budgets", names(c.budgets))
	checkNames("outboxes", names(c.outboxes))
	checkNames("saga coordinators", names(c.sagas))
	checkNames("coordinators of two-phase commit", names(c.twoPhase))
	checkNames("event stores", names(c.stores))
	return c
}

func names[T any](ns []named[T]) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.name
	}
	return out
}

// checkNames panics if one of names, those of the components of one kind
// (what, in the plural), is empty or given twice.
func checkNames(what string, names []string) {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" {
			panic("dashboard: New: an empty name among the " + what)
		}
		if seen[n] {
			panic(fmt.Sprintf("dashboard: New: two %s named %q", what, n))
		}
		seen[n] = true
	}
}
