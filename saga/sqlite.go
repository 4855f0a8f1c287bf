package saga

import "github.com/resilience-go/resilience/internal/sqlstore"

// sqlite is the saga log and barrier on SQLite.
var sqlite = &database{
	sql: sqlstore.SQLite,
	schema: []string{
		`CREATE TABLE IF NOT EXISTS {p}_instances (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		version INTEGER NOT NULL,
		status INTEGER NOT NULL,
		resume_status INTEGER NOT NULL DEFAULT 0,
		input BLOB NULL,
		deadline_at INTEGER NOT NULL DEFAULT 0,
		failed_step TEXT NOT NULL DEFAULT '',
		cause TEXT NULL,
		owner TEXT NULL,
		lease_until INTEGER NOT NULL DEFAULT 0,
		next_attempt_at INTEGER NOT NULL DEFAULT 0,
		attempts INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NULL,
		note TEXT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_due ON {p}_instances (next_attempt_at) WHERE status IN (1, 2, 3)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_stuck ON {p}_instances (updated_at) WHERE status = 6`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
		saga_id TEXT NOT NULL,
		step TEXT NOT NULL,
		phase INTEGER NOT NULL,
		status INTEGER NOT NULL,
		output BLOB NULL,
		error TEXT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (saga_id, step, phase))`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
		gid TEXT NOT NULL,
		branch TEXT NOT NULL,
		op TEXT NOT NULL,
		reason TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (gid, branch, op))`,
		`CREATE INDEX IF NOT EXISTS {n}_barrier_created ON {p}_barrier (created_at)`,
	},
	insertIgnore: sqlstore.SQLite.InsertIgnore,
	stepRow:      "(?, ?, ?, ?, ?, ?, " + sqlstore.SQLite.Now + ")",
	// SQLite's CTEs hold no INSERT or UPDATE.
	write: upsertInTx(sqlstore.SQLite),
}
