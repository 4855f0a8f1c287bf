package twophase

import (
	"context"
	"database/sql"
	"errors"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// protocol is what differs between the databases a participant runs on:
// one value per database, in a file of its own ([pgProtocol] in
// postgres.go, [xaProtocol] in mysql.go). Every field must be set, which a
// test checks.
type protocol struct {
	// name is the database as messages name it.
	name string
	// store is the dialect of the decision table, when the participant is
	// a coordinator's home.
	store *sqlstore.Dialect
	// decisionTable returns the statement that creates the decision table.
	decisionTable func(table string) string
	// check returns an error, saying what to do, unless the server behind
	// db can take part in two-phase commits.
	check func(ctx context.Context, db *sql.DB) error
	// begin starts on conn the branch x, which will be prepared.
	begin func(ctx context.Context, conn *sql.Conn, x xid) error
	// prepare prepares the branch x begun on conn, and returns an error
	// unless it is prepared.
	prepare func(ctx context.Context, conn *sql.Conn, x xid) error
	// rollbackActive rolls back the branch x begun on conn, not prepared.
	rollbackActive func(ctx context.Context, conn *sql.Conn, x xid) error
	// commitPrepared and rollbackPrepared end the prepared branch x,
	// through any connection to the participant's database.
	commitPrepared, rollbackPrepared func(ctx context.Context, q execer, x xid) error
	// list returns the branches of this package's transactions prepared in
	// db.
	list func(ctx context.Context, db *sql.DB) ([]xid, error)
	// gone reports whether err, of commitPrepared or rollbackPrepared,
	// says that no such branch is prepared: it was ended already.
	gone func(err error) bool
}

// execer is a *sql.Conn or a *sql.DB.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// exec runs the statements in order on q, until one fails. They carry no
// arguments, so that the drivers send them as they are, outside prepared
// statements, which the XA statements are not allowed in.
func exec(ctx context.Context, q execer, statements ...string) error {
	for _, s := range statements {
		if _, err := q.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// errNotPrepared is the error of a PREPARE TRANSACTION that prepared
// nothing: PostgreSQL answers it with ROLLBACK, and no error, in a
// transaction that a failed statement aborted.
var errNotPrepared = errors.New("the database prepared nothing: the transaction had failed, and was rolled back")

// sqlState returns the SQLSTATE of err, where the driver tells it (pgx).
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}
