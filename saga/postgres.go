package saga

import (
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// postgres is the saga log and barrier on PostgreSQL.
var postgres = &database{
	sql: sqlstore.Postgres,
	schema: []string{
		`CREATE TABLE IF NOT EXISTS {p}_instances (
		id VARCHAR(128) PRIMARY KEY,
		name VARCHAR(128) NOT NULL,
		version INTEGER NOT NULL,
		status SMALLINT NOT NULL,
		resume_status SMALLINT NOT NULL DEFAULT 0,
		input BYTEA NULL,
		deadline_at BIGINT NOT NULL DEFAULT 0,
		failed_step VARCHAR(64) NOT NULL DEFAULT '',
		cause TEXT NULL,
		owner VARCHAR(80) NULL,
		lease_until BIGINT NOT NULL DEFAULT 0,
		next_attempt_at BIGINT NOT NULL DEFAULT 0,
		attempts INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NULL,
		note TEXT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_due ON {p}_instances (next_attempt_at) WHERE status IN (1, 2, 3)`,
		`CREATE INDEX IF NOT EXISTS {n}_instances_stuck ON {p}_instances (updated_at) WHERE status = 6`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
		saga_id VARCHAR(128) NOT NULL,
		step VARCHAR(64) NOT NULL,
		phase SMALLINT NOT NULL,
		status SMALLINT NOT NULL,
		output BYTEA NULL,
		error TEXT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (saga_id, step, phase))`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
		gid VARCHAR(128) NOT NULL,
		branch VARCHAR(64) NOT NULL,
		op VARCHAR(16) NOT NULL,
		reason VARCHAR(16) NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (gid, branch, op))`,
		`CREATE INDEX IF NOT EXISTS {n}_barrier_created ON {p}_barrier (created_at)`,
	},
	insertIgnore: func(table string, columns []string, values string) string {
		return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES (" + values + ") ON CONFLICT DO NOTHING"
	},
	// Parameters in a VALUES list that no column types are cast.
	stepRow: "(CAST(? AS VARCHAR(128)), CAST(? AS VARCHAR(64)), CAST(? AS SMALLINT), CAST(? AS SMALLINT), CAST(? AS BYTEA), CAST(? AS TEXT), " +
		sqlstore.Postgres.Now + ")",
	// The upsert selects its rows from the CTE's: none unless inst changed
	// the instance's row.
	write: func(inst, table, values string) []string {
		return []string{"WITH inst AS (" + inst + " RETURNING id) INSERT INTO " + table + " (" + strings.Join(stepColumns, ", ") + ")" +
			" SELECT v.saga_id, v.step, v.phase, v.status, v.output, v.error, v.updated_at FROM inst CROSS JOIN (VALUES " + values +
			") AS v (saga_id, step, phase, status, output, error, updated_at)" +
			" ON CONFLICT (saga_id, step, phase) DO UPDATE SET status = excluded.status, output = excluded.output," +
			" error = excluded.error, updated_at = excluded.updated_at"}
	},
}
