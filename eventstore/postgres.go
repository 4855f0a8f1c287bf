package eventstore

import (
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// postgres is the store on PostgreSQL: appends lock their stream's row
// only, and commit side by side; readers of the log give positions to the
// events that have committed (see sequencedAppend).
var postgres = &database{
	sql: sqlstore.Postgres,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		position BIGINT NULL,
		stream VARCHAR(255) NOT NULL,
		version BIGINT NOT NULL,
		event_id VARCHAR(64) NOT NULL,
		event_type VARCHAR(255) NOT NULL,
		payload BYTEA NOT NULL,
		metadata TEXT NULL,
		causation_id VARCHAR(64) NOT NULL,
		correlation_id VARCHAR(64) NOT NULL,
		recorded_at BIGINT NOT NULL,
		CONSTRAINT {n}_stream UNIQUE (stream, version),
		CONSTRAINT {n}_position UNIQUE (position),
		CONSTRAINT {n}_event_id UNIQUE (event_id))`,
		`CREATE INDEX IF NOT EXISTS {n}_unsequenced ON {t} (id) WHERE position IS NULL`,
		`CREATE TABLE IF NOT EXISTS {t}_streams (
		stream VARCHAR(255) PRIMARY KEY,
		version BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS {t}_head (
		id SMALLINT PRIMARY KEY,
		position BIGINT NOT NULL)`,
		`INSERT INTO {t}_head (id, position) VALUES (1, 0) ON CONFLICT DO NOTHING`,
		`CREATE TABLE IF NOT EXISTS {t}_subscriptions (
		name VARCHAR(255) PRIMARY KEY,
		position BIGINT NOT NULL DEFAULT 0,
		owner VARCHAR(80) NULL,
		lease_until BIGINT NOT NULL DEFAULT 0,
		updated_at BIGINT NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS {t}_snapshots (
		stream VARCHAR(255) PRIMARY KEY,
		version BIGINT NOT NULL,
		state BYTEA NOT NULL,
		taken_at BIGINT NOT NULL)`,
	}}},
	append:   sequencedAppend,
	sequence: sequencePostgres,
}
