package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// The program runs small, with the in-process broker and with NATS
// JetStream when it is there: the warehouse dies midway, a new one takes
// over, and the copies match, with the redelivered message recognised.
func TestRun(t *testing.T) {
	for _, name := range []string{"in-process", "nats"} {
		t.Run(name, func(t *testing.T) {
			url := ""
			if name == "nats" {
				url = servicetest.NATSURL(t)
			}
			var out bytes.Buffer
			rep, err := run(context.Background(), config{natsURL: url, products: 4, commands: 60, crashAt: 15, seed: 2}, &out)
			require.NoError(t, err, out.String())
			assert.Equal(t, map[string]string{"in-process": "in-process", "nats": "NATS JetStream"}[name], rep.broker)
			assert.Equal(t, 60, rep.events+rep.refused)
			assert.True(t, rep.crashed)
			assert.True(t, rep.match, out.String())
			assert.Equal(t, rep.events, rep.applied, "each event applied once, across the two warehouses")
			assert.Positive(t, rep.duplicates, "the message applied but not acknowledged comes again, and is skipped")
			assert.NotEmpty(t, rep.audit)
			assert.Contains(t, out.String(), "warehouse died after applying 15 messages, before acknowledging the last; a new one takes over")
			assert.Contains(t, out.String(), "copies match: 4 products")
			assert.Regexp(t, `audit trail of product-0:\n  v1  Received`, out.String())
			if name == "in-process" {
				assert.Contains(t, out.String(), "no NATS URL given: publishing to a broker in this process")
			}
			t.Log("\n" + out.String())
		})
	}
}

// A NATS URL where no server answers falls back to the in-process broker,
// and says so.
func TestRunWithoutBroker(t *testing.T) {
	var out bytes.Buffer
	rep, err := run(context.Background(), config{natsURL: "nats://127.0.0.1:1", products: 2, commands: 10, crashAt: 3, seed: 1}, &out)
	require.NoError(t, err, out.String())
	assert.Equal(t, "in-process", rep.broker)
	assert.Regexp(t, `NATS at nats://127.0.0.1:1 does not answer \(.*\): publishing to a broker in this process`, out.String())
	assert.True(t, rep.match)
}
