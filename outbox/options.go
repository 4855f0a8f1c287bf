package outbox

import (
	"fmt"
	"time"
)

// An Option configures a [Relay] made by [NewRelay].
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
// relay before another relay may take it over. It must be longer than the
// publish timeout: a lease that runs out during a publish lets a second
// relay publish the same messages. Default: 30s. d must be at least a
// second.
func WithLease(d time.Duration) Option {
	if d < time.Second {
		panic(fmt.Sprintf("outbox: WithLease(%v): want d >= 1s", d))
	}
	return optionFunc(func(c *config) { c.lease = d })
}

// WithPublishTimeout bounds each call to the Publisher. Default: 10s. d must
// be positive, and less than half the lease.
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
// before it marks it dead. A dead message waits for an operator ([Retry] or
// [Discard]); in ordered mode it holds up its lane until then. Default: 10.
// n must be at least 1.
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

// WithRelayID names the relay in its claims, at most 40 bytes. Default: a
// random ID.
func WithRelayID(id string) Option {
	if id == "" || len(id) > 40 {
		panic(fmt.Sprintf("outbox: WithRelayID(%q): want 1 to 40 bytes", id))
	}
	return optionFunc(func(c *config) { c.id = id })
}

// WithOnEvent calls f for what the relay does: batches published, messages
// that failed or died, errors of the database or the Publisher. f runs on the
// relay's goroutine and must not block. Default: none.
func WithOnEvent(f func(Event)) Option {
	return optionFunc(func(c *config) { c.onEvent = f })
}

// WithWaker adds w as a source of wakeups, such as a PostgreSQL LISTEN on
// the channel of [Dialect.WithNotify] (module
// github.com/resilience-go/resilience/contrib/pgnotify), for messages
// enqueued by other processes. Default: none; the relay polls, and is woken by Enqueue calls
// of its own process.
func WithWaker(w Waker) Option {
	return optionFunc(func(c *config) { c.waker = w })
}
