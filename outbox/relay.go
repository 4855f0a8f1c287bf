package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/retry"
)

// Relay publishes the messages of an outbox, at least once. Make one with
// [Outbox.NewRelay] and call [Relay.Run]; several relays, in one process or
// many, may serve one outbox. The zero value is not usable.
//
// In unordered mode (the default) a relay claims a batch of messages with a
// lease, in a short statement (PostgreSQL: FOR UPDATE SKIP LOCKED with
// UPDATE ... RETURNING; MySQL: a locking read and an update in a short
// transaction; SQLite: one UPDATE ... RETURNING), publishes them outside any
// transaction, and then deletes (or marks) only those whose lease it still
// holds: a relay whose lease ran out changes nothing. It publishes a batch
// only if the lease left covers the publish timeout and a tenth of the
// lease; a claim that took longer is put back unpublished. A message that
// fails goes back with a backoff and its error, and is marked dead after the
// maximum number of attempts; the others keep flowing.
//
// In ordered mode ([WithOrdered]) keyed messages go to one of [Lanes] lanes
// by the hash of their key, and a relay publishes a lane it owns one
// message at a time in id order, stopping the lane at the first failure. It
// renews the lane's lease before a publish that could outlast it, and
// leaves a lane that another relay took over at once.
type Relay struct {
	o    *Outbox
	db   *sql.DB
	d    Dialect
	pub  Publisher
	cfg  config
	id   string
	seq  atomic.Uint64
	busy atomic.Bool
	// backoffs draws the wait of a message that failed.
	backoffs retry.Backoff

	mu       sync.Mutex // held by Process
	nextLane int        // where the next ordered pass starts

	published, failed, dead atomic.Int64
}

// Waker delivers wakeups from outside the process. Wait blocks until a
// wakeup or until ctx is done.
type Waker interface {
	Wait(ctx context.Context) error
}

// EventKind says what an [Event] reports, to the function of the
// deprecated [WithOnEvent].
type EventKind uint8

const (
	// Published: Count messages were published and acknowledged.
	Published EventKind = iota
	// Failed: Count messages failed and will be tried again; Err is the
	// first error.
	Failed
	// Dead: Count messages reached the maximum number of attempts.
	Dead
	// Error: the database or a wakeup failed; the relay goes on after a
	// pause. Err says what.
	Error
	// Stale: Count messages were published but not acknowledged, because
	// another relay took them over after the lease ran out (the relay
	// stalled, or the database was slow); that relay publishes them again.
	Stale
)

var eventKindNames = [...]string{"published", "failed", "dead", "error", "stale"}

// String returns the kind's name in lower case: "published", "stale".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event reports what a relay did, to the function of the deprecated
// [WithOnEvent]; the events of [WithObserver] carry the same.
type Event struct {
	Kind  EventKind
	Count int
	Err   error
}

// NewRelay returns a Relay that publishes the outbox's messages through p,
// configured by opts. It starts nothing: [Relay.Run] does. It panics if p
// is nil or an option is nil or out of range.
func (o *Outbox) NewRelay(p Publisher, opts ...Option) *Relay {
	if p == nil {
		panic("outbox: NewRelay: nil Publisher")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			panic("outbox: NewRelay: nil Option")
		}
		opt.apply(&cfg)
	}
	if cfg.publishTimeout >= cfg.lease/2 {
		panic(fmt.Sprintf("outbox: NewRelay: publish timeout %v must be less than half the lease %v", cfg.publishTimeout, cfg.lease))
	}
	id := cfg.id
	if id == "" {
		var b [8]byte
		rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read does not fail
		id = "relay-" + hex.EncodeToString(b[:])
	}
	return &Relay{o: o, db: o.db, d: o.d, pub: p, cfg: cfg, id: id, backoffs: retry.FullJitter(cfg.backoffBase, cfg.backoffMax)}
}

// Stats counts what a relay published since it was made.
type Stats struct {
	Published, Failed, Dead int64
}

// Stats returns the relay's counts.
func (r *Relay) Stats() Stats {
	return Stats{Published: r.published.Load(), Failed: r.failed.Load(), Dead: r.dead.Load()}
}

// ErrRunning is returned by Run when the relay is already running.
var ErrRunning = errors.New("outbox: relay already running")

// Run publishes messages until ctx is done, then finishes the batch in hand
// (its publish is not cut short by ctx, only by the publish timeout, and its
// acknowledgement only by the lease or five seconds, whichever is longer),
// puts back a batch it claimed ahead, releases its lanes, and returns nil.
// In unordered mode it claims the next batch, and acknowledges the last,
// while the Publisher has the current one, so that one relay keeps both the
// database and the broker busy. Errors of the database or the Publisher do
// not stop it: it reports them (see [WithOnEvent]) and tries again after a
// pause, so a relay survives a database restart or a broker outage without
// help. It wakes at once when this process enqueues a message, and polls
// otherwise.
func (r *Relay) Run(ctx context.Context) error {
	if !r.busy.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.busy.Store(false)
	wakeups, stop := r.o.wakeups.Subscribe()
	defer stop()
	external, stopWaker := r.startWaker(ctx)
	defer stopWaker()
	defer r.releaseLanes()

	var idle wait.Idle
	idle.Worked()
	pause := time.Duration(0)
	var lastSweep time.Time
	for {
		var n int
		var err error
		if r.cfg.ordered {
			n, err = r.Process(ctx)
		} else {
			n, err = r.pipeline(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.emit(ctx, Event{Kind: Error, Err: err}, 0)
			pause = min(max(2*pause, 50*time.Millisecond), 5*time.Second)
			if !wait.Sleep(ctx, pause) {
				return nil
			}
			continue
		}
		pause = 0
		if n > 0 {
			idle.Worked()
			continue
		}
		if r.cfg.retention > 0 && time.Since(lastSweep) > min(r.cfg.retention/10, time.Minute) {
			lastSweep = time.Now()
			if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.emit(ctx, Event{Kind: Error, Err: err}, 0)
			}
		}
		if !idle.Wait(ctx, r.cfg.poll, wakeups, external) {
			return nil
		}
	}
}

// startWaker runs the external Waker, if any, on a goroutine that ends
// before Run returns.
func (r *Relay) startWaker(ctx context.Context) (<-chan struct{}, func()) {
	if r.cfg.waker == nil {
		return nil, func() {}
	}
	return wait.Forward(ctx, r.cfg.waker.Wait, func(err error) {
		r.emit(ctx, Event{Kind: Error, Err: fmt.Errorf("outbox: waker: %w", err)}, 0)
	})
}

// Process publishes one batch (in ordered mode, one batch of each lane the
// relay owns, and one of keyless messages), and returns how many messages
// it published. Run calls it in a loop; it serves tests and programs that
// drive the relay themselves, such as a cron job. Calls of one relay run one
// at a time.
func (r *Relay) Process(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.cfg.ordered {
		return r.processUnordered(ctx, false)
	}
	n, err := r.processLanes(ctx)
	if err != nil {
		return n, err
	}
	k, err := r.processUnordered(ctx, true)
	return n + k, err
}

// emit reports e, an event of work that took took, if it is of a message
// or an error, to the observers.
func (r *Relay) emit(ctx context.Context, e Event, took time.Duration) {
	if e.Count == 0 && e.Err == nil {
		return
	}
	if r.cfg.onEvent != nil {
		r.cfg.onEvent(e)
	}
	if r.cfg.observer != nil && int(e.Kind) < len(eventKinds) {
		r.cfg.observer.Observe(ctx, resilience.Event{Time: time.Now(), Policy: resilience.PolicyOutbox, Name: r.cfg.name,
			Kind: eventKinds[e.Kind], Count: e.Count, Duration: took, Err: e.Err, Subject: r.id})
	}
}

// eventKinds maps a relay's EventKind to the event kind of the observer.
var eventKinds = [...]resilience.EventKind{Published: resilience.Success, Failed: resilience.Failure,
	Dead: resilience.Dead, Error: resilience.Error, Stale: resilience.Stale}

// Sweep deletes, in one batch of at most 1000, published messages older
// than the retention, and returns how many it deleted. Run sweeps when it
// is idle.
func (r *Relay) Sweep(ctx context.Context) (int64, error) {
	if r.cfg.retention <= 0 {
		return 0, nil
	}
	query := r.d.db.sql.DeleteFirst("{t}", "id", "status = 1 AND published_at < "+r.d.now()+" - ?", "id", 1000)
	res, err := r.exec(ctx, r.d.q(query), r.cfg.retention.Microseconds())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
