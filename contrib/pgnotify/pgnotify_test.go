package pgnotify_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/pgnotify"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// waitFor bounds a wait that must end; it fails a test that would hang and
// is never a measure of speed.
const waitFor = 10 * time.Second

// channelName returns a channel of the test's own, in mixed case: a Waker
// that did not quote it would LISTEN on its lower-case form and hear nothing
// that pg_notify sends to it.
func channelName(t testing.TB) string {
	return "Wake_" + servicetest.UniqueName(t)
}

// notify commits a notification on channel from a connection of db's.
func notify(t testing.TB, db *sql.DB, channel, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := db.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	require.NoError(t, err, "pg_notify(%q, %q)", channel, payload)
}

// heard records what a Waker's connection receives, through the
// OnNotification of its configuration.
type heard struct {
	mu       sync.Mutex
	payloads []string
	pids     []uint32 // of the listening backend, one per notification
}

func (h *heard) add(c *pgconn.PgConn, n *pgconn.Notification) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.payloads = append(h.payloads, n.Payload)
	h.pids = append(h.pids, c.PID())
}

func (h *heard) get() (payloads []string, pids []uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.payloads...), append([]uint32(nil), h.pids...)
}

// newWaker returns a Waker on channel through dsn, which records what it
// hears in h (if h is not nil), closed when the test ends.
func newWaker(t testing.TB, dsn, channel string, h *heard) *pgnotify.Waker {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	if h != nil {
		cfg.OnNotification = h.add
	}
	w := pgnotify.NewFromConfig(cfg, channel)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		assert.NoError(t, w.Close(ctx), "Close at the end of the test")
	})
	return w
}

// wait calls w.Wait, bounded by waitFor.
func wait(w *pgnotify.Waker) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return w.Wait(ctx)
}

// listen makes w connect and LISTEN: the first Wait returns nil as soon as
// it listens.
func listen(t testing.TB, w *pgnotify.Waker) {
	t.Helper()
	require.NoError(t, wait(w), "the first Wait connects, LISTENs and returns nil")
}

// receive returns the next value of c, or fails the test if none comes.
func receive[T any](t testing.TB, c <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case v := <-c:
		return v
	case <-timer.C:
		t.Fatalf("no %s within %v", what, waitFor)
		var zero T
		return zero
	}
}

func TestCommittedNotificationWakes(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	channel := channelName(t)
	var h heard
	w := newWaker(t, db.DSN, channel, &h)
	listen(t, w)

	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "SELECT pg_notify($1, 'rolled back')", channel)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback())
	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "SELECT pg_notify($1, 'committed')", channel)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())

	// A listener receives notifications in the order their transactions
	// end: had the rolled-back one been sent, it would have come first.
	require.NoError(t, wait(w))
	payloads, _ := h.get()
	assert.Equal(t, []string{"committed"}, payloads, "what had arrived when Wait returned")

	// Each wakeup is for a notification: this Wait returns for the next one,
	// not for anything left over.
	notify(t, db.DB, channel, "next")
	require.NoError(t, wait(w))
	payloads, _ = h.get()
	assert.Equal(t, []string{"committed", "next"}, payloads)
}

func TestChannelIsCaseSensitive(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	channel := channelName(t)
	var h heard
	w := newWaker(t, db.DSN, channel, &h)
	listen(t, w)

	notify(t, db.DB, strings.ToLower(channel), "lower case")
	notify(t, db.DB, channel, "exact")
	require.NoError(t, wait(w))
	payloads, _ := h.get()
	assert.Equal(t, []string{"exact"}, payloads, "the channel %q is not %q", channel, strings.ToLower(channel))
}

func TestNotificationsTogetherWakeOnce(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	channel := channelName(t)
	var h heard
	w := newWaker(t, db.DSN, channel, &h)
	listen(t, w)

	// The notifications of one transaction reach a listener in one write.
	_, err := db.ExecContext(context.Background(),
		"SELECT pg_notify($1, '1'), pg_notify($1, '2'), pg_notify($1, '3')", channel)
	require.NoError(t, err)
	require.NoError(t, wait(w))
	payloads, _ := h.get()
	assert.Equal(t, []string{"1", "2", "3"}, payloads, "one Wait takes all three")

	notify(t, db.DB, channel, "4")
	require.NoError(t, wait(w))
	payloads, _ = h.get()
	assert.Equal(t, []string{"1", "2", "3", "4"}, payloads, "the next Wait is for the next notification")
}

// hushed passes on the wakeups of a Waker but the first, which comes when
// it starts to listen, and closes ready then: a relay given it wakes only
// for notifications.
type hushed struct {
	w         *pgnotify.Waker
	ready     chan struct{}
	listening bool
}

func (h *hushed) Wait(ctx context.Context) error {
	if !h.listening {
		if err := h.w.Wait(ctx); err != nil {
			return err
		}
		h.listening = true
		close(h.ready)
	}
	return h.w.Wait(ctx)
}

// claimTracer signals on claimed each time a relay's claim statement ends.
type claimTracer struct{ claimed chan<- struct{} }

type claimKey struct{}

func (c claimTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, claimKey{}, strings.Contains(data.SQL, "SKIP LOCKED"))
}

func (c claimTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if claim, _ := ctx.Value(claimKey{}).(bool); claim {
		select {
		case c.claimed <- struct{}{}:
		default:
		}
	}
}

// A relay that polls once an hour publishes a message committed by another
// connection as soon as it commits: its Waker woke it.
func TestRelayWakesOnCommit(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	ctx := context.Background()
	channel := channelName(t)
	writer := outbox.Postgres.WithNotify(channel)
	require.NoError(t, outbox.New(db.DB, writer).Migrate(ctx))

	// Enqueue wakes the relays of its own Outbox; this relay is another's,
	// so that it hears of the commit only through PostgreSQL.
	cfg, err := pgx.ParseConfig(db.DSN)
	require.NoError(t, err)
	claimed := make(chan struct{}, 16)
	cfg.Tracer = claimTracer{claimed}
	relayDB := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { relayDB.Close() })

	w, err := pgnotify.New(db.DSN, channel)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, w.Close(context.Background())) })
	waker := &hushed{w: w, ready: make(chan struct{})}
	published := make(chan outbox.Message, 1)
	pub := outbox.PublisherFunc(func(_ context.Context, m outbox.Message) error {
		published <- m
		return nil
	})
	var (
		mu     sync.Mutex
		events []resilience.EventKind
	)
	relay := outbox.New(relayDB, outbox.Postgres).NewRelay(pub, outbox.WithPollInterval(time.Hour), outbox.WithWaker(waker),
		outbox.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			mu.Lock()
			events = append(events, e.Kind)
			mu.Unlock()
		})))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	finish := sync.OnceValue(func() error {
		stop()
		return receive(t, done, "return from Run")
	})
	t.Cleanup(func() { finish() }) //nolint:errcheck // checked below, unless the test failed before

	// Once the Waker listens and the relay's first claim found nothing, the
	// relay sleeps for an hour unless woken.
	receive(t, waker.ready, "LISTEN")
	receive(t, claimed, "first claim")

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, outbox.New(db.DB, writer).Enqueue(ctx, tx, outbox.Message{ID: "order-42-created", Topic: "orders.created", Key: "order-42"}))
	require.NoError(t, tx.Commit())

	m := receive(t, published, "message published")
	assert.Equal(t, "order-42-created", m.ID)
	require.NoError(t, finish(), "Run")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []resilience.EventKind{resilience.Success}, events, "no errors, one message published")
}

func TestReconnectsAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	channel := channelName(t)
	dsn, px := servicetest.ProxyURL(t, db.DSN, "5432")
	var h heard
	w := newWaker(t, dsn, channel, &h)
	listen(t, w)
	notify(t, db.DB, channel, "before")
	require.NoError(t, wait(w))

	waited := make(chan error, 1)
	go func() { waited <- wait(w) }()
	px.Cut()
	err := receive(t, waited, "return from Wait after the cut")
	require.Error(t, err)
	assert.ErrorContains(t, err, "pgnotify: wait:")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the cut, not the bound of the test, ended Wait")

	err = wait(w)
	assert.ErrorContains(t, err, "pgnotify: connect:", "while the proxy refuses connections")
	notify(t, db.DB, channel, "lost") // nobody listens

	px.Restore()
	require.NoError(t, wait(w), "Wait reconnects and returns nil for what it may have missed")
	notify(t, db.DB, channel, "after")
	require.NoError(t, wait(w))
	payloads, pids := h.get()
	assert.Equal(t, []string{"before", "after"}, payloads)
	if assert.Len(t, pids, 2) {
		assert.NotEqual(t, pids[0], pids[1], "a new connection, a new backend")
	}
}

// Not parallel: it counts goroutines.
func TestCancelEndsWait(t *testing.T) {
	db := servicetest.Postgres(t)
	channel := channelName(t)
	var h heard
	w := newWaker(t, db.DSN, channel, &h)
	notify(t, db.DB, channel, "nobody listens yet")
	before := runtime.NumGoroutine()

	listen(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- w.Wait(ctx) }()
	cancel()
	assert.Equal(t, context.Canceled, receive(t, waited, "return from Wait after cancel"))
	assertGoroutines(t, before, "after Wait returned")

	// The connection outlives the cancelled Wait: no reconnection, no
	// wakeup until the next notification, which comes on the same backend.
	notify(t, db.DB, channel, "one")
	require.NoError(t, wait(w))
	notify(t, db.DB, channel, "two")
	require.NoError(t, wait(w))
	payloads, pids := h.get()
	assert.Equal(t, []string{"one", "two"}, payloads)
	if assert.Len(t, pids, 2) {
		assert.Equal(t, pids[0], pids[1], "one connection throughout")
	}

	require.NoError(t, w.Close(context.Background()))
	assertGoroutines(t, before, "after Close")
}

// assertGoroutines checks that no more goroutines run than before. It polls
// for goroutines that are ending, such as that of the test's own Wait.
func assertGoroutines(t *testing.T, before int, when string) {
	t.Helper()
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(waitFor); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if !assert.LessOrEqual(t, after, before, "goroutines %s", when) {
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
	}
}

func TestCloseEndsWait(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	w := newWaker(t, db.DSN, channelName(t), nil)
	listen(t, w)

	waited := make(chan error, 1)
	go func() { waited <- wait(w) }()
	require.NoError(t, w.Close(context.Background()))
	assert.ErrorIs(t, receive(t, waited, "return from Wait after Close"), pgnotify.ErrClosed)
	assert.ErrorIs(t, wait(w), pgnotify.ErrClosed, "Wait after Close")
	assert.NoError(t, w.Close(context.Background()), "a second Close")
}

// Waits made at once are served one at a time, each for a notification of
// its own.
func TestConcurrentWaits(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	channel := channelName(t)
	var h heard
	w := newWaker(t, db.DSN, channel, &h)
	listen(t, w)

	const n = 4
	waited := make(chan error, n)
	for range n {
		go func() { waited <- wait(w) }()
	}
	for i := range n {
		notify(t, db.DB, channel, string(rune('a'+i)))
		assert.NoError(t, receive(t, waited, "return from a Wait"))
	}
	payloads, _ := h.get()
	assert.Equal(t, []string{"a", "b", "c", "d"}, payloads)

	// A Wait that waits for another honours its ctx.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { waited <- w.Wait(ctx) }()
	go func() { waited <- w.Wait(ctx) }()
	cancel()
	assert.Equal(t, context.Canceled, receive(t, waited, "return from a Wait"))
	assert.Equal(t, context.Canceled, receive(t, waited, "return from a Wait"))
}

func TestConnectFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	w, err := pgnotify.New("postgres://postgres@"+addr+"/test?sslmode=disable&connect_timeout=10", "outbox")
	require.NoError(t, err)
	for range 2 {
		err := wait(w)
		assert.ErrorContains(t, err, "pgnotify: connect:")
		assert.NotErrorIs(t, err, pgnotify.ErrClosed)
	}
	assert.NoError(t, w.Close(context.Background()), "Close without a connection")
	assert.ErrorIs(t, wait(w), pgnotify.ErrClosed)
}

func TestWaitWithCtxDone(t *testing.T) {
	t.Parallel()
	w, err := pgnotify.New("postgres://postgres@127.0.0.1:5432/test", "outbox")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Equal(t, context.Canceled, w.Wait(ctx))
}

func TestNewBadConnString(t *testing.T) {
	t.Parallel()
	_, err := pgnotify.New("postgres://app:s3cret@db.internal:port/app", "outbox")
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "pgnotify: "), "error %q", err)
	assert.NotContains(t, err.Error(), "s3cret", "the password stays out of the error")
	var pe *pgconn.ParseConfigError
	assert.True(t, errors.As(err, &pe), "errors.As finds pgx's %T in %v", pe, err)
}

// New accepts exactly the channels that outbox.Dialect.WithNotify accepts.
func TestChannelNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		channel string
		ok      bool
	}{
		{"outbox", true},
		{"Outbox_Wake_2", true},
		{"_x", true},
		{strings.Repeat("c", 48), true},
		{"", false},
		{"1outbox", false},
		{"out-box", false},
		{"public.outbox", false},
		{"out box", false},
		{`out"box`, false},
		{"outbox;", false},
		{"café", false},
		{strings.Repeat("c", 49), false},
	}
	for _, tt := range tests {
		outboxOK := !panics(func() { outbox.Postgres.WithNotify(tt.channel) })
		assert.Equal(t, tt.ok, outboxOK, "outbox.Postgres.WithNotify(%q) accepts it", tt.channel)
		newOK := !panics(func() { _, _ = pgnotify.New("", tt.channel) })
		assert.Equal(t, tt.ok, newOK, "New(%q) accepts it", tt.channel)
		if !tt.ok {
			want := fmt.Sprintf("pgnotify: New: channel %q: want an identifier: 1 to 48 letters, digits and underscores, not starting with a digit", tt.channel)
			assert.PanicsWithValue(t, want, func() { _, _ = pgnotify.New("", tt.channel) })
		}
	}
}

func panics(f func()) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	f()
	return false
}

func TestNewFromConfigPanics(t *testing.T) {
	t.Parallel()
	assert.PanicsWithValue(t, "pgnotify: NewFromConfig: nil config", func() { pgnotify.NewFromConfig(nil, "outbox") })
	cfg, err := pgx.ParseConfig("")
	require.NoError(t, err)
	assert.PanicsWithValue(t,
		`pgnotify: NewFromConfig: channel "out-box": want an identifier: 1 to 48 letters, digits and underscores, not starting with a digit`,
		func() { pgnotify.NewFromConfig(cfg, "out-box") })
}

func TestZeroWakerPanics(t *testing.T) {
	t.Parallel()
	var w pgnotify.Waker
	const want = "pgnotify: zero Waker; use New or NewFromConfig"
	assert.PanicsWithValue(t, want, func() { _ = w.Wait(context.Background()) })
	assert.PanicsWithValue(t, want, func() { _ = w.Close(context.Background()) })
}
