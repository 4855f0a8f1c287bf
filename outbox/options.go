package outbox

import (
	"fmt"
	"time"

	"github.com/resilience-go/resilience"
)

// An Option configures a [Relay] made by [Outbox.NewRelay].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	batch          int
	lease          time.Duration
	publishTimeout time.Duration
	poll           time.Duration
	maxAttempts    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	ordered        bool
	gapGrace       time.Duration
	retention      time.Duration
	id             string
	name           string
	observer       resilience.Observer
	onEvent        func(Event)
	waker          Waker
}

func defaultConfig() config {
	return config{
		batch:          256,
		lease:          30 * time.Second,
		publishTimeout: 10 * time.Second,
		poll:           time.Second,
		maxAttempts:    10,
		backoffBase:    time.Second,
		backoffMax:     5 * time.Minute,
		gapGrace:       5 * time.Second,
	}
}

// WithBatchSize sets how many messages the relay claims at once. Default:
// 256. n must be in [1, 10000].
func WithBatchSize(n int) Option {
	if n < 1 || n > 10_000 {
		panic(fmt.Sprintf("outbox: WithBatchSize(%d): want 1 <= n <= 10000", n))
	}
	return optionFunc(func(c *config) { c.batch = n })
}

// WithLease sets how long a claimed batch (or an owned lane) belongs to the
// relay before another relay may take it over. A relay starts a publish only
// while the lease it holds covers the publish timeout and a tenth of the
// lease; in ordered mode it renews a lane's lease as it goes, and a pass
// over its lanes ends after a third of the lease. A relay that stalls for
// longer than the lease loses what it holds to another relay. Default: 30s.
// d must be at least a second, and more than twice the publish timeout.
func WithLease(d time.Duration) Option {
	if d < time.Second {
		panic(fmt.Sprintf("outbox: WithLease(%v): want d >= 1s", d))
	}
	return optionFunc(func(c *config) { c.lease = d })
}

// WithPublishTimeout bounds each call to the Publisher, which must honour
// its ctx: a publish that goes on past the lease may be repeated by another
// relay. Default: 10s. d must be positive, and less than half the lease.
func WithPublishTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("outbox: WithPublishTimeout(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.publishTimeout = d })
}

// WithPollInterval sets how often an idle relay looks for messages that no
// wakeup announced: those written by another process, or whose backoff or
// NotBefore time came. Default: 1s. d must be at least a millisecond.
func WithPollInterval(d time.Duration) Option {
	if d < time.Millisecond {
		panic(fmt.Sprintf("outbox: WithPollInterval(%v): want d >= 1ms", d))
	}
	return optionFunc(func(c *config) { c.poll = d })
}

// WithMaxAttempts sets how many times the relay tries to publish a message
// before it marks it dead. A dead message waits for an operator
// ([Outbox.Retry] or [Outbox.Discard]); in ordered mode it holds up its lane
// until then. Default: 10. n must be at least 1.
func WithMaxAttempts(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("outbox: WithMaxAttempts(%d): want n >= 1", n))
	}
	return optionFunc(func(c *config) { c.maxAttempts = n })
}

// WithRetryBackoff sets the wait before a message that failed is tried
// again: a random time up to base·2^(attempts-1), at most max. Default: 1s
// and 5m. 0 < base <= max.
func WithRetryBackoff(base, max time.Duration) Option {
	if base <= 0 || max < base {
		panic(fmt.Sprintf("outbox: WithRetryBackoff(%v, %v): want 0 < base <= max", base, max))
	}
	return optionFunc(func(c *config) { c.backoffBase, c.backoffMax = base, max })
}

// WithOrdered turns on ordered mode: messages with the same key are
// published one after the other in the order they were written, by the one
// relay that owns their lane at the time. Every relay of a table must use the
// same mode. Messages without a key are published as in unordered mode.
// Default: unordered, for throughput.
func WithOrdered() Option {
	return optionFunc(func(c *config) { c.ordered = true })
}

// WithGapGrace sets, for ordered mode on MySQL, how long a message waits
// before it is published, so that a transaction that wrote a message of the
// same key earlier but commits later cannot be overtaken: a transaction that
// writes to the outbox must commit within this time of its first message.
// PostgreSQL needs no such wait: it publishes a message once every
// transaction older than it has ended. Default: 5s. d must not be negative.
func WithGapGrace(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("outbox: WithGapGrace(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.gapGrace = d })
}

// WithRetention keeps published messages for d before the relay deletes
// them, in batches. Default: 0, delete each message as soon as it is
// published. d must not be negative.
func WithRetention(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("outbox: WithRetention(%v): want d >= 0", d))
	}
	return optionFunc(func(c *config) { c.retention = d })
}

// WithRelayID names the relay in its claims and as the owner of its lanes,
// at most 40 bytes. Relays of one table must have IDs of their own: two live
// relays of one ID would take each other's lanes for their own. Default: a
// random ID.
func WithRelayID(id string) Option {
	if id == "" || len(id) > 40 {
		panic(fmt.Sprintf("outbox: WithRelayID(%q): want 1 to 40 bytes", id))
	}
	return optionFunc(func(c *config) { c.id = id })
}

// WithName names the relay's outbox in its events, such as the table or
// the stream it feeds; the relay's ID is their Subject. Default: "".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithObserver sends the relay's events to o (see [resilience.Observer]),
// with the relay's ID as their Subject and the ctx of Run (or of Process):
// a [resilience.Success] event for Count messages published and
// acknowledged, with how long their batch (or lane's turn) took from claim
// to acknowledgement; [resilience.Failure] for Count messages the Publisher
// refused, which will be tried again, with the first error;
// [resilience.Dead] for Count messages that reached the maximum number of
// attempts; [resilience.Stale] for Count messages published but not
// acknowledged, because another relay took them over after the lease ran
// out; and [resilience.Error] when the database, a wakeup or the Publisher
// failed, and the relay goes on after a pause. Events of no message are
// not sent. o must be safe for concurrent use and must not block.
// Default: none. o must not be nil.
func WithObserver(o resilience.Observer) Option {
	if o == nil {
		panic("outbox: WithObserver: nil Observer")
	}
	return optionFunc(func(c *config) { c.observer = o })
}

// WithOnEvent calls f for what the relay does: batches published, messages
// that failed or died, errors of the database or the Publisher. f is called
// from one goroutine at a time, not always the same one, and must not
// block. Default: none. Both it and [WithObserver] may be given.
//
// Deprecated: Use [WithObserver], whose events carry the same: Published
// is [resilience.Success], Failed is [resilience.Failure], and Dead, Stale
// and Error keep their names.
func WithOnEvent(f func(Event)) Option {
	if f == nil {
		panic("outbox: WithOnEvent: nil func")
	}
	return optionFunc(func(c *config) { c.onEvent = f })
}

// WithWaker adds w as a source of wakeups, such as a PostgreSQL LISTEN on
// the channel of [Dialect.WithNotify] (module
// github.com/resilience-go/resilience/contrib/pgnotify), for messages
// enqueued by other processes. Default: none; the relay polls, and is woken
// by Enqueue calls of its own process.
func WithWaker(w Waker) Option {
	if w == nil {
		panic("outbox: WithWaker: nil Waker")
	}
	return optionFunc(func(c *config) { c.waker = w })
}
