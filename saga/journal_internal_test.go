package saga

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// A journal write is fenced on every database: when the instance's owner is
// not the claim's token, it writes no step row, and the caller gets
// ErrLeaseLost; a begin whose ID is taken writes no step row either.
func TestJournalWriteIsFenced(t *testing.T) {
	dialects := map[string]Dialect{"postgres": Postgres, "mysql": MySQL, "sqlite": SQLite}
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := database.Open(t)
			d := dialects[db.Dialect]
			require.NoError(t, Migrate(ctx, db.DB, d))
			cfg := defaultConfig()
			cfg.db, cfg.dialect = db.DB, d
			s := newDurable(newEngine(&cfg), &cfg)
			noop := func(context.Context, *Call) error { return nil }
			def := Define("fence", 1, Step("a", noop, nil), Step("b", noop, nil))
			steps := func() map[string]phaseStatus {
				rows, err := db.QueryContext(ctx, d.q("SELECT step, status FROM {p}_steps WHERE saga_id = ?"), "f-1")
				require.NoError(t, err)
				defer rows.Close()
				got := map[string]phaseStatus{}
				for rows.Next() {
					var step string
					var status phaseStatus
					require.NoError(t, rows.Scan(&step, &status))
					got[step] = status
				}
				require.NoError(t, rows.Err())
				return got
			}

			in := newInstance(def, "f-1", nil)
			in, err := s.open(ctx, in, start(in.writes, in, def.groups[0]))
			require.NoError(t, err)
			require.Equal(t, map[string]phaseStatus{"a": started}, steps())

			// Another coordinator takes the instance.
			var token string
			require.NoError(t, db.QueryRowContext(ctx, d.q("SELECT owner FROM {p}_instances WHERE id = ?"), "f-1").Scan(&token))
			_, err = db.ExecContext(ctx, d.q("UPDATE {p}_instances SET owner = 'other' WHERE id = ?"), "f-1")
			require.NoError(t, err)
			writes := []write{{step: 0, phase: Action, status: succeeded}, {step: 1, phase: Action, status: started}}
			assert.ErrorIs(t, in.j.commit(ctx, in, writes), ErrLeaseLost)
			assert.ErrorIs(t, in.j.commit(ctx, in, nil), ErrLeaseLost)
			in.status = Compensating
			assert.ErrorIs(t, in.j.setback(ctx, in, writes[:1], 0, "down"), ErrLeaseLost)
			assert.Equal(t, map[string]phaseStatus{"a": started}, steps(), "no step row written")
			assert.Equal(t, int64(1), s.commits(), "the begin only")

			// A second begin of the ID writes nothing.
			other := newInstance(def, "f-1", nil)
			other.j = s.newClaim("f-1")
			inserted, err := s.record(ctx, other, begin, []any{"f-1", "fence", 1, int(Running), nil, "x", int64(1)},
				[]write{{step: 1, phase: Action, status: started}})
			require.NoError(t, err)
			assert.False(t, inserted)
			assert.Equal(t, map[string]phaseStatus{"a": started}, steps(), "no step row written")

			// Given back, the claim writes.
			_, err = db.ExecContext(ctx, d.q("UPDATE {p}_instances SET owner = ? WHERE id = ?"), token, "f-1")
			require.NoError(t, err)
			in.status = Running
			assert.NoError(t, in.j.commit(ctx, in, writes))
			assert.Equal(t, map[string]phaseStatus{"a": succeeded, "b": started}, steps())
		})
	}
}
