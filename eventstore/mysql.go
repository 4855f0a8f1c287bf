package eventstore

import (
	"context"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// mysql is the store on MySQL 8 and MariaDB 10.6 or later. The head
// advances through LAST_INSERT_ID(expr), which the server returns with the
// UPDATE, and a stream's version is read with a locking read, which sees
// the latest commit even in REPEATABLE READ. Stream names and IDs are
// VARBINARY: compared byte for byte, where MySQL's default collations would
// take "Ab" and "ab " for the same name.
var mysql = &database{
	sql: sqlstore.MySQL,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
		position BIGINT NOT NULL PRIMARY KEY,
		stream VARBINARY(255) NOT NULL,
		version BIGINT NOT NULL,
		event_id VARBINARY(64) NOT NULL,
		event_type VARCHAR(255) NOT NULL,
		payload LONGBLOB NOT NULL,
		metadata TEXT NULL,
		causation_id VARBINARY(64) NOT NULL,
		correlation_id VARBINARY(64) NOT NULL,
		recorded_at BIGINT NOT NULL,
		UNIQUE KEY {n}_stream (stream, version),
		UNIQUE KEY {n}_event_id (event_id)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {t}_head (
		id SMALLINT NOT NULL PRIMARY KEY,
		position BIGINT NOT NULL
	) ENGINE=InnoDB`,
		`INSERT IGNORE INTO {t}_head (id, position) VALUES (1, 0)`,
		`CREATE TABLE IF NOT EXISTS {t}_subscriptions (
		name VARBINARY(255) NOT NULL PRIMARY KEY,
		position BIGINT NOT NULL DEFAULT 0,
		owner VARBINARY(80) NULL,
		lease_until BIGINT NOT NULL DEFAULT 0,
		updated_at BIGINT NOT NULL DEFAULT 0
	) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {t}_snapshots (
		stream VARBINARY(255) NOT NULL PRIMARY KEY,
		version BIGINT NOT NULL,
		state LONGBLOB NOT NULL,
		taken_at BIGINT NOT NULL
	) ENGINE=InnoDB`,
	}}},
	append: lockedAppend(func(ctx context.Context, tx Tx, table string, n int) (int64, error) {
		res, err := tx.ExecContext(ctx, "UPDATE "+table+"_head SET position = LAST_INSERT_ID(position + ?) WHERE id = 1", n)
		if err != nil {
			return 0, err
		}
		return res.LastInsertId()
	}, " FOR UPDATE"),
	sequence: sequenceNothing,
}
