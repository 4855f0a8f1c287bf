package eventstore

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

// Event is one event of a stream. The caller of [Store.Append] gives its
// Type, Payload and, optionally, ID, Metadata, CausationID and
// CorrelationID; the store gives the rest.
type Event struct {
	// ID identifies the event, for consumers' de-duplication and as the
	// message ID when it is published through an outbox. Append fills in a
	// UUIDv7 when it is empty. At most 64 bytes, unique in the store.
	ID string
	// Type names what happened, such as "ItemAdded". Required, at most 255
	// bytes.
	Type string
	// Payload is the event's body, in whatever encoding the application
	// chooses.
	Payload []byte
	// Metadata travels with the event: who caused it, from where.
	Metadata map[string]string
	// CausationID is the ID of the command or event that caused this one,
	// and CorrelationID that of the conversation it belongs to; at most 64
	// bytes each.
	CausationID, CorrelationID string

	// Stream is the stream the event belongs to; set by Append and reads.
	Stream string
	// Version is the event's place in its stream, from 1; set by Append and
	// reads.
	Version int64
	// Position is the event's place in the log of the whole store, from
	// 1, with no gaps, in the order the events committed; set by reads,
	// and by Append on MySQL and SQLite (on PostgreSQL, an event gets its
	// position once it has committed).
	Position int64
	// Time is when the event was appended, on the database's clock, to the
	// microsecond (the millisecond on SQLite); set by reads.
	Time time.Time
}

// Special values of the expected version of [Store.Append]. A version of
// 1 or more expects the stream to hold exactly that many events.
const (
	// NoStream expects a stream with no events yet.
	NoStream int64 = 0
	// Any appends whatever the stream holds.
	Any int64 = -1
	// StreamExists expects a stream with at least one event.
	StreamExists int64 = -2
)

const (
	maxStream = 255
	maxType   = 255
	maxID     = 64
)

// Dialect says which kind of database holds a store, and in which tables:
// [Postgres], [MySQL] (MySQL 8 or MariaDB 10.6 and later) or [SQLite], in
// table events (and events_*) by default. A Dialect is a small value;
// WithTable returns a changed copy.
type Dialect struct {
	db    *database
	table string
}

// database is what the store does differently on each database: one value
// per database, in postgres.go, mysql.go and sqlite.go, each field set (a
// test checks).
type database struct {
	sql *sqlstore.Dialect
	// schema is the store's tables, by version: {t} stands for the table,
	// {n} for its name without a schema, which index names start with.
	schema []sqlstore.Migration
	// append checks that stream is at the expected version and writes
	// events, whose Stream, Version and ID are set, through tx; it returns
	// the stream's version before them, or a *ConflictError. It gives the
	// events their positions, or leaves that to sequence.
	append func(ctx context.Context, s *Store, tx Tx, stream string, expected int64, events []Event) (int64, error)
	// sequence runs before every read of the log: it gives positions to
	// the committed events that have none yet, where the database's append
	// leaves that to it.
	sequence func(ctx context.Context, s *Store) error
}

// The dialects, with the default table.
var (
	Postgres = Dialect{db: postgres, table: "events"}
	MySQL    = Dialect{db: mysql, table: "events"}
	SQLite   = Dialect{db: sqlite, table: "events"}
)

func (d Dialect) String() string {
	if d.db == nil {
		return "zero Dialect"
	}
	return d.db.sql.Name + ":" + d.table
}

// longestSuffix is the longest suffix the store adds to its table's name.
const longestSuffix = len("_subscriptions")

// WithTable returns d with its events in table, and its other tables named
// after it: table_head, table_streams (PostgreSQL), table_subscriptions,
// table_snapshots, table_migrations. A table name often comes from
// configuration, so a bad one is an error: it must be a plain identifier or
// schema.identifier, letters, digits and underscores, with a table part of
// at most 49 bytes on PostgreSQL and 50 on MySQL.
func (d Dialect) WithTable(table string) (Dialect, error) {
	if d.db == nil {
		return d, errZeroDialect
	}
	if err := d.db.sql.CheckTable(table, longestSuffix); err != nil {
		return d, fmt.Errorf("eventstore: table name: %w", err)
	}
	d.table = table
	return d, nil
}

// Database returns the name of the dialect's database, as messages give
// it: "PostgreSQL", "MySQL" or "SQLite".
func (d Dialect) Database() string {
	if d.db == nil {
		return ""
	}
	return d.db.sql.Name
}

// Table returns the name of the table of events, which the store's other
// tables, and those of packages that build on the store, are named after.
func (d Dialect) Table() string { return d.table }

var errZeroDialect = errors.New("eventstore: zero Dialect; use eventstore.Postgres, MySQL or SQLite")

// q rebinds a query written with ? placeholders and {t} for the table.
func (d Dialect) q(query string) string {
	return d.db.sql.Rebind(strings.ReplaceAll(query, "{t}", d.table))
}

// Store is an event store in one database: streams of events appended with
// optimistic concurrency, one log of them all in commit order, durable
// subscriptions to that log, and snapshots. Make one with [New] per table
// and share it: its subscriptions wake the moment its Append writes. It is
// safe for concurrent use.
type Store struct {
	db      *sql.DB
	d       Dialect
	wakeups wait.Wakeups
}

// New returns the store of d's tables in db. It checks nothing and starts
// nothing: call [Store.Migrate] once at start-up. It panics if db is nil or
// d is the zero Dialect.
func New(db *sql.DB, d Dialect) *Store {
	if db == nil {
		panic("eventstore: New: nil db")
	}
	if d.db == nil {
		panic("eventstore: New: " + errZeroDialect.Error()[len("eventstore: "):])
	}
	return &Store{db: db, d: d}
}

// DB returns the database the store is in.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.d }

// Tx is what Append writes through: a *sql.Tx, or a *sql.Conn inside a
// transaction it began.
type Tx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ErrVersionConflict is matched, with errors.Is, by the [*ConflictError] of
// Append when the stream's version is not the one expected.
var ErrVersionConflict = errors.New("eventstore: version conflict")

// ConflictError is returned by Append when the stream does not hold what
// the expected version says: another writer appended first. The caller
// rolls back, reads the stream again and decides anew.
type ConflictError struct {
	Stream   string
	Expected int64 // as given to Append
	Actual   int64 // the stream's version: how many events it holds
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: version conflict on stream %q: expected %s, the stream is at version %d",
		e.Stream, expectation(e.Expected), e.Actual)
}

// Is makes errors.Is(err, ErrVersionConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrVersionConflict }

func expectation(v int64) string {
	switch v {
	case NoStream:
		return "no stream"
	case Any:
		return "any version"
	case StreamExists:
		return "an existing stream"
	}
	return fmt.Sprintf("version %d", v)
}

// Errors of Append for input it refuses before writing anything.
var (
	ErrNoStream    = errors.New("eventstore: no stream name")
	ErrNoType      = errors.New("eventstore: event has no type")
	ErrTooLong     = errors.New("eventstore: field too long")
	ErrBadExpected = errors.New("eventstore: bad expected version")
	ErrNilTx       = errors.New("eventstore: Append: nil transaction")
)

// check reports whether a stream at version actual meets the expected
// version, or why the expectation itself is wrong.
func check(expected, actual int64) (bool, error) {
	switch {
	case expected == Any:
		return true, nil
	case expected == StreamExists:
		return actual > 0, nil
	case expected < StreamExists:
		return false, fmt.Errorf("%w: %d (want NoStream, Any, StreamExists or a version >= 1)", ErrBadExpected, expected)
	}
	return actual == expected, nil
}

// Append appends events to stream through tx, the caller's transaction: the
// events exist if and only if tx commits. The stream must be at
// expectedVersion ([NoStream], [Any], [StreamExists], or the number of events
// it holds), or Append returns a [*ConflictError] with the stream's actual
// version, and the caller rolls back. It returns the stream's new version.
//
// Append sets the ID (when empty), Stream and Version of each of events,
// and its Position on MySQL and SQLite, so that a caller that passes a
// slice (events...) can announce them, in the same transaction, through an
// outbox. It checks every event before writing any.
//
// Appends to one stream commit one at a time: an Append holds the lock of
// its stream (on MySQL and SQLite, of the whole store: see the package
// doc) from its first statement to the end of tx. Keep transactions that
// append short. An Append of no events checks the expected version and
// writes nothing.
func (s *Store) Append(ctx context.Context, tx Tx, stream string, expectedVersion int64, events ...Event) (int64, error) {
	if v := reflect.ValueOf(tx); tx == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return 0, ErrNilTx
	}
	if err := checkStream(stream); err != nil {
		return 0, err
	}
	if _, err := check(expectedVersion, 0); err != nil {
		return 0, err
	}
	for i := range events {
		if err := checkEvent(&events[i]); err != nil {
			return 0, fmt.Errorf("eventstore: event %d: %w", i, err)
		}
	}
	actual, err := s.d.db.append(ctx, s, tx, stream, expectedVersion, events)
	if err != nil {
		var conflict *ConflictError
		if errors.As(err, &conflict) {
			return 0, err
		}
		return 0, fmt.Errorf("eventstore: append: %w", err)
	}
	n := len(events)
	if n == 0 {
		return actual, nil
	}
	s.wakeups.Wake()
	return actual + int64(n), nil
}

func checkStream(stream string) error {
	switch {
	case stream == "":
		return ErrNoStream
	case len(stream) > maxStream:
		return fmt.Errorf("%w: stream name of %d bytes, the limit is %d", ErrTooLong, len(stream), maxStream)
	}
	return nil
}

func checkEvent(e *Event) error {
	switch {
	case e.Type == "":
		return ErrNoType
	case len(e.Type) > maxType:
		return fmt.Errorf("%w: type of %d bytes, the limit is %d", ErrTooLong, len(e.Type), maxType)
	case len(e.ID) > maxID:
		return fmt.Errorf("%w: ID of %d bytes, the limit is %d", ErrTooLong, len(e.ID), maxID)
	case len(e.CausationID) > maxID:
		return fmt.Errorf("%w: causation ID of %d bytes, the limit is %d", ErrTooLong, len(e.CausationID), maxID)
	case len(e.CorrelationID) > maxID:
		return fmt.Errorf("%w: correlation ID of %d bytes, the limit is %d", ErrTooLong, len(e.CorrelationID), maxID)
	}
	return nil
}

const columns = "stream, version, event_id, event_type, payload, metadata, causation_id, correlation_id, recorded_at"

// insert writes events through tx, in statements of up to 500 rows: the
// columns every event has, after extraColumns (such as "position, "),
// whose values extra gives. The first statement starts with with, a WITH
// clause whose arguments are withArgs.
func (s *Store) insert(ctx context.Context, tx Tx, extraColumns string, events []Event, extra func(*Event) []any, with string, withArgs ...any) error {
	marks := "?, ?, ?, ?, ?, ?, ?, ?, "
	if extra != nil {
		marks += "?, "
	}
	row := "(" + marks + s.d.db.sql.Now + ")"
	for start := 0; start < len(events); start += 500 {
		chunk := events[start:min(start+500, len(events))]
		var b strings.Builder
		args := make([]any, 0, 9*len(chunk)+len(withArgs))
		if start == 0 {
			b.WriteString(with)
			args = append(args, withArgs...)
		}
		b.WriteString("INSERT INTO " + s.d.table + " (" + extraColumns + columns + ") VALUES ")
		for i := range chunk {
			e := &chunk[i]
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
			var metadata any
			if len(e.Metadata) > 0 {
				m, err := json.Marshal(e.Metadata)
				if err != nil {
					return err
				}
				metadata = string(m)
			}
			payload := e.Payload
			if payload == nil {
				payload = []byte{}
			}
			if extra != nil {
				args = append(args, extra(e)...)
			}
			args = append(args, e.Stream, e.Version, e.ID, e.Type, payload, metadata, e.CausationID, e.CorrelationID)
		}
		if _, err := tx.ExecContext(ctx, s.d.db.sql.Rebind(b.String()), args...); err != nil {
			return err
		}
	}
	return nil
}

// queryInt runs a query of one integer.
func queryInt(ctx context.Context, q sqlstore.Querier, query string, args ...any) (int64, error) {
	v, err := sqlstore.Column[int64](ctx, q, query, args...)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("%d rows, want 1: %s", len(v), query)
	}
	return v[0], nil
}
