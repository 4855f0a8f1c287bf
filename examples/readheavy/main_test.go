package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// The program runs small, on SQLite and on PostgreSQL when it is there,
// and its numbers add up: every read served or limited, misses answered by
// no more queries than misses, and the read model equal to the streams.
func TestRun(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dsn := ""
			if name == "postgres" {
				dsn = servicetest.Postgres(t).DSN
			}
			var out bytes.Buffer
			rep, err := run(context.Background(), config{dsn: dsn, products: 20, writes: 40, ratio: 20, clients: 4,
				rate: 200, ttl: time.Hour, seed: 1}, &out)
			require.NoError(t, err, out.String())
			assert.Equal(t, int64(40), rep.writes)
			assert.Equal(t, int64(40*20), rep.reads, "20 reads per write")
			assert.Equal(t, rep.reads, rep.hits+rep.misses+rep.limited)
			assert.Positive(t, rep.limited, "bursts past a client's rate are refused")
			assert.Positive(t, rep.hits, "a cache that keeps products for an hour hits")
			assert.LessOrEqual(t, rep.loads, rep.misses)
			assert.LessOrEqual(t, rep.loads, int64(20), "each product loaded at most once in an hour")
			assert.True(t, rep.matches, out.String())
			assert.Contains(t, out.String(), "read model matches the event streams: 20 products")
			assert.Regexp(t, `reads: 800 calls \(\d+/s\), \d+ served, \d+ limited by the per-client rate`, out.String())
			assert.Regexp(t, `cache: [0-9.]+% hits, \d+ misses answered by \d+ queries of the read model`, out.String())
			assert.Regexp(t, `projection lag: at most \d+ events`, out.String())
			t.Log("\n" + out.String())
		})
	}
}
