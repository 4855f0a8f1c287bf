package outbox

import (
	"errors"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// sqlite is the outbox on SQLite, whose writes are serial: a message of a
// lane can be published as soon as it is read, since none of a lower id can
// appear after it, and the relays of an Outbox take turns to write.
var sqlite = &database{
	sql: sqlstore.SQLite,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
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
	}}, {Version: 2, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t}_relays (
		relay TEXT PRIMARY KEY,
		seen_until INTEGER NOT NULL)`,
	}}},
	laneGuard: func(time.Duration) (string, []any) { return "1 = 1", nil },
	notify:    func(string) (string, error) { return "", errors.New("outbox: WithNotify: only PostgreSQL has NOTIFY") },
	writers:   oneWriter,
}
