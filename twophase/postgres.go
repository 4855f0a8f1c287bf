package twophase

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Postgres returns the participant named name that is the PostgreSQL
// database db, through a driver that takes $n placeholders (pgx, lib/pq).
// Its branches are prepared with PREPARE TRANSACTION, which needs
// max_prepared_transactions > 0 on the server. name must be 1 to 32
// letters, digits, '_' or '-', and the same in every process; Postgres
// panics otherwise.
func Postgres(name string, db *sql.DB) *Participant {
	return newParticipant("Postgres", name, db, pgProtocol)
}

var pgProtocol = &protocol{
	name:  "PostgreSQL",
	store: sqlstore.Postgres,
	decisionTable: func(table string) string {
		return "CREATE TABLE IF NOT EXISTS " + table + " (gid VARCHAR(64) NOT NULL PRIMARY KEY, outcome SMALLINT NOT NULL, decided_at BIGINT NOT NULL)"
	},
	check: func(ctx context.Context, db *sql.DB) error {
		if err := sqlstore.CheckServer(ctx, db, sqlstore.Postgres); err != nil {
			return err
		}
		var max string
		if err := db.QueryRowContext(ctx, "SHOW max_prepared_transactions").Scan(&max); err != nil {
			return err
		}
		return checkMaxPrepared(max)
	},
	begin: func(ctx context.Context, conn *sql.Conn, _ xid) error {
		return exec(ctx, conn, "BEGIN")
	},
	prepare: func(ctx context.Context, conn *sql.Conn, x xid) error {
		if err := exec(ctx, conn, "PREPARE TRANSACTION '"+x.pgGID()+"'"); err != nil {
			return err
		}
		// On a transaction that failed, PREPARE TRANSACTION answers
		// ROLLBACK and no error: only the view tells.
		var n int
		err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()", x.pgGID()).Scan(&n)
		if err != nil {
			return fmt.Errorf("check it is prepared: %w", err)
		}
		if n == 0 {
			return errNotPrepared
		}
		return nil
	},
	rollbackActive: func(ctx context.Context, conn *sql.Conn, _ xid) error {
		return exec(ctx, conn, "ROLLBACK")
	},
	commitPrepared: func(ctx context.Context, q execer, x xid) error {
		return exec(ctx, q, "COMMIT PREPARED '"+x.pgGID()+"'")
	},
	rollbackPrepared: func(ctx context.Context, q execer, x xid) error {
		return exec(ctx, q, "ROLLBACK PREPARED '"+x.pgGID()+"'")
	},
	list: func(ctx context.Context, db *sql.DB) ([]xid, error) {
		gids, err := sqlstore.Column[string](ctx, db,
			"SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1 ORDER BY prepared", gtridPrefix+"%")
		if err != nil {
			return nil, err
		}
		var out []xid
		for _, gid := range gids {
			if x, ok := parsePGGID(gid); ok {
				out = append(out, x)
			}
		}
		return out, nil
	},
	// 42704 undefined_object: prepared transaction with identifier "..."
	// does not exist.
	gone: func(err error) bool {
		return sqlState(err) == "42704" || strings.Contains(err.Error(), "does not exist")
	},
}

// checkMaxPrepared returns an error unless max, the server's
// max_prepared_transactions, lets it prepare transactions.
func checkMaxPrepared(max string) error {
	if max != "0" {
		return nil
	}
	return fmt.Errorf("PostgreSQL's max_prepared_transactions is 0, which disables PREPARE TRANSACTION: " +
		"set it to at least the number of transactions that may be prepared at once (max_connections is safe), " +
		"with ALTER SYSTEM SET max_prepared_transactions = 64 or in postgresql.conf, and restart the server")
}
