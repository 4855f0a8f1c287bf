package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/internal/wait"
)

// Message is one message to publish: a topic (a subject, an exchange, a
// routing key: whatever the Publisher makes of it), an optional key, a
// payload and headers.
type Message struct {
	// ID identifies the message, for the broker's and the consumers'
	// de-duplication. [Outbox.Enqueue] fills in a UUIDv7 when it is empty.
	// At most 64 bytes, unique in the outbox.
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
	db         *database
	table      string
	maxPayload int
	notify     string // the NOTIFY statement of each transaction that enqueues, or ""
}

// database is what the outbox does differently on each database: one value
// per database, in postgres.go, mysql.go and sqlite.go, each field set (a
// test checks).
type database struct {
	sql *sqlstore.Dialect
	// schema is the outbox's tables, by version: {t} stands for the table,
	// {n} for its name without a schema, which index names start with.
	schema []sqlstore.Migration
	// laneGuard returns the condition, and its arguments, that a message of
	// a lane must meet to be published: that no message of a lower id can
	// still appear in the lane, given the gap grace.
	laneGuard func(gapGrace time.Duration) (string, []any)
	// notify returns the statement by which a transaction that enqueues
	// announces it on channel, or an error where the database has none.
	notify func(channel string) (string, error)
	// writers is how the database lets writers in.
	writers writers
}

// writers is how a database lets writers in.
type writers int

const (
	// manyWriters: the database lets writers in together, and queues
	// those that wait for a row's lock.
	manyWriters writers = iota + 1
	// oneWriter: the database lets one writer in at a time and the others
	// wait in a busy handler, which keeps no turn order and can hold a
	// writer back for seconds while others write. There the relays of an
	// Outbox take turns to write, first come first served, so that none
	// waits past its lease for the statement that acknowledges.
	oneWriter
)

// The dialects, with the default table and a 1 MiB payload limit.
var (
	Postgres = Dialect{db: postgres, table: "outbox_messages", maxPayload: 1 << 20}
	MySQL    = Dialect{db: mysql, table: "outbox_messages", maxPayload: 1 << 20}
	SQLite   = Dialect{db: sqlite, table: "outbox_messages", maxPayload: 1 << 20}
)

func (d Dialect) String() string {
	if d.db == nil {
		return "zero Dialect"
	}
	return d.db.sql.Name + ":" + d.table
}

// longestSuffix is the longest suffix the outbox adds to its table's name:
// an index of the inbox is {table}_inbox_received.
const longestSuffix = len("_inbox_received")

// WithTable returns d with its messages in table, and its other tables
// named after it: table_lanes, table_relays, table_inbox,
// table_migrations. A table name often comes from configuration, so a bad
// one is an error: it must be a plain identifier or schema.identifier,
// letters, digits and underscores, with a table part of at most 48 bytes on
// PostgreSQL and 49 on MySQL (the longest name the outbox derives from it
// adds 15).
func (d Dialect) WithTable(table string) (Dialect, error) {
	if d.db == nil {
		return d, errZeroDialect
	}
	if err := d.db.sql.CheckTable(table, longestSuffix); err != nil {
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
// another database or a channel that is not an identifier of at most 48
// bytes.
func (d Dialect) WithNotify(channel string) Dialect {
	if err := sqlstore.CheckIdent(channel); err != nil || strings.Contains(channel, ".") || len(channel) > 48 {
		panic(fmt.Sprintf("outbox: WithNotify(%q): want an identifier of at most 48 bytes", channel))
	}
	if d.db == nil {
		panic(errZeroDialect.Error())
	}
	statement, err := d.db.notify(channel)
	if err != nil {
		panic(err.Error())
	}
	d.notify = statement
	return d
}

var errZeroDialect = errors.New("outbox: zero Dialect; use outbox.Postgres, MySQL or SQLite")

// q rebinds a query written with ? placeholders and {t} for the table.
func (d Dialect) q(query string) string {
	return d.db.sql.Rebind(strings.ReplaceAll(query, "{t}", d.table))
}

// now is the database's clock, in microseconds.
func (d Dialect) now() string { return d.db.sql.Now }

// Outbox is the outbox of one table in one database: it enqueues messages
// in the business transaction, makes the relays that publish them, and
// answers an operator. Make one with [New] per table and share it: its
// relays wake the moment its Enqueue writes. It is safe for concurrent use.
type Outbox struct {
	db      *sql.DB
	d       Dialect
	wakeups wait.Wakeups
	turn    chan struct{} // where the database has one writer: held by the relay that writes
}

// New returns the outbox of d's table in db. It checks nothing and starts
// nothing: call [Outbox.Migrate] once at start-up, and run a relay
// ([Outbox.NewRelay]). It panics if db is nil or d is the zero Dialect.
func New(db *sql.DB, d Dialect) *Outbox {
	if db == nil {
		panic("outbox: New: nil db")
	}
	if d.db == nil {
		panic("outbox: New: " + errZeroDialect.Error()[len("outbox: "):])
	}
	o := &Outbox{db: db, d: d}
	if d.db.writers == oneWriter {
		o.turn = make(chan struct{}, 1)
	}
	return o
}

// takeTurn waits for the relays' turn to write, where the database has one
// writer, in the order the relays asked (a channel's senders wait in
// line), or until ctx is done. A caller that took the turn gives it back
// with endTurn.
func (o *Outbox) takeTurn(ctx context.Context) error {
	if o.turn == nil {
		return nil
	}
	select {
	case o.turn <- struct{}{}: // free
		return nil
	default:
	}
	select {
	case o.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (o *Outbox) endTurn() {
	if o.turn != nil {
		<-o.turn
	}
}

// Dialect returns the outbox's dialect.
func (o *Outbox) Dialect() Dialect { return o.d }

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

func (e *MessageError) Error() string {
	return fmt.Sprintf("outbox: message %d: %s", e.Index, strings.TrimPrefix(e.Err.Error(), "outbox: "))
}
func (e *MessageError) Unwrap() error { return e.Err }

// Enqueue writes msgs into the outbox through tx, the transaction that
// writes the business data they announce: the messages exist if and only if
// that transaction commits. It fills in the ID of each message that has
// none. It checks every message before writing any, and writes them in one
// statement per 500. After writing, it wakes the outbox's relays in this
// process, so that they publish as soon as tx commits.
func (o *Outbox) Enqueue(ctx context.Context, tx Execer, msgs ...Message) error {
	if err := enqueue(ctx, tx, o.d, msgs); err != nil {
		return err
	}
	if len(msgs) > 0 {
		o.wakeups.Wake()
	}
	return nil
}

func enqueue(ctx context.Context, tx Execer, d Dialect, msgs []Message) error {
	if v := reflect.ValueOf(tx); tx == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return ErrNilTx
	}
	if d.db == nil {
		return errors.New("outbox: Enqueue: " + errZeroDialect.Error()[len("outbox: "):])
	}
	for i := range msgs {
		if err := d.check(&msgs[i]); err != nil {
			return &MessageError{Index: i, Err: err}
		}
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			msgs[i].ID = sqlstore.UUIDv7()
		}
	}
	for start := 0; start < len(msgs); start += 500 {
		if err := d.insert(ctx, tx, msgs[start:min(start+500, len(msgs))]); err != nil {
			return fmt.Errorf("outbox: enqueue: %w", err)
		}
	}
	if d.notify != "" && len(msgs) > 0 {
		if _, err := tx.ExecContext(ctx, d.notify); err != nil {
			return fmt.Errorf("outbox: notify: %w", err)
		}
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
	now := d.now()
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
	_, err := tx.ExecContext(ctx, d.db.sql.Rebind(b.String()), args...)
	return err
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
