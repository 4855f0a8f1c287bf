package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Migrate creates the outbox's tables, or brings them up to date: the
// messages, the lanes and relays of ordered mode, the inbox, and a table of
// applied versions. It is safe to call at every start, from several
// processes at once. It first asks the server what it is, and returns an
// error that says so for a dialect that does not match it.
func (o *Outbox) Migrate(ctx context.Context) error {
	return migrate(ctx, o.db, o.d)
}

func migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	if d.db == nil {
		return fmt.Errorf("outbox: Migrate: %s", errZeroDialect.Error()[len("outbox: "):])
	}
	if err := sqlstore.CheckServer(ctx, db, d.db.sql); err != nil {
		return fmt.Errorf("outbox: Migrate: %w", err)
	}
	filled := sqlstore.Fill(d.db.schema, d.table)
	if err := sqlstore.Migrate(ctx, db, d.db.sql, "outbox:"+d.table, d.table+"_migrations", filled); err != nil {
		return fmt.Errorf("outbox: migrate %s: %w", d, err)
	}
	return nil
}

// laneValues lists the lanes as rows to insert: "(0), (1), ...".
func laneValues() string {
	v := make([]string, Lanes)
	for i := range v {
		v[i] = fmt.Sprintf("(%d)", i)
	}
	return strings.Join(v, ", ")
}
