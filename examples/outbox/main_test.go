package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// The program runs small, on SQLite and on PostgreSQL when it is there, and
// its numbers add up: every committed message consumed exactly once, in
// order, and nothing of a rolled-back order.
func TestRun(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dsn := "" // SQLite in a temporary directory
			if name == "postgres" {
				dsn = servicetest.Postgres(t).DSN // a schema of its own
			}
			var out bytes.Buffer
			rep, err := run(context.Background(), config{dsn: dsn, orders: 60, reject: 0.2, fail: 0.3, relays: 2, ordered: true, seed: 3}, &out)
			require.NoError(t, err)
			assert.Equal(t, 60, rep.committed+rep.rolledBack)
			assert.Positive(t, rep.rolledBack, "some orders roll back")
			assert.Equal(t, 2*rep.committed, rep.messages)
			assert.Equal(t, rep.messages, rep.consumed, "every committed message is consumed once")
			assert.Equal(t, rep.deliveries, rep.consumed+rep.duplicates)
			assert.Positive(t, rep.duplicates, "lost acknowledgements cause redeliveries, which the inbox drops")
			assert.Zero(t, rep.outOfOrder)
			assert.Contains(t, out.String(), "consumed once")
		})
	}
}
