package saga

import "github.com/resilience-go/resilience/internal/sqlstore"

// mysql is the saga log and barrier on MySQL 8 and MariaDB 10.6 or later.
// Keys are VARBINARY: compared byte for byte, where MySQL's default
// collations would take "Ab" and "ab " for the same ID.
var mysql = &database{
	sql: sqlstore.MySQL,
	schema: []string{
		`CREATE TABLE IF NOT EXISTS {p}_instances (
		id VARBINARY(128) NOT NULL PRIMARY KEY,
		name VARBINARY(128) NOT NULL,
		version INT NOT NULL,
		status SMALLINT NOT NULL,
		resume_status SMALLINT NOT NULL DEFAULT 0,
		input LONGBLOB NULL,
		deadline_at BIGINT NOT NULL DEFAULT 0,
		failed_step VARBINARY(64) NOT NULL DEFAULT '',
		cause TEXT NULL,
		owner VARBINARY(80) NULL,
		lease_until BIGINT NOT NULL DEFAULT 0,
		next_attempt_at BIGINT NOT NULL DEFAULT 0,
		attempts INT NOT NULL DEFAULT 0,
		last_error TEXT NULL,
		note TEXT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		KEY {n}_instances_due (next_attempt_at),
		KEY {n}_instances_stuck (status, updated_at)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {p}_steps (
		saga_id VARBINARY(128) NOT NULL,
		step VARBINARY(64) NOT NULL,
		phase SMALLINT NOT NULL,
		status SMALLINT NOT NULL,
		output LONGBLOB NULL,
		error TEXT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (saga_id, step, phase)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS {p}_barrier (
		gid VARBINARY(128) NOT NULL,
		branch VARBINARY(64) NOT NULL,
		op VARBINARY(16) NOT NULL,
		reason VARBINARY(16) NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (gid, branch, op),
		KEY {n}_barrier_created (created_at)
	) ENGINE=InnoDB`,
	},
	insertIgnore: sqlstore.MySQL.InsertIgnore,
	stepRow:      "(?, ?, ?, ?, ?, ?, " + sqlstore.MySQL.Now + ")",
	// MySQL's statements return no rows they changed, for another to read.
	write: upsertInTx(sqlstore.MySQL),
}
