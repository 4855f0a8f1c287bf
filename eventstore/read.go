package eventstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ReadStream returns up to limit events of stream, from version from
// (counted from 1) on, in version order. A stream that does not exist reads
// as empty.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]Event, error) {
	if err := checkStream(stream); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("eventstore: ReadStream: limit %d, want >= 1", limit)
	}
	events, err := s.read(ctx, s.db, "stream = ? AND version >= ? ORDER BY version", stream, from, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read stream %q: %w", stream, err)
	}
	return events, nil
}

// ReadAll returns up to limit events of every stream, from position from
// (counted from 1) on, in position order, which is the order their
// transactions committed. It never returns an event while one of a lower
// position may still commit: a reader that goes on from the last position
// it read misses nothing. It sees every event committed before it was
// called.
func (s *Store) ReadAll(ctx context.Context, from int64, limit int) ([]Event, error) {
	if limit < 1 {
		return nil, fmt.Errorf("eventstore: ReadAll: limit %d, want >= 1", limit)
	}
	if err := s.d.db.sequence(ctx, s); err != nil {
		return nil, fmt.Errorf("eventstore: read all: sequence: %w", err)
	}
	events, err := s.read(ctx, s.db, "position >= ? ORDER BY position", from, limit)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read all: %w", err)
	}
	return events, nil
}

// read reads the events that where selects, in its order, up to the limit
// that ends args.
func (s *Store) read(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, where string, args ...any) ([]Event, error) {
	rows, err := q.QueryContext(ctx, s.d.q("SELECT COALESCE(position, 0), "+columns+" FROM {t} WHERE "+where+" LIMIT ?"), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var (
			e        Event
			metadata sql.NullString
			at       int64
		)
		if err := rows.Scan(&e.Position, &e.Stream, &e.Version, &e.ID, &e.Type, &e.Payload, &metadata,
			&e.CausationID, &e.CorrelationID, &at); err != nil {
			return nil, err
		}
		if metadata.Valid {
			if err := json.Unmarshal([]byte(metadata.String), &e.Metadata); err != nil {
				return nil, fmt.Errorf("event %d: metadata: %w", e.Position, err)
			}
		}
		e.Time = time.UnixMicro(at)
		events = append(events, e)
	}
	return events, rows.Err()
}

// Version returns the version of stream: how many events it holds.
func (s *Store) Version(ctx context.Context, stream string) (int64, error) {
	v, err := queryInt(ctx, s.db, s.d.q("SELECT COALESCE(MAX(version), 0) FROM {t} WHERE stream = ?"), stream)
	if err != nil {
		return 0, fmt.Errorf("eventstore: version of %q: %w", stream, err)
	}
	return v, nil
}

// Head returns the position of the last event committed to the store, or 0
// for an empty store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := s.d.db.sequence(ctx, s); err != nil {
		return 0, fmt.Errorf("eventstore: head: sequence: %w", err)
	}
	v, err := queryInt(ctx, s.db, s.d.q("SELECT COALESCE(MAX(position), 0) FROM {t}"))
	if err != nil {
		return 0, fmt.Errorf("eventstore: head: %w", err)
	}
	return v, nil
}

// readBatch is how many events Fold reads at a time.
const readBatch = 1000

// Fold applies the events of stream after version from, in order, to a,
// and returns the result and the version of the last event applied (from,
// if there is none). With a snapshot, a is the snapshot's state and from
// its version; without one, see [Load].
func Fold[A any](ctx context.Context, s *Store, stream string, a A, from int64, apply func(A, Event) A) (A, int64, error) {
	version := from
	for {
		events, err := s.ReadStream(ctx, stream, version+1, readBatch)
		if err != nil {
			return a, version, err
		}
		for _, e := range events {
			a = apply(a, e)
			version = e.Version
		}
		if len(events) < readBatch {
			return a, version, nil
		}
	}
}

// Load applies every event of stream, in order, to the zero A, and returns
// the result and the stream's version: an aggregate, rebuilt from its
// events. With snapshots, load the snapshot and [Fold] the events after it.
func Load[A any](ctx context.Context, s *Store, stream string, apply func(A, Event) A) (A, int64, error) {
	var zero A
	return Fold(ctx, s, stream, zero, 0, apply)
}

// Snapshot is the state of a stream's aggregate at a version, encoded by
// the application.
type Snapshot struct {
	Stream  string
	Version int64
	State   []byte
	Time    time.Time // when it was saved, on the database's clock
}

// ErrNoSnapshot is returned by LoadSnapshot for a stream that has none.
var ErrNoSnapshot = errors.New("eventstore: no snapshot")

// SaveSnapshot keeps state as the snapshot of stream at version, replacing
// the one it had. It keeps the later of two snapshots saved at once: one
// of an earlier version than the snapshot kept changes nothing.
func (s *Store) SaveSnapshot(ctx context.Context, stream string, version int64, state []byte) error {
	if err := checkStream(stream); err != nil {
		return err
	}
	if version < 1 {
		return fmt.Errorf("eventstore: SaveSnapshot: version %d, want >= 1", version)
	}
	if state == nil {
		state = []byte{}
	}
	d, now := s.d, s.d.db.sql.Now
	res, err := s.db.ExecContext(ctx, d.q("UPDATE {t}_snapshots SET version = ?, state = ?, taken_at = "+now+
		" WHERE stream = ? AND version < ?"), version, state, stream, version)
	if err != nil {
		return fmt.Errorf("eventstore: save snapshot of %q: %w", stream, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	insert := d.db.sql.InsertIgnore(d.table+"_snapshots", []string{"stream", "version", "state", "taken_at"}, "?, ?, ?, "+now)
	if _, err := s.db.ExecContext(ctx, insert, stream, version, state); err != nil {
		return fmt.Errorf("eventstore: save snapshot of %q: %w", stream, err)
	}
	return nil
}

// LoadSnapshot returns the snapshot of stream, or [ErrNoSnapshot].
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (Snapshot, error) {
	snap := Snapshot{Stream: stream}
	var at int64
	err := s.db.QueryRowContext(ctx, s.d.q("SELECT version, state, taken_at FROM {t}_snapshots WHERE stream = ?"), stream).
		Scan(&snap.Version, &snap.State, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return snap, ErrNoSnapshot
	}
	if err != nil {
		return snap, fmt.Errorf("eventstore: load snapshot of %q: %w", stream, err)
	}
	snap.Time = time.UnixMicro(at)
	return snap, nil
}
