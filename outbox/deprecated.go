package outbox

import (
	"context"
	"database/sql"
)

// The functions of the outbox before it was a value, kept so that code
// written against them goes on working. Relays made by NewRelay are not
// woken by these Enqueue calls: they find the messages when they poll.

// Enqueue writes msgs into d's outbox through tx; see [Outbox.Enqueue].
//
// Deprecated: use [Outbox.Enqueue], whose relays wake the moment it writes.
func Enqueue(ctx context.Context, tx Execer, d Dialect, msgs ...Message) error {
	return enqueue(ctx, tx, d, msgs)
}

// NewRelay returns a Relay that publishes the messages of d's outbox in db
// through p; see [Outbox.NewRelay].
//
// Deprecated: use [New] and [Outbox.NewRelay].
func NewRelay(db *sql.DB, d Dialect, p Publisher, opts ...Option) *Relay {
	return New(db, d).NewRelay(p, opts...)
}

// Migrate creates d's tables in db, or brings them up to date; see
// [Outbox.Migrate].
//
// Deprecated: use [New] and [Outbox.Migrate].
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	return migrate(ctx, db, d)
}

// ListDead returns up to limit dead messages of d's outbox; see
// [Outbox.ListDead].
//
// Deprecated: use [New] and [Outbox.ListDead].
func ListDead(ctx context.Context, db *sql.DB, d Dialect, limit int) ([]DeadMessage, error) {
	return New(db, d).ListDead(ctx, limit)
}

// Retry makes dead messages of d's outbox pending again; see
// [Outbox.Retry].
//
// Deprecated: use [New] and [Outbox.Retry].
func Retry(ctx context.Context, db *sql.DB, d Dialect, ids ...string) (int64, error) {
	return New(db, d).Retry(ctx, ids...)
}

// Discard deletes messages of d's outbox that are not yet published; see
// [Outbox.Discard].
//
// Deprecated: use [New] and [Outbox.Discard].
func Discard(ctx context.Context, db *sql.DB, d Dialect, ids ...string) (int64, error) {
	return New(db, d).Discard(ctx, ids...)
}

// ReadBacklog returns the backlog of d's outbox; see [Outbox.Backlog].
//
// Deprecated: use [New] and [Outbox.Backlog].
func ReadBacklog(ctx context.Context, db *sql.DB, d Dialect) (Backlog, error) {
	return New(db, d).Backlog(ctx)
}

// NewInbox returns the inbox of consumer in d's database; see
// [Outbox.NewInbox].
//
// Deprecated: use [New] and [Outbox.NewInbox].
func NewInbox(d Dialect, consumer string) *Inbox {
	return newInbox(d, consumer)
}
