package outbox

import (
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// postgres is the outbox on PostgreSQL. A message of a lane is published
// once every transaction older than its own has ended (the snapshot's xmin),
// so that no message of a lower id can still appear; its transaction's ID
// is kept with it for that.
var postgres = &database{
	sql: sqlstore.Postgres,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		message_id VARCHAR(64) NOT NULL UNIQUE,
		topic VARCHAR(255) NOT NULL,
		msg_key VARCHAR(255) NOT NULL DEFAULT '',
		lane SMALLINT NULL,
		payload BYTEA NOT NULL,
		headers TEXT NULL,
		created_at BIGINT NOT NULL,
		available_at BIGINT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NULL,
		locked_by VARCHAR(80) NULL,
		locked_until BIGINT NULL,
		status SMALLINT NOT NULL DEFAULT 0,
		published_at BIGINT NULL,
		txid XID8 NOT NULL DEFAULT pg_current_xact_id())`,
		`CREATE INDEX IF NOT EXISTS {n}_pending ON {t} (id) WHERE status = 0`,
		`CREATE INDEX IF NOT EXISTS {n}_lane ON {t} (lane, id) WHERE status <> 1 AND lane IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS {n}_published ON {t} (published_at) WHERE status = 1`,
		`CREATE TABLE IF NOT EXISTS {t}_lanes (
		lane SMALLINT PRIMARY KEY,
		owner VARCHAR(80) NULL,
		lease_until BIGINT NOT NULL DEFAULT 0,
		blocked_until BIGINT NOT NULL DEFAULT 0)`,
		`INSERT INTO {t}_lanes (lane) SELECT g FROM generate_series(0, 63) AS g ON CONFLICT DO NOTHING`,
		`CREATE TABLE IF NOT EXISTS {t}_inbox (
		consumer VARCHAR(128) NOT NULL,
		message_id VARCHAR(64) NOT NULL,
		received_at BIGINT NOT NULL,
		PRIMARY KEY (consumer, message_id))`,
		`CREATE INDEX IF NOT EXISTS {n}_inbox_received ON {t}_inbox (received_at)`,
	}}, {Version: 2, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t}_relays (
		relay VARCHAR(80) PRIMARY KEY,
		seen_until BIGINT NOT NULL)`,
	}}},
	laneGuard: func(time.Duration) (string, []any) {
		return "txid < pg_snapshot_xmin(pg_current_snapshot())", nil
	},
	notify:  func(channel string) (string, error) { return "SELECT pg_notify('" + channel + "', '')", nil },
	writers: manyWriters,
}
