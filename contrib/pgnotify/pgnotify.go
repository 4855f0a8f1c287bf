package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/resilience-go/resilience/outbox"
)

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("pgnotify: waker closed")

// channelRE is what [outbox.Dialect.WithNotify] accepts: a plain identifier
// of at most 48 letters, digits and underscores, not starting with a digit.
var channelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// Waker wakes an [outbox.Relay] when a transaction that enqueued messages
// commits, in any process: it is an [outbox.Waker] that LISTENs on the
// PostgreSQL channel of [outbox.Dialect.WithNotify]. Make one with [New] or
// [NewFromConfig], give it to the relay with [outbox.WithWaker], and Close
// it once the relay's Run has returned. The zero value is not usable: its
// methods panic.
//
// A Waker holds one connection of its own, which the first Wait opens.
// Wait is meant for one caller at a time, as the relay calls it from one
// goroutine; a Wait made while another is in progress waits, within its
// ctx, for that one to return, and each notification ends one Wait only, so
// give each relay a Waker of its own. Close may be called at any time, from
// any goroutine.
type Waker struct {
	cfg    *pgx.ConnConfig
	listen string                                     // the LISTEN statement
	notify func(*pgconn.PgConn, *pgconn.Notification) // the config's own OnNotification, or nil

	sem   chan struct{} // held by the Wait or Close in progress, which owns conn and heard
	conn  *pgx.Conn     // nil: connect on the next Wait
	heard bool          // a notification came that no Wait has returned for

	mu     sync.Mutex
	closed bool
	stop   context.CancelFunc // ends the Wait in progress; nil when there is none
}

var _ outbox.Waker = (*Waker)(nil)

// New returns a Waker that LISTENs on channel through a connection made
// with connString, a PostgreSQL URL or keyword/value string as
// [pgx.ParseConfig] takes. It connects on the first Wait, not before.
//
// New returns an error if connString does not parse. It panics if channel is
// not what [outbox.Dialect.WithNotify] accepts: letters, digits and
// underscores, not starting with a digit, at most 48 of them. The channel's
// case matters, as it does for WithNotify: Wait LISTENs on the quoted name.
func New(connString, channel string) (*Waker, error) {
	checkChannel("New", channel)
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: %w", err)
	}
	return newWaker(cfg, channel), nil
}

// NewFromConfig is like [New] with a parsed configuration, which must have
// been made by [pgx.ParseConfig], as for [pgx.ConnectConfig]. The Waker
// connects with a copy of config. If config.OnNotification is set, Wait
// calls it too, on its own goroutine, for each notification the connection
// receives. Whatever config.BuildContextWatcherHandler says, the end of a
// Wait's ctx interrupts its read at once: a LISTEN connection has no query
// to cancel.
//
// NewFromConfig panics if config is nil or channel is not an identifier, as
// New does.
func NewFromConfig(config *pgx.ConnConfig, channel string) *Waker {
	if config == nil {
		panic("pgnotify: NewFromConfig: nil config")
	}
	checkChannel("NewFromConfig", channel)
	return newWaker(config.Copy(), channel)
}

func checkChannel(fn, channel string) {
	if !channelRE.MatchString(channel) {
		panic(fmt.Sprintf("pgnotify: %s: channel %q: want an identifier: 1 to 48 letters, digits and underscores, not starting with a digit", fn, channel))
	}
}

func newWaker(cfg *pgx.ConnConfig, channel string) *Waker {
	w := &Waker{
		cfg:    cfg,
		listen: "LISTEN " + pgx.Identifier{channel}.Sanitize(),
		notify: cfg.OnNotification,
		sem:    make(chan struct{}, 1),
	}
	cfg.OnNotification = w.onNotification
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	return w
}

// mustBeMade panics if w is the zero Waker.
func (w *Waker) mustBeMade() {
	if w.sem == nil {
		panic("pgnotify: zero Waker; use New or NewFromConfig")
	}
}

// onNotification runs inside the connection's calls, on the goroutine that
// holds sem.
func (w *Waker) onNotification(c *pgconn.PgConn, n *pgconn.Notification) {
	w.heard = true
	if w.notify != nil {
		w.notify(c, n)
	}
}

// Wait blocks until a notification comes on the channel, and returns nil,
// or until ctx is done, and returns ctx.Err(). Notifications that reach the
// connection together, such as those of transactions that commit at about
// the same time, make one wakeup.
//
// The first Wait connects and LISTENs, and so does the Wait after a
// connection failed. Such a Wait returns nil as soon as it listens, without
// waiting for a notification: one sent before LISTEN took effect, or while
// there was no connection, was not heard, and the caller should look for
// what it may have missed, as a relay does on every wakeup. PostgreSQL keeps
// no notification for a listener that is not connected, so those sent while
// the connection is down are lost; the relay's poll and this wakeup make up
// for them.
//
// When connecting or listening fails, or the connection fails during the
// wait, Wait returns the error, prefixed "pgnotify:", and the next Wait
// connects again. Wait does not pause between attempts: the caller does (a
// relay pauses a second after an error). A connection that dies without a
// word (a host that vanished) is found only by TCP keepalive, by default
// after some minutes; meanwhile the relay polls. After Close, Wait returns
// [ErrClosed].
func (w *Waker) Wait(ctx context.Context) error {
	w.mustBeMade()
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.sem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	if !w.begin(stop) {
		return ErrClosed
	}
	defer w.end()
	err := w.wait(wctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case w.isClosed():
		return ErrClosed
	}
	return err
}

// begin records stop as the way to end the Wait in progress, and reports
// whether the Waker is open.
func (w *Waker) begin(stop context.CancelFunc) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.stop = stop
	return true
}

func (w *Waker) end() {
	w.mu.Lock()
	w.stop = nil
	w.mu.Unlock()
}

func (w *Waker) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// wait does Wait's work while holding sem. An error it returns after ctx
// ended is ctx's, whatever it says.
func (w *Waker) wait(ctx context.Context) error {
	if w.conn != nil && w.conn.IsClosed() {
		w.drop(ctx)
	}
	if w.conn == nil {
		conn, err := w.connect(ctx)
		if err != nil {
			return err
		}
		w.conn, w.heard = conn, false
		return nil
	}
	if w.heard {
		w.heard = false
		return nil
	}
	if _, err := w.conn.WaitForNotification(ctx); err != nil {
		if ctx.Err() != nil && !w.conn.IsClosed() {
			return err // the connection is intact, and LISTENs still
		}
		w.drop(ctx)
		return fmt.Errorf("pgnotify: wait: %w", err)
	}
	w.drain(ctx)
	w.heard = false
	return nil
}

// connect opens a connection and LISTENs on it.
func (w *Waker) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, w.cfg)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, w.listen); err != nil {
		discard(ctx, conn) //nolint:errcheck // LISTEN's error says more
		return nil, fmt.Errorf("pgnotify: %s: %w", w.listen, err)
	}
	return conn, nil
}

// drain reads the messages the connection has already received, so that
// notifications that came together make one wakeup. It does not wait for
// more, except for the rest of a message the server sent in part.
func (w *Waker) drain(ctx context.Context) {
	pg := w.conn.PgConn()
	for pg.Frontend().ReadBufferLen() > 0 {
		if _, err := pg.ReceiveMessage(ctx); err != nil {
			return // a failed connection is closed, and the next Wait connects
		}
	}
}

// drop closes the connection, which failed.
func (w *Waker) drop(ctx context.Context) {
	discard(ctx, w.conn) //nolint:errcheck // the connection failed already
	w.conn = nil
}

// discard closes conn and waits, within ctx, until pgx has let go of it: a
// connection that failed is closed by a goroutine of pgx's own.
func discard(ctx context.Context, conn *pgx.Conn) error {
	err := conn.Close(ctx)
	select {
	case <-conn.PgConn().CleanupDone():
	case <-ctx.Done():
	}
	return err
}

// Close ends the Wait in progress, if any, which returns [ErrClosed], and
// closes the connection, within ctx. Every later Wait returns ErrClosed; a
// second Close returns nil. Close the Waker after the relay's Run has
// returned: a relay whose Waker is closed reports an error each second.
func (w *Waker) Close(ctx context.Context) error {
	w.mustBeMade()
	w.mu.Lock()
	w.closed = true
	stop := w.stop
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.sem }()
	conn := w.conn
	if conn == nil {
		return nil
	}
	w.conn = nil
	if err := discard(ctx, conn); err != nil {
		return fmt.Errorf("pgnotify: close: %w", err)
	}
	return nil
}
