package eventstore

import (
	"context"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// sqlite is the store on SQLite, whose writes are serial. An Append starts
// with a write (the head's), so that a transaction that begins with it
// never has to upgrade a read to a write behind another writer.
var sqlite = &database{
	sql: sqlstore.SQLite,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
		position INTEGER PRIMARY KEY,
		stream TEXT NOT NULL,
		version INTEGER NOT NULL,
		event_id TEXT NOT NULL UNIQUE,
		event_type TEXT NOT NULL,
		payload BLOB NOT NULL,
		metadata TEXT NULL,
		causation_id TEXT NOT NULL,
		correlation_id TEXT NOT NULL,
		recorded_at INTEGER NOT NULL,
		UNIQUE (stream, version))`,
		`CREATE TABLE IF NOT EXISTS {t}_head (
		id INTEGER PRIMARY KEY,
		position INTEGER NOT NULL)`,
		`INSERT OR IGNORE INTO {t}_head (id, position) VALUES (1, 0)`,
		`CREATE TABLE IF NOT EXISTS {t}_subscriptions (
		name TEXT PRIMARY KEY,
		position INTEGER NOT NULL DEFAULT 0,
		owner TEXT NULL,
		lease_until INTEGER NOT NULL DEFAULT 0,
		updated_at INTEGER NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS {t}_snapshots (
		stream TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		state BLOB NOT NULL,
		taken_at INTEGER NOT NULL)`,
	}}},
	append: lockedAppend(func(ctx context.Context, tx Tx, table string, n int) (int64, error) {
		return queryInt(ctx, tx, "UPDATE "+table+"_head SET position = position + ? WHERE id = 1 RETURNING position", n)
	}, ""),
	sequence: sequenceNothing,
}
