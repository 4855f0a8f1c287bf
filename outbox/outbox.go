package outbox

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Message is one message to publish: a topic (a subject, an exchange, a
// routing key: whatever the Publisher makes of it), an optional key, a
// payload and headers.
type Message struct {
	// ID identifies the message, for the broker's and the consumers'
	// de-duplication. [Enqueue] fills in a UUIDv7 when it is empty. At most
	// 64 bytes, unique in the outbox.
	ID string
	// Topic is where the message goes. Required, at most 255 bytes.
	Topic string
	// Key is the ordering unit: in ordered mode, messages with the same key
	// are published in the order they were written. Optional, at most 255
	// bytes.
	Key string
	// Payload is the body, at most the Dialect's maximum (1 MiB by default).
	Payload []byte
	// Headers travel with the message.
	Headers map[string]string
	// NotBefore, if set, holds the message back until then.
	NotBefore time.Time
	// Attempts counts the relay's attempts to publish the message, this one
	// included; set by the relay, ignored by Enqueue.
	Attempts int
}

// Lanes is the number of lanes of ordered mode: a key's messages all go to
// lane hash(key) mod Lanes, and one relay at a time owns a lane.
const Lanes = 64

const (
	maxTopic = 255
	maxKey   = 255
	maxID    = 64
)

// Dialect says which kind of database holds an outbox, and in which table:
// [Postgres], [MySQL] (MySQL 8 or MariaDB 10.6 and later) or [SQLite], in
// table outbox_messages by default. A Dialect is a small value; the With
// methods return changed copies.
type Dialect struct {
	flavor     sqlstore.Flavor
	table      string
	maxPayload int
	notify     string // PostgreSQL NOTIFY channel, or ""
}

// The dialects, with the default table and a 1 MiB payload limit.
var (
	Postgres = Dialect{flavor: sqlstore.Postgres, table: "outbox_messages", maxPayload: 1 << 20}
	MySQL    = Dialect{flavor: sqlstore.MySQL, table: "outbox_messages", maxPayload: 1 << 20}
	SQLite   = Dialect{flavor: sqlstore.SQLite, table: "outbox_messages", maxPayload: 1 << 20}
)

func (d Dialect) String() string { return d.flavor.String() + ":" + d.table }

// WithTable returns d with its messages in table (and its other tables
// named after it: table_lanes, table_inbox, table_migrations). A table name
// often comes from configuration, so a bad one is an error: it must be a
// plain identifier or schema.identifier, letters, digits and underscores.
func (d Dialect) WithTable(table string) (Dialect, error) {
	if err := sqlstore.CheckIdent(table); err != nil {
		return d, fmt.Errorf("outbox: table name: %w", err)
	}
	d.table = table
	return d, nil
}

// WithMaxPayload returns d with a payload limit of n bytes. It panics if n
// is not positive.
func (d Dialect) WithMaxPayload(n int) Dialect {
	if n < 1 {
		panic(fmt.Sprintf("outbox: WithMaxPayload(%d): want n >= 1", n))
	}
	d.maxPayload = n
	return d
}

// WithNotify returns d with a PostgreSQL NOTIFY on channel in every
// transaction that enqueues, for relays in other processes that LISTEN on
// it. Off by default: each such commit takes a global lock in PostgreSQL,
// and LISTEN does not work through a transaction pooler. It panics for
// another database or a channel that is not an identifier.
func (d Dialect) WithNotify(channel string) Dialect {
	if d.flavor != sqlstore.Postgres {
		panic("outbox: WithNotify: only PostgreSQL has NOTIFY")
	}
	if err := sqlstore.CheckIdent(channel); err != nil || strings.Contains(channel, ".") {
		panic(fmt.Sprintf("outbox: WithNotify(%q): want an identifier", channel))
	}
	d.notify = channel
	return d
}

// q rebinds a query written with ? placeholders and {t} for the table.
func (d Dialect) q(query string) string {
	return d.flavor.Rebind(strings.ReplaceAll(query, "{t}", d.table))
}

// Execer is what Enqueue writes through: a *sql.Tx, or anything else with
// ExecContext, such as a *sql.Conn inside a transaction it began.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Errors Enqueue returns, wrapped in a [*MessageError], for a message it
// refuses before writing anything.
var (
	ErrNoTopic      = errors.New("outbox: message has no topic")
	ErrTooLarge     = errors.New("outbox: payload too large")
	ErrFieldTooLong = errors.New("outbox: field too long")
)

// ErrNilTx is returned by Enqueue when it is given no transaction.
var ErrNilTx = errors.New("outbox: Enqueue: nil transaction")

// MessageError is returned by Enqueue for a message it refuses: it names the
// message by its position and says why (errors.Is finds the reason).
type MessageError struct {
	Index int
	Err   error
}

func (e *MessageError) Error() string { return fmt.Sprintf("outbox: message %d: %v", e.Index, e.Err) }
func (e *MessageError) Unwrap() error { return e.Err }

// Enqueue writes msgs into d's outbox through tx, the transaction that
// writes the business data they announce: the messages exist if and only if
// that transaction commits. It fills in the ID of each message that has
// none. It checks every message before writing any, and writes them in one
// statement per 500. After writing, it wakes the relays of this process that
// serve the same table, so that they publish as soon as tx commits.
func Enqueue(ctx context.Context, tx Execer, d Dialect, msgs ...Message) error {
	if v := reflect.ValueOf(tx); tx == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return ErrNilTx
	}
	if d.flavor == 0 {
		return errors.New("outbox: Enqueue: zero Dialect; use outbox.Postgres, MySQL or SQLite")
	}
	for i := range msgs {
		if err := d.check(&msgs[i]); err != nil {
			return &MessageError{Index: i, Err: err}
		}
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			msgs[i].ID = newUUIDv7()
		}
	}
	for start := 0; start < len(msgs); start += 500 {
		if err := d.insert(ctx, tx, msgs[start:min(start+500, len(msgs))]); err != nil {
			return fmt.Errorf("outbox: enqueue: %w", err)
		}
	}
	if d.notify != "" && len(msgs) > 0 {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, '')", d.notify); err != nil {
			return fmt.Errorf("outbox: notify: %w", err)
		}
	}
	if len(msgs) > 0 {
		wake(d.table)
	}
	return nil
}

func (d Dialect) check(m *Message) error {
	switch {
	case m.Topic == "":
		return ErrNoTopic
	case len(m.Payload) > d.maxPayload:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(m.Payload), d.maxPayload)
	case len(m.Topic) > maxTopic:
		return fmt.Errorf("%w: topic of %d bytes, the limit is %d", ErrFieldTooLong, len(m.Topic), maxTopic)
	case len(m.Key) > maxKey:
		return fmt.Errorf("%w: key of %d bytes, the limit is %d", ErrFieldTooLong, len(m.Key), maxKey)
	case len(m.ID) > maxID:
		return fmt.Errorf("%w: ID of %d bytes, the limit is %d", ErrFieldTooLong, len(m.ID), maxID)
	}
	return nil
}

const columns = "message_id, topic, msg_key, lane, payload, headers, created_at, available_at"

func (d Dialect) insert(ctx context.Context, tx Execer, msgs []Message) error {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(d.table)
	b.WriteString(" (" + columns + ") VALUES ")
	args := make([]any, 0, 7*len(msgs))
	now := d.flavor.NowMicros()
	row := "(?, ?, ?, ?, ?, ?, " + now + ", " + now + ")"
	rowNotBefore := "(?, ?, ?, ?, ?, ?, " + now + ", ?)"
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			b.WriteString(", ")
		}
		var lane any // NULL: no key, no order to keep
		if m.Key != "" {
			lane = int64(sqlstore.Hash32(m.Key) % Lanes)
		}
		var headers any
		if len(m.Headers) > 0 {
			h, err := json.Marshal(m.Headers)
			if err != nil {
				return err
			}
			headers = string(h)
		}
		payload := m.Payload
		if payload == nil {
			payload = []byte{}
		}
		args = append(args, m.ID, m.Topic, m.Key, lane, payload, headers)
		if m.NotBefore.IsZero() {
			b.WriteString(row)
		} else {
			b.WriteString(rowNotBefore)
			args = append(args, m.NotBefore.UnixMicro())
		}
	}
	_, err := tx.ExecContext(ctx, d.flavor.Rebind(b.String()), args...)
	return err
}

// newUUIDv7 returns a new UUID of version 7: 48 bits of Unix milliseconds,
// then random bits, so that IDs sort roughly by time.
func newUUIDv7() string {
	var u [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	r1, r2 := rand.Uint64(), rand.Uint64()
	for i := range 5 {
		u[6+i] = byte(r1 >> (8 * i))
	}
	for i := range 5 {
		u[11+i] = byte(r2 >> (8 * i))
	}
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}

// Publisher sends messages to a broker. Publish sends msgs and returns nil
// if every one was accepted, or a slice as long as msgs with each message's
// error (nil for those accepted). A message is accepted when the broker has
// taken responsibility for it (a publisher confirm, a stream acknowledgement).
// Publish must honour ctx. The relay calls it from one goroutine at a time.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) []error
}

// PublisherFunc adapts a function that publishes one message to a
// [Publisher] that publishes a batch one message at a time.
type PublisherFunc func(ctx context.Context, msg Message) error

// Publish calls f for each message in turn.
func (f PublisherFunc) Publish(ctx context.Context, msgs []Message) []error {
	var errs []error
	for i := range msgs {
		if err := f(ctx, msgs[i]); err != nil {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = err
		}
	}
	return errs
}

// Wakeups: Enqueue wakes the relays of this process that serve the same
// table. A table's waiters are a set of channels with room for one signal.
var wakers sync.Map // table -> *waker

type waker struct {
	mu   sync.Mutex
	subs atomic.Pointer[[]chan struct{}]
}

func wakerFor(table string) *waker {
	if w, ok := wakers.Load(table); ok {
		return w.(*waker)
	}
	w, _ := wakers.LoadOrStore(table, new(waker))
	return w.(*waker)
}

func wake(table string) {
	w, ok := wakers.Load(table)
	if !ok {
		return
	}
	if subs := w.(*waker).subs.Load(); subs != nil {
		for _, c := range *subs {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// subscribe returns a channel that receives a signal when messages are
// enqueued to table, and a func that stops the signals.
func subscribe(table string) (<-chan struct{}, func()) {
	w := wakerFor(table)
	c := make(chan struct{}, 1)
	w.mu.Lock()
	var subs []chan struct{}
	if old := w.subs.Load(); old != nil {
		subs = append(subs, *old...)
	}
	subs = append(subs, c)
	w.subs.Store(&subs)
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		old := *w.subs.Load()
		subs := make([]chan struct{}, 0, len(old))
		for _, s := range old {
			if s != c {
				subs = append(subs, s)
			}
		}
		w.subs.Store(&subs)
	}
}
