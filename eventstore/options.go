package eventstore

import (
	"context"
	"fmt"
	"time"
)

// A SubscribeOption configures [Store.Subscribe].
type SubscribeOption interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	batch         int
	lease         time.Duration
	poll          time.Duration
	backoffMax    time.Duration
	untilCaughtUp bool
	id            string
	onError       func(error)
	waker         Waker
}

func defaultConfig() config {
	return config{batch: 500, lease: 30 * time.Second, poll: time.Second, backoffMax: 5 * time.Second}
}

// WithBatchSize sets how many events the subscription reads, hands to the
// handler and checkpoints at once. Default: 500. n must be in [1, 10000].
func WithBatchSize(n int) SubscribeOption {
	if n < 1 || n > 10_000 {
		panic(fmt.Sprintf("eventstore: WithBatchSize(%d): want 1 <= n <= 10000", n))
	}
	return optionFunc(func(c *config) { c.batch = n })
}

// WithLease sets how long a subscriber owns the subscription after it took
// or renewed it: another subscriber of the same name takes over once the
// lease has run out. A subscriber renews the lease with every batch and
// every third of the lease while idle, so a batch must take less than the
// lease. Default: 30s. d must be at least a second.
func WithLease(d time.Duration) SubscribeOption {
	if d < time.Second {
		panic(fmt.Sprintf("eventstore: WithLease(%v): want d >= 1s", d))
	}
	return optionFunc(func(c *config) { c.lease = d })
}

// WithPollInterval sets how often an idle subscription looks for events
// that another process appended, and a subscriber that waits for the lease
// tries again. Appends of this process's Store wake it at once. Default:
// 1s. d must be positive.
func WithPollInterval(d time.Duration) SubscribeOption {
	if d <= 0 {
		panic(fmt.Sprintf("eventstore: WithPollInterval(%v): want d > 0", d))
	}
	return optionFunc(func(c *config) { c.poll = d })
}

// UntilCaughtUp makes Subscribe return nil once it has handled every event
// committed when it last read, instead of waiting for more: for jobs that
// catch a read model up, and for tests. It still waits for the lease if
// another subscriber holds it.
func UntilCaughtUp() SubscribeOption {
	return optionFunc(func(c *config) { c.untilCaughtUp = true })
}

// WithSubscriberID names the subscriber in the subscription's lease, for
// operators. Default: "sub-" and 16 random hex digits. It must be 1 to 80
// bytes.
func WithSubscriberID(id string) SubscribeOption {
	if id == "" || len(id) > 80 {
		panic(fmt.Sprintf("eventstore: WithSubscriberID(%q): want 1 to 80 bytes", id))
	}
	return optionFunc(func(c *config) { c.id = id })
}

// WithOnError sets f to hear of the errors Subscribe rides out: of the
// database, of the handler (whose batch is rolled back and tried again
// after a backoff), and of the Waker. f must not block, and must be safe
// for concurrent use: the errors of a Waker come from a goroutine of
// their own. Default: none.
func WithOnError(f func(error)) SubscribeOption {
	if f == nil {
		panic("eventstore: WithOnError(nil)")
	}
	return optionFunc(func(c *config) { c.onError = f })
}

// WithWaker adds w as a source of wakeups from other processes, such as a
// PostgreSQL LISTEN (contrib/pgnotify) on a channel that appending
// transactions NOTIFY. Default: none.
func WithWaker(w Waker) SubscribeOption {
	if w == nil {
		panic("eventstore: WithWaker(nil)")
	}
	return optionFunc(func(c *config) { c.waker = w })
}

// Waker delivers wakeups from outside the process. Wait blocks until a
// wakeup or until ctx is done.
type Waker interface {
	Wait(ctx context.Context) error
}
