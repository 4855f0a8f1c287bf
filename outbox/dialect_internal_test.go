package outbox

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every database sets every field of the outbox's and of its SQL dialect.
func TestDatabasesAreComplete(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		assert.NoError(t, d.db.sql.Check(), d.String())
		assert.Empty(t, sqlstore.Unset(d.db), "%s: fields of database not set", d)
		assert.NotEmpty(t, d.db.schema[0].Statements, d.String())
	}
	assert.Equal(t, len(Postgres.db.schema), len(MySQL.db.schema), "every database has every version")
	assert.Equal(t, len(Postgres.db.schema), len(SQLite.db.schema), "every database has every version")
}

// On SQLite the relays of an Outbox take turns to write; one that waits for
// its turn gives up when its ctx is done, and gets the turn once it is free.
func TestRelaysTakeTurnsToWriteOnSQLite(t *testing.T) {
	o := New(new(sql.DB), SQLite)
	require.NoError(t, o.takeTurn(context.Background()))
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	cancel(stop)
	assert.ErrorIs(t, o.takeTurn(ctx), stop, "the turn is held")
	o.endTurn()
	require.NoError(t, o.takeTurn(ctx), "the turn is free")
	o.endTurn()

	p := New(new(sql.DB), Postgres)
	require.NoError(t, p.takeTurn(ctx), "PostgreSQL lets writers in together")
	require.NoError(t, p.takeTurn(ctx))
}
