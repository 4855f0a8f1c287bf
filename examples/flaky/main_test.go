package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The program runs small, and its table adds up.
func TestRun(t *testing.T) {
	cfg := config{
		calls: 60, workers: 8,
		fail: 0.3, stall: 0.1, stallFor: 300 * time.Millisecond,
		unavailable: 0.05, retryAfter: time.Second,
		deadline: 1500 * time.Millisecond, attempt: 50 * time.Millisecond,
		seed: 7,
	}
	var out bytes.Buffer
	results, err := run(context.Background(), cfg, &out)
	require.NoError(t, err)
	require.Len(t, results, 2)
	bare, resilient := results[0], results[1]

	for _, r := range results {
		assert.Equal(t, cfg.calls, r.successes+r.failures+r.fallbacks, "%s: every call is counted once", r.name)
		assert.Len(t, r.latencies, cfg.calls, "%s: a latency per call", r.name)
	}
	assert.Equal(t, int64(cfg.calls), bare.attempts, "the bare client sends one request a call")
	assert.Zero(t, bare.fallbacks, "the bare client has no fallback")
	// The bare client's 60 requests take the backend's first 60 draws, so
	// its counts depend on the seed alone: with 35% of requests failing,
	// some of its calls fail.
	assert.Positive(t, bare.failures, "bare calls that failed")

	assert.Zero(t, resilient.failures, "the fallback answers whatever the retries could not")
	assert.GreaterOrEqual(t, resilient.attempts, int64(cfg.calls), "at least one attempt a call")
	assert.LessOrEqual(t, resilient.attempts, int64(3*cfg.calls), "at most three attempts a call")

	table := out.String()
	for _, want := range []string{"client", "successes", "fallbacks", "attempts", "p50", "p99", "bare", "resilient"} {
		assert.Contains(t, table, want)
	}
	assert.Equal(t, 3, strings.Count(table, "\n"), "a header and a row per client:\n%s", table)
}
