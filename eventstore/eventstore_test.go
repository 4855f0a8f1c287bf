package eventstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
)

func dialectNamed(name string) eventstore.Dialect {
	return map[string]eventstore.Dialect{"postgres": eventstore.Postgres, "mysql": eventstore.MySQL, "sqlite": eventstore.SQLite}[name]
}

// forEachDatabase runs f on a migrated store in a new database of each
// kind, in parallel.
func forEachDatabase(t *testing.T, f func(t *testing.T, db *servicetest.DB, s *eventstore.Store)) {
	t.Parallel()
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			db := database.Open(t)
			s := eventstore.New(db.DB, dialectNamed(db.Dialect))
			require.NoError(t, s.Migrate(context.Background()))
			f(t, db, s)
		})
	}
}

// appendTx appends events in a transaction of its own.
func appendTx(ctx context.Context, s *eventstore.Store, stream string, expected int64, events ...eventstore.Event) (int64, error) {
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	v, err := s.Append(ctx, tx, stream, expected, events...)
	if err != nil {
		return v, errors.Join(err, tx.Rollback())
	}
	return v, tx.Commit()
}

func ev(typ, payload string) eventstore.Event {
	return eventstore.Event{Type: typ, Payload: []byte(payload)}
}

func TestAppendAndRead(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		first := eventstore.Event{Type: "Opened", Payload: []byte(`{"owner":"ann"}`),
			Metadata: map[string]string{"user": "ann"}, CausationID: "cmd-1", CorrelationID: "conv-1"}
		v, err := appendTx(ctx, s, "account-1", eventstore.NoStream, first, ev("Deposited", "10"))
		require.NoError(t, err)
		assert.Equal(t, int64(2), v)
		v, err = appendTx(ctx, s, "account-2", eventstore.Any, ev("Opened", "{}"))
		require.NoError(t, err)
		assert.Equal(t, int64(1), v)
		v, err = appendTx(ctx, s, "account-1", 2, ev("Withdrawn", "3"))
		require.NoError(t, err)
		assert.Equal(t, int64(3), v)
		v, err = appendTx(ctx, s, "account-1", eventstore.StreamExists, ev("Deposited", "5"))
		require.NoError(t, err)
		assert.Equal(t, int64(4), v)

		events, err := s.ReadStream(ctx, "account-1", 1, 10)
		require.NoError(t, err)
		require.Len(t, events, 4)
		var types []string
		for i, e := range events {
			types = append(types, e.Type)
			assert.Equal(t, int64(i+1), e.Version)
			assert.Equal(t, "account-1", e.Stream)
			assert.Len(t, e.ID, 36, "a UUIDv7")
			assert.WithinDuration(t, time.Now(), e.Time, time.Minute, "the database's clock")
		}
		assert.Equal(t, []string{"Opened", "Deposited", "Withdrawn", "Deposited"}, types)
		assert.Equal(t, map[string]string{"user": "ann"}, events[0].Metadata)
		assert.Equal(t, "cmd-1", events[0].CausationID)
		assert.Equal(t, "conv-1", events[0].CorrelationID)
		assert.JSONEq(t, `{"owner":"ann"}`, string(events[0].Payload))
		assert.Nil(t, events[1].Metadata)

		tail, err := s.ReadStream(ctx, "account-1", 3, 1)
		require.NoError(t, err)
		require.Len(t, tail, 1)
		assert.Equal(t, "Withdrawn", tail[0].Type)

		all, err := s.ReadAll(ctx, 1, 100)
		require.NoError(t, err)
		var order []string
		for i, e := range all {
			assert.Equal(t, int64(i+1), e.Position, "positions without gaps")
			order = append(order, fmt.Sprintf("%s/%d", e.Stream, e.Version))
		}
		assert.Equal(t, []string{"account-1/1", "account-1/2", "account-2/1", "account-1/3", "account-1/4"}, order)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(5), head)
		none, err := s.ReadStream(ctx, "no-such-stream", 1, 10)
		require.NoError(t, err)
		assert.Empty(t, none)
		version, err := s.Version(ctx, "account-1")
		require.NoError(t, err)
		assert.Equal(t, int64(4), version)
	})
}

// Each expectation that a stream does not meet is a conflict carrying the
// stream's actual version, and writes nothing, even if the caller commits.
func TestVersionConflicts(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		_, err := appendTx(ctx, s, "cart-1", eventstore.NoStream, ev("Created", ""), ev("ItemAdded", "a"))
		require.NoError(t, err)
		tests := []struct {
			stream   string
			expected int64
			actual   int64
			message  string
		}{
			{"cart-1", eventstore.NoStream, 2, `eventstore: version conflict on stream "cart-1": expected no stream, the stream is at version 2`},
			{"cart-1", 1, 2, `eventstore: version conflict on stream "cart-1": expected version 1, the stream is at version 2`},
			{"cart-1", 3, 2, `eventstore: version conflict on stream "cart-1": expected version 3, the stream is at version 2`},
			{"cart-2", eventstore.StreamExists, 0, `eventstore: version conflict on stream "cart-2": expected an existing stream, the stream is at version 0`},
			{"cart-2", 1, 0, `eventstore: version conflict on stream "cart-2": expected version 1, the stream is at version 0`},
		}
		for _, tt := range tests {
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = s.Append(ctx, tx, tt.stream, tt.expected, ev("X", ""))
			require.NoError(t, tx.Commit(), "a caller that commits anyway")
			var conflict *eventstore.ConflictError
			require.ErrorAs(t, err, &conflict, "%s expecting %d", tt.stream, tt.expected)
			assert.ErrorIs(t, err, eventstore.ErrVersionConflict)
			assert.Equal(t, tt.actual, conflict.Actual)
			assert.Equal(t, tt.expected, conflict.Expected)
			assert.EqualError(t, err, tt.message)
		}
		v, err := appendTx(ctx, s, "cart-2", eventstore.NoStream, ev("Created", ""))
		require.NoError(t, err)
		assert.Equal(t, int64(1), v)
		all, err := s.ReadAll(ctx, 1, 100)
		require.NoError(t, err)
		require.Len(t, all, 3, "the conflicts wrote nothing")
		assert.Equal(t, int64(3), all[2].Position, "and took no position")

		v, err = appendTx(ctx, s, "cart-1", 2)
		require.NoError(t, err, "an append of nothing checks the version")
		assert.Equal(t, int64(2), v)
		_, err = appendTx(ctx, s, "cart-1", 1)
		assert.ErrorIs(t, err, eventstore.ErrVersionConflict)
	})
}

func TestAppendRefusesBadInput(t *testing.T) {
	db := servicetest.SQLite(t)
	s := eventstore.New(db.DB, eventstore.SQLite)
	ctx := context.Background()
	require.NoError(t, s.Migrate(ctx))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer tx.Rollback() //nolint:errcheck // the test writes nothing

	long := strings.Repeat("x", 256)
	tests := []struct {
		stream   string
		expected int64
		events   []eventstore.Event
		err      error
		message  string
	}{
		{"", eventstore.Any, []eventstore.Event{ev("A", "")}, eventstore.ErrNoStream, "eventstore: no stream name"},
		{long, eventstore.Any, []eventstore.Event{ev("A", "")}, eventstore.ErrTooLong, "stream name of 256 bytes, the limit is 255"},
		{"s", -3, []eventstore.Event{ev("A", "")}, eventstore.ErrBadExpected, "bad expected version: -3 (want NoStream, Any, StreamExists or a version >= 1)"},
		{"s", eventstore.Any, []eventstore.Event{ev("A", ""), ev("", "")}, eventstore.ErrNoType, "eventstore: event 1: eventstore: event has no type"},
		{"s", eventstore.Any, []eventstore.Event{{Type: long}}, eventstore.ErrTooLong, "event 0: eventstore: field too long: type of 256 bytes"},
		{"s", eventstore.Any, []eventstore.Event{{Type: "A", ID: long}}, eventstore.ErrTooLong, "ID of 256 bytes, the limit is 64"},
		{"s", eventstore.Any, []eventstore.Event{{Type: "A", CausationID: long}}, eventstore.ErrTooLong, "causation ID of 256 bytes"},
		{"s", eventstore.Any, []eventstore.Event{{Type: "A", CorrelationID: long}}, eventstore.ErrTooLong, "correlation ID of 256 bytes"},
	}
	for _, tt := range tests {
		_, err := s.Append(ctx, tx, tt.stream, tt.expected, tt.events...)
		assert.ErrorIs(t, err, tt.err, "%q %d", tt.stream, tt.expected)
		assert.ErrorContains(t, err, tt.message)
	}
	_, err = s.Append(ctx, nil, "s", eventstore.Any, ev("A", ""))
	assert.ErrorIs(t, err, eventstore.ErrNilTx)
	var nilTx *sql.Tx
	_, err = s.Append(ctx, nilTx, "s", eventstore.Any, ev("A", ""))
	assert.ErrorIs(t, err, eventstore.ErrNilTx)
	_, err = s.ReadAll(ctx, 1, 0)
	assert.EqualError(t, err, "eventstore: ReadAll: limit 0, want >= 1")
	_, err = s.ReadStream(ctx, "s", 1, 0)
	assert.EqualError(t, err, "eventstore: ReadStream: limit 0, want >= 1")
	_, err = eventstore.SQLite.WithTable("bad name")
	assert.ErrorContains(t, err, "eventstore: table name")
	_, err = eventstore.Postgres.WithTable(strings.Repeat("t", 50))
	assert.ErrorContains(t, err, "50 bytes, at most 49 on PostgreSQL")
	assert.PanicsWithValue(t, "eventstore: New: nil db", func() { eventstore.New(nil, eventstore.SQLite) })
	assert.PanicsWithValue(t, "eventstore: New: zero Dialect; use eventstore.Postgres, MySQL or SQLite",
		func() { eventstore.New(db.DB, eventstore.Dialect{}) })
}

// A dialect that does not match the server says so.
func TestMigrateChecksTheServer(t *testing.T) {
	db := servicetest.SQLite(t)
	err := eventstore.New(db.DB, eventstore.Postgres).Migrate(context.Background())
	assert.ErrorContains(t, err, "eventstore: Migrate: dialect PostgreSQL but the server is SQLite")
	s := eventstore.New(db.DB, eventstore.SQLite)
	require.NoError(t, s.Migrate(context.Background()))
	require.NoError(t, s.Migrate(context.Background()), "again: nothing to do")
}

// Writers that race for each version of one stream: exactly one wins each
// version, and the losers learn the version that won.
func TestConcurrentAppendsOneWinnerPerVersion(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db *servicetest.DB, s *eventstore.Store) {
		ctx := context.Background()
		const writers, versions = 4, 15
		var (
			mu      sync.Mutex
			winners = map[int64]string{}
			wg      sync.WaitGroup
		)
		for w := range writers {
			wg.Go(func() {
				for {
					v, err := s.Version(ctx, "race")
					if !assert.NoError(t, err) || v >= versions {
						return
					}
					name := fmt.Sprint("w", w)
					got, err := appendTx(ctx, s, "race", v, ev("Won", name))
					var conflict *eventstore.ConflictError
					if errors.As(err, &conflict) {
						assert.Greater(t, conflict.Actual, v, "the loser sees the winner's version")
						continue
					}
					if !assert.NoError(t, err) {
						return
					}
					mu.Lock()
					if prev, ok := winners[got]; ok {
						t.Errorf("version %d won by %s and %s", got, prev, name)
					}
					winners[got] = name
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		events, err := s.ReadStream(ctx, "race", 1, 100)
		require.NoError(t, err)
		require.Len(t, events, versions)
		require.Len(t, winners, versions, "one win per version")
		for i, e := range events {
			assert.Equal(t, int64(i+1), e.Version)
			assert.Equal(t, winners[e.Version], string(e.Payload), "version %d holds its winner's event", e.Version)
		}
	})
}
