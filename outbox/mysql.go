package outbox

import (
	"errors"
	"time"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// mysql is the outbox on MySQL 8 and MariaDB 10.6 or later. A message of a
// lane is published once it is older than the gap grace
// ([WithGapGrace]): a transaction that wrote an earlier one must have
// committed by then. IDs and owners are VARBINARY: compared byte for byte,
// where MySQL's default collations would take "Ab" and "ab " for the same
// ID.
var mysql = &database{
	sql: sqlstore.MySQL,
	schema: []sqlstore.Migration{{Version: 1, Statements: []string{
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
	}}, {Version: 2, Statements: []string{
		`CREATE TABLE IF NOT EXISTS {t}_relays (
		relay VARBINARY(80) NOT NULL PRIMARY KEY,
		seen_until BIGINT NOT NULL
	) ENGINE=InnoDB`,
	}}},
	laneGuard: func(grace time.Duration) (string, []any) {
		return "created_at <= " + sqlstore.MySQL.Now + " - ?", []any{grace.Microseconds()}
	},
	notify:  func(string) (string, error) { return "", errors.New("outbox: WithNotify: only PostgreSQL has NOTIFY") },
	writers: manyWriters,
}
