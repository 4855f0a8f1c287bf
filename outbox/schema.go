package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// The schema, by version and dialect. {t} stands for the table. Times are
// microseconds since the Unix epoch on the database's clock. status is 0
// for pending, 1 for published (kept for a retention period), 2 for dead.
var schema = map[sqlstore.Flavor][]sqlstore.Migration{
	sqlstore.Postgres: {{Version: 1, Statements: []string{
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
	}}},
	// IDs and owners are VARBINARY: compared byte for byte, where MySQL's
	// default collations would take "Ab" and "ab " for the same ID.
	sqlstore.MySQL: {{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
			id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			message_id VARBINARY(64) NOT NULL,
			topic VARCHAR(255) NOT NULL,
			msg_key VARCHAR(255) NOT NULL DEFAULT '',
			lane SMALLINT NULL,
			payload LONGBLOB NOT NULL,
			headers TEXT NULL,
			created_at BIGINT NOT NULL,
			available_at BIGINT NOT NULL,
			attempts INT NOT NULL DEFAULT 0,
			last_error TEXT NULL,
			locked_by VARBINARY(80) NULL,
			locked_until BIGINT NULL,
			status SMALLINT NOT NULL DEFAULT 0,
			published_at BIGINT NULL,
			UNIQUE KEY {n}_message_id (message_id),
			KEY {n}_pending (status, id),
			KEY {n}_lane (lane, id),
			KEY {n}_published (status, published_at)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {t}_lanes (
			lane SMALLINT NOT NULL PRIMARY KEY,
			owner VARBINARY(80) NULL,
			lease_until BIGINT NOT NULL DEFAULT 0,
			blocked_until BIGINT NOT NULL DEFAULT 0
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`INSERT IGNORE INTO {t}_lanes (lane) VALUES ` + laneValues(),
		`CREATE TABLE IF NOT EXISTS {t}_inbox (
			consumer VARBINARY(128) NOT NULL,
			message_id VARBINARY(64) NOT NULL,
			received_at BIGINT NOT NULL,
			PRIMARY KEY (consumer, message_id),
			KEY {n}_inbox_received (received_at)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	}}},
	sqlstore.SQLite: {{Version: 1, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t} (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			message_id TEXT NOT NULL UNIQUE,
			topic TEXT NOT NULL,
			msg_key TEXT NOT NULL DEFAULT '',
			lane INTEGER NULL,
			payload BLOB NOT NULL,
			headers TEXT NULL,
			created_at INTEGER NOT NULL,
			available_at INTEGER NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NULL,
			locked_by TEXT NULL,
			locked_until INTEGER NULL,
			status INTEGER NOT NULL DEFAULT 0,
			published_at INTEGER NULL)`,
		`CREATE INDEX IF NOT EXISTS {n}_pending ON {t} (id) WHERE status = 0`,
		`CREATE INDEX IF NOT EXISTS {n}_lane ON {t} (lane, id) WHERE status <> 1 AND lane IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS {n}_published ON {t} (published_at) WHERE status = 1`,
		`CREATE TABLE IF NOT EXISTS {t}_lanes (
			lane INTEGER PRIMARY KEY,
			owner TEXT NULL,
			lease_until INTEGER NOT NULL DEFAULT 0,
			blocked_until INTEGER NOT NULL DEFAULT 0)`,
		`INSERT OR IGNORE INTO {t}_lanes (lane) VALUES ` + laneValues(),
		`CREATE TABLE IF NOT EXISTS {t}_inbox (
			consumer TEXT NOT NULL,
			message_id TEXT NOT NULL,
			received_at INTEGER NOT NULL,
			PRIMARY KEY (consumer, message_id))`,
		`CREATE INDEX IF NOT EXISTS {n}_inbox_received ON {t}_inbox (received_at)`,
	}}},
}

func laneValues() string {
	v := make([]string, Lanes)
	for i := range v {
		v[i] = fmt.Sprintf("(%d)", i)
	}
	return strings.Join(v, ", ")
}

// Migrate creates d's tables in db, or brings them up to date: the messages,
// the lanes of ordered mode, the inbox, and a table of applied versions. It
// is safe to call at every start, from several processes at once.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	migrations, ok := schema[d.flavor]
	if !ok {
		return fmt.Errorf("outbox: Migrate: zero Dialect; use outbox.Postgres, MySQL or SQLite")
	}
	// Index names may not carry a schema: name them after the table alone.
	name := d.table[strings.LastIndexByte(d.table, '.')+1:]
	var filled []sqlstore.Migration
	for _, m := range migrations {
		f := sqlstore.Migration{Version: m.Version}
		for _, st := range m.Statements {
			f.Statements = append(f.Statements, strings.NewReplacer("{t}", d.table, "{n}", name).Replace(st))
		}
		filled = append(filled, f)
	}
	if err := sqlstore.Migrate(ctx, db, d.flavor, "outbox:"+d.table, d.table+"_migrations", filled); err != nil {
		return fmt.Errorf("outbox: migrate %s: %w", d, err)
	}
	return nil
}
