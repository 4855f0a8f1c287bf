package eventstore

import (
	"context"
	"fmt"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Migrate creates the store's tables, or brings them up to date: the
// events, the head of the log, the subscriptions' checkpoints and leases,
// the snapshots, and a table of applied versions. It is safe to call at
// every start, from several processes at once. It first asks the server
// what it is, and returns an error that says so for a dialect that does not
// match it.
func (s *Store) Migrate(ctx context.Context) error {
	d := s.d
	if err := sqlstore.CheckServer(ctx, s.db, d.db.sql); err != nil {
		return fmt.Errorf("eventstore: Migrate: %w", err)
	}
	filled := sqlstore.Fill(d.db.schema, d.table)
	if err := sqlstore.Migrate(ctx, s.db, d.db.sql, "eventstore:"+d.table, d.table+"_migrations", filled); err != nil {
		return fmt.Errorf("eventstore: migrate %s: %w", d, err)
	}
	return nil
}
