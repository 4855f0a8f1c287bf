package rabbitoutbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/resilience-go/resilience/outbox"
)

// KeyHeader is the AMQP header that carries [outbox.Message.Key]. A header
// of this name in Message.Headers is replaced by the key, or dropped when
// the message has none.
const KeyHeader = "message-key"

// window is how many messages Publish sends before it waits for their
// confirms, and the capacity of a channel's buffer of returned messages. A
// channel's returns come only from the window in flight, and the buffer is
// empty when a window starts, so the connection's reader never blocks on it.
const window = 256

// connectionTimeout bounds Dial's TCP connect and, again, its handshake when
// the URL has no connection_timeout, as in amqp.Dial; closeTimeout bounds
// Close's wait for the broker.
const (
	connectionTimeout = 30 * time.Second
	closeTimeout      = 5 * time.Second
)

// Errors a Publisher returns.
var (
	// ErrClosed is each message's error in a Publish after Close. Wrapped
	// in [ErrUnconfirmed], it is the error of a message that a Close during
	// Publish left unconfirmed.
	ErrClosed = errors.New("rabbitoutbox: publisher closed")
	// ErrConnectionClosed is each message's error in a Publish of a
	// Publisher made by New whose connection has closed: the connection is
	// the caller's, so make a new Publisher on a new connection.
	ErrConnectionClosed = errors.New("rabbitoutbox: connection closed; make a new Publisher on a new connection")
	// ErrNacked is the error of a message the broker refused (basic.nack).
	ErrNacked = errors.New("rabbitoutbox: nacked by the broker")
	// ErrUnconfirmed is the error of a message that was sent but not
	// confirmed, because the channel closed, ctx ended or Close was called
	// first: the broker may have it, and consumers may see it again when it
	// is published again. It is wrapped with the cause, which errors.Is also
	// finds (context.DeadlineExceeded, [ErrClosed], an *amqp.Error).
	ErrUnconfirmed = errors.New("rabbitoutbox: no confirm from the broker")
	// ErrFieldTooLong is the error of a message whose ID, exchange, routing
	// key or a header name is longer than AMQP's 255 bytes; it is not sent.
	// Wrapped, it is also the error of Dial, New and Encode given a
	// [WithExchange] or [WithContentType] value that long.
	ErrFieldTooLong = errors.New("rabbitoutbox: field longer than 255 bytes")
)

// closing is the cause with which Close ends the Publish in progress. It
// matches [ErrClosed], and its text, without the package's prefix, follows
// that of the error that wraps it: "rabbitoutbox: publish: publisher
// closed", not "rabbitoutbox: publish: rabbitoutbox: publisher closed".
type closing struct{}

func (closing) Error() string        { return "publisher closed" }
func (closing) Is(target error) bool { return target == ErrClosed }

// ReturnedError is the error of a message that the broker returned
// (basic.return) because it matched no queue: one published with the
// mandatory flag ([WithMandatory], on by default). A return names its
// message by ID, exchange and routing key, so messages of one batch that
// share all three fail together.
type ReturnedError struct {
	Exchange   string // where the message was published
	RoutingKey string // with which routing key
	Code       uint16 // the AMQP reply code, such as 312 (NO_ROUTE)
	Reason     string // the reply text, such as "NO_ROUTE"
}

func (e *ReturnedError) Error() string {
	return fmt.Sprintf("rabbitoutbox: returned by the broker: %d %s (exchange %q, routing key %q)",
		e.Code, e.Reason, e.Exchange, e.RoutingKey)
}

// Publisher publishes outbox messages to RabbitMQ with publisher confirms:
// it is an [outbox.Publisher] for [outbox.NewRelay]. Make one with [Dial],
// which owns its connection and reconnects, or [New] on a connection of
// your own; the zero value is not usable: its methods panic. Publish is what
// most callers want, through a relay.
//
// A Publisher is safe for concurrent use; Publish calls run one at a time,
// each waiting (within its ctx) for the one before. Call Close when done:
// it stops the Publish in progress and waits, for a bounded time, for the
// goroutines that open channels, check exchanges or close channels.
type Publisher struct {
	cfg            config
	url            string        // Dial's URL; "" when the connection is the caller's
	connectTimeout time.Duration // the URL's connection_timeout, or connectionTimeout
	closeTimeout   time.Duration
	sem            chan struct{} // held by the Publish in progress
	done           chan struct{} // closed by Close
	wg             sync.WaitGroup

	mu     sync.Mutex
	closed bool
	cancel context.CancelCauseFunc // ends the Publish in progress
	conn   *amqp.Connection
	raw    net.Conn // the network connection under conn, when Dial made it
	s      *session // nil: open a channel on the next Publish
}

var _ outbox.Publisher = (*Publisher)(nil)

// session is one AMQP channel in confirm mode.
type session struct {
	ch        *amqp.Channel
	closes    chan *amqp.Error
	returns   chan amqp.Return
	reason    error               // why the channel closed, once known
	exchanges map[string]struct{} // those known to exist, checked on ch
}

// mustBeMade panics if p is the zero Publisher.
func (p *Publisher) mustBeMade() {
	if p.sem == nil {
		panic("rabbitoutbox: zero Publisher; use Dial or New")
	}
}

func newPublisher(cfg config) *Publisher {
	return &Publisher{
		cfg:          cfg,
		closeTimeout: closeTimeout,
		sem:          make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
}

// New returns a Publisher that publishes on a channel of its own on conn,
// configured by opts. It does no I/O: the first Publish opens the channel.
// When that channel closes (the broker closes a channel on some errors) the
// Publisher opens another on the next Publish; when conn closes, every
// Publish fails with [ErrConnectionClosed]. Close closes the channel, not
// conn.
//
// New returns an error wrapping [ErrFieldTooLong] if a [WithExchange] or
// [WithContentType] value is longer than 255 bytes. It panics if conn is
// nil, if conn recovers by itself (amqp.Config.Recovery: the Publisher does
// its own recovery, and the two would compete), if opts include
// [WithDialConfig], or if an option is nil or out of range.
func New(conn *amqp.Connection, opts ...Option) (*Publisher, error) {
	if conn == nil {
		panic("rabbitoutbox: New: nil connection")
	}
	cfg, err := newConfig("New", opts)
	if cfg.dial != nil {
		panic("rabbitoutbox: New: WithDialConfig is for Dial; New's connection is made")
	}
	if conn.IsRecoveryEnabled() {
		panic("rabbitoutbox: New: the connection has amqp.Config.Recovery; give the Publisher one without: it recovers by itself")
	}
	if err != nil {
		return nil, err
	}
	p := newPublisher(cfg)
	p.conn = conn
	return p, nil
}

// Dial connects to the broker at url (amqp:// or amqps://) and returns a
// Publisher that owns the connection, configured by opts. When the
// connection is lost, the next Publish connects again, so a relay that
// keeps calling Publish resumes by itself once the broker is back. Close
// closes the connection.
//
// Each connection attempt ends when ctx (the ctx of Dial, then that of the
// Publish that connects again) ends, and after the URL's connection_timeout
// in milliseconds (30s when it has none or it is not positive) for the TCP
// connect and again for the handshake, as in amqp.Dial; a Dial function of
// [WithDialConfig] applies that timeout itself, or not.
//
// Dial returns an error if url is malformed, if a [WithExchange] or
// [WithContentType] value is longer than 255 bytes (wrapping
// [ErrFieldTooLong]), or if the broker cannot be reached, or a channel
// opened, within ctx. It panics if an option is nil or out of range.
func Dial(ctx context.Context, url string, opts ...Option) (*Publisher, error) {
	cfg, err := newConfig("Dial", opts)
	if err != nil {
		return nil, err
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return nil, fmt.Errorf("rabbitoutbox: Dial: %w", err)
	}
	p := newPublisher(cfg)
	p.url = url
	p.connectTimeout = connectionTimeout
	if uri.ConnectionTimeout > 0 {
		p.connectTimeout = time.Duration(uri.ConnectionTimeout) * time.Millisecond
	}
	conn, raw, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	s, err := p.open(ctx, conn)
	if err != nil {
		p.closeWithin(ctx, conn, raw)
		p.wg.Wait()
		return nil, err
	}
	p.conn, p.raw, p.s = conn, raw, s
	return p, nil
}

// Publish publishes msgs, in order, and waits within ctx for the broker to
// confirm each. It returns nil if every message was confirmed, or a slice as
// long as msgs with each message's error: nil for those confirmed,
// [ErrNacked], a [*ReturnedError] for one that matched no queue, the
// broker's *amqp.Error (404 NOT_FOUND) for one whose exchange does not
// exist, [ErrUnconfirmed] for one sent but not confirmed before the channel
// closed, ctx ended or Close was called, or the error that kept it from
// being sent. A message whose error is nil is held by the broker; one with
// an error may be too, and is published again by the relay.
//
// It sends the messages in windows of 256, each window after the confirms
// of the one before. A write blocked by the broker's flow control (a
// resource alarm) holds Publish until it completes, whatever ctx says; so
// does a broker that stops answering, until the connection's heartbeat
// gives up on it or, for a Publisher made by Dial, Close closes the
// connection.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.mustBeMade()
	if len(msgs) == 0 {
		return nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return fill(len(msgs), fmt.Errorf("rabbitoutbox: publish: %w", ctx.Err()))
	case <-p.done:
		return fill(len(msgs), ErrClosed)
	}
	defer func() { <-p.sem }()
	if err := ctx.Err(); err != nil {
		return fill(len(msgs), fmt.Errorf("rabbitoutbox: publish: %w", err))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !p.begin(cancel) {
		return fill(len(msgs), ErrClosed)
	}
	defer p.end()
	s, err := p.session(ctx)
	if err != nil {
		return fill(len(msgs), err)
	}
	r := results{n: len(msgs)}
	w := newWindow(min(len(msgs), window))
	var missing map[string]error // exchanges this Publish found missing
	for start := 0; start < len(msgs); start += window {
		end := min(start+window, len(msgs))
		p.prepare(msgs[start:end], w, &r, start)
		var stop error
		if s, stop = p.checkExchanges(ctx, s, w, &r, start, &missing); stop != nil {
			for i := range w.send {
				if w.send[i] {
					r.set(start+i, stop)
				}
			}
		} else if stop = p.publishWindow(ctx, s, w, &r, start); stop != nil {
			p.retire(s)
		}
		if stop == nil {
			continue
		}
		for i := end; i < len(msgs); i++ {
			r.set(i, stop)
		}
		break
	}
	return r.errs
}

// begin makes cancel the one Close calls, unless p is closed.
func (p *Publisher) begin(cancel context.CancelCauseFunc) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.cancel = cancel
	return true
}

// end forgets the cancel of the Publish that ends.
func (p *Publisher) end() {
	p.mu.Lock()
	p.cancel = nil
	p.mu.Unlock()
}

// prepare encodes msgs into w, recording in r, from index offset, the
// errors of those it cannot encode, which are not sent.
func (p *Publisher) prepare(msgs []outbox.Message, w *windowState, r *results, offset int) {
	w.reset(len(msgs))
	for i := range msgs {
		exchange, key, pub, err := p.cfg.encode(msgs[i])
		if err != nil {
			r.set(offset+i, err)
			continue
		}
		w.routes[i] = route{id: msgs[i].ID, exchange: exchange, key: key}
		w.pubs[i] = pub
		w.send[i] = true
	}
}

// checkExchanges makes sure that every exchange the window w publishes to
// exists, before any message of it is sent: a publish to an exchange that
// does not exist makes the broker close the channel, failing every message
// sent after it. It checks each exchange once per channel, with a passive
// declare; a message for one that does not exist gets the broker's error
// and is not sent. The broker closes the channel of a failed check too, so
// the window goes on on a new channel, which checkExchanges returns. It
// returns no session and an error when the window cannot go on; s is then
// retired.
func (p *Publisher) checkExchanges(ctx context.Context, s *session, w *windowState, r *results, offset int, missing *map[string]error) (*session, error) {
	for i := range w.send {
		x := w.routes[i].exchange
		if !w.send[i] || x == "" { // "" is the default exchange, always there
			continue
		}
		if err := (*missing)[x]; err != nil {
			w.send[i] = false
			r.set(offset+i, err)
			continue
		}
		if _, ok := s.exchanges[x]; ok {
			continue
		}
		ch := s.ch
		abandoned, err := p.within(ctx,
			func() error {
				return ch.ExchangeDeclarePassive(x, amqp.ExchangeDirect, false, false, false, false, nil)
			},
			func() { ch.Close() })
		var ae *amqp.Error
		switch {
		case err == nil:
			s.exchanges[x] = struct{}{}
		case abandoned:
			p.forget(s)
			return nil, fmt.Errorf("rabbitoutbox: check exchange %q: %w", x, err)
		case errors.As(err, &ae) && ae.Code == amqp.NotFound:
			if *missing == nil {
				*missing = make(map[string]error)
			}
			(*missing)[x] = fmt.Errorf("rabbitoutbox: exchange %q: %w", x, err)
			w.send[i] = false
			r.set(offset+i, (*missing)[x])
			p.retire(s)
			known := s.exchanges
			if s, err = p.session(ctx); err != nil {
				return nil, err
			}
			s.exchanges = known // what the old channel checked still holds
		default:
			p.retire(s)
			return nil, fmt.Errorf("rabbitoutbox: check exchange %q: %w", x, err)
		}
	}
	return s, nil
}

// publishWindow sends the messages of w and waits for their confirms,
// recording their errors in r from index offset. It returns nil if the
// channel can go on, or the error of the messages it could not reach: the
// channel closed, or ctx ended with messages unconfirmed.
func (p *Publisher) publishWindow(ctx context.Context, s *session, w *windowState, r *results, offset int) error {
	unsent := len(w.send) // the first message not sent, if any
	var sendErr error
	for i := range w.send {
		if !w.send[i] {
			continue
		}
		if err := context.Cause(ctx); err != nil {
			sendErr = err
		} else if dc, err := s.ch.PublishWithDeferredConfirm(w.routes[i].exchange, w.routes[i].key, p.cfg.mandatory, false, w.pubs[i]); err != nil {
			sendErr = err
		} else {
			w.dcs[i] = dc
			continue
		}
		unsent = i
		break
	}

	// Wait for the confirms, taking the returns as they come: the broker
	// sends a message's basic.return before its basic.ack, and the
	// library hands over the return before it completes the confirm.
	returns := s.returns
	var returned map[route]*ReturnedError
	take := func(ret amqp.Return) {
		if returned == nil {
			returned = make(map[route]*ReturnedError)
		}
		returned[route{id: ret.MessageId, exchange: ret.Exchange, key: ret.RoutingKey}] = &ReturnedError{
			Exchange: ret.Exchange, RoutingKey: ret.RoutingKey, Code: ret.ReplyCode, Reason: ret.ReplyText,
		}
	}
	done := ctx.Done()
wait:
	for _, dc := range w.dcs {
		for dc != nil {
			select {
			case <-dc.Done():
				dc = nil
			case ret, ok := <-returns:
				if !ok {
					returns = nil
					continue
				}
				take(ret)
			case <-done:
				break wait
			}
		}
	}
	// Which confirms are in, before the last look at the returns: the
	// return of a message confirmed by now is in the buffer, but one
	// confirmed later may have been returned after that look, so it counts
	// as unconfirmed.
	unconfirmed := 0
	for i, dc := range w.dcs {
		if dc == nil {
			continue
		}
		select {
		case <-dc.Done():
			w.confirmed[i] = true
		default:
			unconfirmed++
		}
	}
	for returns != nil {
		select {
		case ret, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			take(ret)
		default:
			returns = nil
		}
	}

	for i, dc := range w.dcs {
		switch {
		case dc == nil:
		case !w.confirmed[i]:
			r.set(offset+i, fmt.Errorf("%w: %w", ErrUnconfirmed, context.Cause(ctx)))
		case dc.Acked():
			// A return matches by message ID, exchange and routing key;
			// messages that share all three fail together, never wrongly
			// succeed.
			if e := returned[w.routes[i]]; e != nil {
				r.set(offset+i, e)
			}
		case s.ch.IsClosed():
			r.set(offset+i, fmt.Errorf("%w: %w", ErrUnconfirmed, s.closeReason()))
		default:
			r.set(offset+i, ErrNacked)
		}
	}
	var stop error
	switch {
	case unconfirmed > 0:
		stop = fmt.Errorf("rabbitoutbox: publish: %w", context.Cause(ctx))
	case s.ch.IsClosed():
		stop = fmt.Errorf("rabbitoutbox: publish: %w", s.closeReason())
	case sendErr != nil:
		stop = fmt.Errorf("rabbitoutbox: publish: %w", sendErr)
	}
	for i := unsent; i < len(w.send); i++ {
		if w.send[i] {
			r.set(offset+i, stop)
		}
	}
	return stop
}

// session returns the open channel, opening one (and, for Dial, connecting)
// if there is none.
func (p *Publisher) session(ctx context.Context) (*session, error) {
	p.mu.Lock()
	closed, s, conn, raw := p.closed, p.s, p.conn, p.raw
	p.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if s != nil {
		if !s.ch.IsClosed() {
			return s, nil
		}
		p.retire(s)
	}
	dialed := false
	if conn.IsClosed() {
		if p.url == "" {
			return nil, ErrConnectionClosed
		}
		c, r, err := p.dial(ctx)
		if err != nil {
			return nil, err
		}
		conn, raw, dialed = c, r, true
	}
	s, err := p.open(ctx, conn)
	if err != nil {
		if dialed {
			p.closeWithin(ctx, conn, raw)
		}
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		if dialed {
			p.closeWithin(ctx, conn, raw)
		} else {
			p.retire(s)
		}
		return nil, ErrClosed
	}
	p.conn, p.raw, p.s = conn, raw, s
	p.mu.Unlock()
	return s, nil
}

// forget makes p open a new channel on the next Publish, if s is its
// channel, leaving s as it is.
func (p *Publisher) forget(s *session) {
	p.mu.Lock()
	if p.s == s {
		p.s = nil
	}
	p.mu.Unlock()
}

// retire forgets s and closes its channel on a goroutine that Close waits
// for. The channel has at most a window of returns to deliver, which its
// buffer holds, so closing it cannot block on them.
func (p *Publisher) retire(s *session) {
	p.forget(s)
	p.wg.Go(func() { s.ch.Close() })
}

// Close closes the Publisher. It ends the Publish in progress, whose
// messages sent and not yet confirmed fail with [ErrUnconfirmed] wrapping
// [ErrClosed]; closes the connection if Dial made it, else the channel;
// and waits for the Publish in progress to return and for the Publisher's
// goroutines to end. Later calls to Publish fail with [ErrClosed].
//
// Close waits for the broker at most 5s in all. When that time runs out it
// returns an error matching [os.ErrDeadlineExceeded], and leaves to a
// goroutine of its own what still waits on the broker: for a Publisher made
// by Dial, whose connection is then closed, that ends at once; for one made
// by New, it ends when the broker answers or the caller closes the
// connection. Otherwise Close returns the error of closing the connection
// or channel, and nil when called again.
func (p *Publisher) Close() error {
	p.mustBeMade()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	conn, raw, cancel := p.conn, p.raw, p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel(closing{})
	}

	deadline := time.Now().Add(p.closeTimeout)
	ctx, stop := context.WithDeadline(context.Background(), deadline)
	defer stop()
	timeout := fmt.Errorf("rabbitoutbox: close: no answer from the broker in %v: %w", p.closeTimeout, os.ErrDeadlineExceeded)
	var err error
	if p.url != "" {
		if err = p.closeWithin(ctx, conn, raw); err != nil && !time.Now().Before(deadline) {
			err = timeout
		}
	}
	ended := make(chan error, 1)
	go func() {
		p.sem <- struct{}{} // the Publish in progress has returned
		<-p.sem
		p.mu.Lock()
		s := p.s
		p.s = nil
		p.mu.Unlock()
		var err error
		if s != nil {
			err = s.ch.Close()
		}
		p.wg.Wait()
		ended <- err
	}()
	select {
	case e := <-ended:
		if err == nil {
			err = e
		}
	case <-ctx.Done():
		return timeout
	}
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// dial connects to p.url within ctx, and returns the connection with the
// network connection under it.
func (p *Publisher) dial(ctx context.Context) (*amqp.Connection, net.Conn, error) {
	var cfg amqp.Config
	if p.cfg.dial != nil {
		cfg = *p.cfg.dial
	}
	// amqp.DialConfig writes into these; each connection gets its own.
	cfg.Properties = maps.Clone(cfg.Properties)
	cfg.TLSClientConfig = cfg.TLSClientConfig.Clone()
	connect := cfg.Dial
	if connect == nil {
		connect = func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: p.connectTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake's deadline, which the library clears once the
			// connection is open.
			if err := c.SetDeadline(time.Now().Add(p.connectTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	var raw net.Conn
	stop := func() bool { return true }
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		c, err := connect(network, addr)
		if err != nil {
			return nil, err
		}
		raw = c
		// ctx ending cuts the handshake short.
		stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		return c, nil
	}
	conn, err := amqp.DialConfig(p.url, cfg)
	if !stop() { // ctx ended during the handshake
		err = context.Cause(ctx)
	}
	if err != nil {
		if raw != nil {
			// Ends the library's reader after a failed handshake, and a
			// connection opened as ctx ended without waiting for the broker.
			raw.Close()
		}
		return nil, nil, fmt.Errorf("rabbitoutbox: dial: %w", err)
	}
	return conn, raw, nil
}

// closeWithin closes conn, which dial made over raw: it waits for the
// broker's answer at most p.closeTimeout, and no longer than ctx, when it
// closes raw under conn. (The deadline CloseDeadline sets on raw does not
// bound the wait on its own: the library's heartbeater may move it.)
func (p *Publisher) closeWithin(ctx context.Context, conn *amqp.Connection, raw net.Conn) error {
	if err := context.Cause(ctx); err != nil {
		raw.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	deadline := time.Now().Add(p.closeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return conn.CloseDeadline(deadline)
}

// within runs f, an AMQP call that takes no ctx, on a goroutine that Close
// waits for, and returns its error, or ctx's cause if ctx ends first. Then
// abandoned is true, and the goroutine calls abandon once f has returned.
func (p *Publisher) within(ctx context.Context, f func() error, abandon func()) (abandoned bool, err error) {
	c := make(chan error)
	p.wg.Go(func() {
		err := f()
		select {
		case c <- err:
		case <-ctx.Done():
			abandon()
		}
	})
	select {
	case err := <-c:
		return false, err
	case <-ctx.Done():
		return true, context.Cause(ctx)
	}
}

// open opens a session on conn within ctx. One that opens after ctx ended
// is closed by the goroutine that opened it.
func (p *Publisher) open(ctx context.Context, conn *amqp.Connection) (*session, error) {
	var opened *session
	abandoned, err := p.within(ctx,
		func() (err error) {
			opened, err = openSession(conn)
			return err
		},
		func() {
			if opened != nil {
				opened.ch.Close()
			}
		})
	switch {
	case abandoned:
		return nil, fmt.Errorf("rabbitoutbox: open channel: %w", err)
	case err != nil:
		return nil, err
	}
	return opened, nil
}

func openSession(conn *amqp.Connection) (*session, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitoutbox: open channel: %w", err)
	}
	s := &session{
		ch:        ch,
		closes:    ch.NotifyClose(make(chan *amqp.Error, 1)),
		returns:   ch.NotifyReturn(make(chan amqp.Return, window)),
		exchanges: make(map[string]struct{}),
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitoutbox: confirm mode: %w", err)
	}
	return s, nil
}

// closeReason returns why the closed channel closed: the broker's or the
// connection's error, or amqp.ErrClosed when it was closed on purpose. The
// library reports it as it finishes closing the channel, which follows at
// once on marking it closed.
func (s *session) closeReason() error {
	if s.reason == nil {
		if e, ok := <-s.closes; ok && e != nil {
			s.reason = e
		} else {
			s.reason = amqp.ErrClosed
		}
	}
	return s.reason
}

// route says where a message goes, to match the broker's returns.
type route struct{ id, exchange, key string }

// windowState is the bookkeeping of one window, reused across windows.
type windowState struct {
	pubs      []amqp.Publishing
	routes    []route
	send      []bool // false for a message that failed before it was sent
	dcs       []*amqp.DeferredConfirmation
	confirmed []bool // whether dcs[i] was done before the last look at the returns
}

func newWindow(n int) *windowState {
	return &windowState{
		pubs:      make([]amqp.Publishing, n),
		routes:    make([]route, n),
		send:      make([]bool, n),
		dcs:       make([]*amqp.DeferredConfirmation, n),
		confirmed: make([]bool, n),
	}
}

func (w *windowState) reset(n int) {
	w.pubs, w.routes, w.send, w.dcs, w.confirmed = w.pubs[:n], w.routes[:n], w.send[:n], w.dcs[:n], w.confirmed[:n]
	clear(w.pubs)
	clear(w.routes)
	clear(w.send)
	clear(w.dcs)
	clear(w.confirmed)
}

// results collects per-message errors, allocating only on the first.
type results struct {
	errs []error
	n    int
}

func (r *results) set(i int, err error) {
	if r.errs == nil {
		r.errs = make([]error, r.n)
	}
	r.errs[i] = err
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// Encode returns where a Publisher configured by opts sends m and what it
// sends: the exchange, the routing key, and the publishing, which carries
// m.ID as its message-id, m.Key in the [KeyHeader] header, m.Headers as
// headers and m.Payload as its body. It returns an error wrapping
// [ErrFieldTooLong] for a message AMQP cannot carry, or for a [WithExchange]
// or [WithContentType] value longer than 255 bytes. Publish calls it for
// each message; it serves tests and tools that look at what would be sent.
// It panics if an option is nil or out of range.
func Encode(m outbox.Message, opts ...Option) (exchange, routingKey string, msg amqp.Publishing, err error) {
	cfg, err := newConfig("Encode", opts)
	if err != nil {
		return "", "", msg, err
	}
	return cfg.encode(m)
}

func (c *config) encode(m outbox.Message) (exchange, key string, msg amqp.Publishing, err error) {
	exchange, key = c.exchange, m.Topic
	if c.route != nil {
		exchange, key = c.route(m)
	}
	switch {
	case len(exchange) > 255:
		return "", "", msg, fmt.Errorf("%w: exchange of %d bytes", ErrFieldTooLong, len(exchange))
	case len(key) > 255:
		return "", "", msg, fmt.Errorf("%w: routing key of %d bytes", ErrFieldTooLong, len(key))
	case len(m.ID) > 255:
		return "", "", msg, fmt.Errorf("%w: ID of %d bytes", ErrFieldTooLong, len(m.ID))
	}
	var headers amqp.Table
	if len(m.Headers) > 0 || m.Key != "" {
		headers = make(amqp.Table, len(m.Headers)+1)
		for k, v := range m.Headers {
			if len(k) > 255 {
				return "", "", msg, fmt.Errorf("%w: header name of %d bytes", ErrFieldTooLong, len(k))
			}
			headers[k] = v
		}
		delete(headers, KeyHeader)
		if m.Key != "" {
			headers[KeyHeader] = m.Key
		}
	}
	mode := amqp.Transient
	if c.persistent {
		mode = amqp.Persistent
	}
	return exchange, key, amqp.Publishing{
		Headers:      headers,
		ContentType:  c.contentType,
		DeliveryMode: mode,
		MessageId:    m.ID,
		Body:         m.Payload,
	}, nil
}

// Decode returns the message a delivery carries, for a consumer: ID from
// the message-id, Topic from the routing key it was published with (the
// topic itself unless [WithRouting] chose another), Key from the
// [KeyHeader] header, Headers from the other headers whose values are
// strings (those the broker adds, such as x-first-death-queue, included),
// and Payload from the body. With an [outbox.Inbox], ID is what
// [outbox.Inbox.Receive] takes.
func Decode(d amqp.Delivery) outbox.Message {
	m := outbox.Message{ID: d.MessageId, Topic: d.RoutingKey, Payload: d.Body}
	for k, v := range d.Headers {
		s, ok := v.(string)
		switch {
		case !ok:
		case k == KeyHeader:
			m.Key = s
		default:
			if m.Headers == nil {
				m.Headers = make(map[string]string, len(d.Headers))
			}
			m.Headers[k] = s
		}
	}
	return m
}
