package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// The program runs small, on SQLite and on PostgreSQL, and its numbers add
// up: every order completed or compensated, each with the events of what
// happened to it in order, and the stock sold is the stock gone.
func TestRun(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dsn := "" // SQLite in a temporary directory
			if name == "postgres" {
				dsn = servicetest.Postgres(t).DSN // a schema of its own
			}
			var out bytes.Buffer
			cfg := config{dsn: dsn, orders: 16, decline: 0.3, flaky: 0.4, workers: 4, seed: 7, initStock: 100}
			rep, err := run(context.Background(), cfg, &out)
			require.NoError(t, err, out.String())
			assert.Equal(t, 16, rep.completed+rep.compensated, out.String())
			assert.Positive(t, rep.compensated, "some cards are declined")
			assert.Positive(t, rep.completed)
			assert.Positive(t, rep.timeouts, "some charges time out, and are retried")
			completed, compensated := 0, 0
			for id, events := range rep.events {
				switch len(events) {
				case 3:
					assert.Equal(t, []string{"stock.reserved", "payment.charged", "shipment.created"}, events, id)
					completed++
				default:
					assert.Equal(t, []string{"stock.reserved", "stock.released"}, events, id)
					compensated++
				}
			}
			assert.Equal(t, rep.completed, completed)
			assert.Equal(t, rep.compensated, compensated)
			assert.Equal(t, rep.stockBefore-rep.sold, rep.stockNow)
			assert.Contains(t, out.String(), "adds up")
		})
	}
}
