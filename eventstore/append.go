package eventstore

import (
	"context"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// How the databases append. With lockedAppend (MySQL, SQLite) an append
// takes the store's head first and holds it to the end of its transaction:
// appends commit one at a time, and each gets its positions at once, in
// commit order. With sequencedAppend (PostgreSQL) an append locks only its
// stream's row, and writes its events without positions; appends to
// different streams commit side by side, and readers of the log give
// positions, in one short transaction under the head's lock, to the events
// that have committed by then (sequence), so an event that commits late
// gets a later position, and no reader passes over it; a read of the log
// shows every event committed before it began.

// lockedAppend returns the append that advances the head by the number of
// events through advance (which returns the new head and keeps its row
// locked to the end of tx), reads the stream's version with a query ending
// in latest (so that it sees the latest commit), and writes the events
// with their positions.
func lockedAppend(advance func(ctx context.Context, tx Tx, table string, n int) (int64, error), latest string) func(context.Context, *Store, Tx, string, int64, []Event) (int64, error) {
	return func(ctx context.Context, s *Store, tx Tx, stream string, expected int64, events []Event) (int64, error) {
		d := s.d
		n := len(events)
		var head int64
		if n > 0 {
			var err error
			if head, err = advance(ctx, tx, d.table, n); err != nil {
				return 0, err
			}
		}
		actual, err := queryInt(ctx, tx, d.q("SELECT COALESCE(MAX(version), 0) FROM {t} WHERE stream = ?"+latest), stream)
		if err != nil {
			return 0, err
		}
		if ok, _ := check(expected, actual); !ok {
			if n > 0 { // give the positions back, for a caller that commits anyway
				if _, err := tx.ExecContext(ctx, d.q("UPDATE {t}_head SET position = position - ? WHERE id = 1"), n); err != nil {
					return 0, err
				}
			}
			return 0, &ConflictError{Stream: stream, Expected: expected, Actual: actual}
		}
		first := head - int64(n) + 1
		number(events, stream, actual)
		for i := range events {
			events[i].Position = first + int64(i)
		}
		return actual, s.insert(ctx, tx, "position, ", events, func(e *Event) []any { return []any{e.Position} }, "")
	}
}

// number gives events their stream, versions after actual, and IDs.
func number(events []Event, stream string, actual int64) {
	for i := range events {
		e := &events[i]
		if e.ID == "" {
			e.ID = sqlstore.UUIDv7()
		}
		e.Stream, e.Version = stream, actual+int64(i)+1
	}
}

// sequencedAppend locks the stream's row (creating it for a new stream),
// which returns the stream's version, and writes the events without
// positions, moving the stream's version on in the same statement.
func sequencedAppend(ctx context.Context, s *Store, tx Tx, stream string, expected int64, events []Event) (int64, error) {
	d := s.d
	actual, err := queryInt(ctx, tx, d.q(`INSERT INTO {t}_streams (stream, version) VALUES (?, 0)
		ON CONFLICT (stream) DO UPDATE SET version = {t}_streams.version RETURNING version`), stream)
	if err != nil {
		return 0, err
	}
	if ok, _ := check(expected, actual); !ok {
		return 0, &ConflictError{Stream: stream, Expected: expected, Actual: actual}
	}
	if len(events) == 0 {
		return actual, nil
	}
	number(events, stream, actual)
	with := "WITH moved AS (UPDATE " + d.table + "_streams SET version = ? WHERE stream = ?) "
	return actual, s.insert(ctx, tx, "", events, nil, with, actual+int64(len(events)), stream)
}

// sequenceNothing is the sequence of the databases whose appends give
// positions themselves.
func sequenceNothing(context.Context, *Store) error { return nil }

// maxSequence is how many events one sequencing gives positions to.
const maxSequence = 10_000

// sequencePostgres gives positions to the committed events that have none,
// in the order they were written, after the head, under the head's lock.
func sequencePostgres(ctx context.Context, s *Store) error {
	d := s.d
	pending, err := queryInt(ctx, s.db, d.q("SELECT COUNT(*) FROM (SELECT 1 FROM {t} WHERE position IS NULL LIMIT 1) AS p"))
	if err != nil || pending == 0 {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	// Waiting for a reader that is at it, rather than skipping, makes every
	// event committed before this call visible to the read that follows.
	head, err := queryInt(ctx, tx, d.q("SELECT position FROM {t}_head WHERE id = 1 FOR UPDATE"))
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, d.q(`WITH next AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM {t}
		WHERE position IS NULL ORDER BY id LIMIT ?)
		UPDATE {t} SET position = ? + next.n FROM next WHERE {t}.id = next.id`), maxSequence, head)
	if err != nil {
		return err
	}
	k, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, d.q("UPDATE {t}_head SET position = position + ? WHERE id = 1"), k); err != nil {
		return err
	}
	return tx.Commit()
}
