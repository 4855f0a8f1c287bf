package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// TestRunChild is a run that TestCrashAndRecover kills; it runs only in
// that test's child processes.
func TestRunChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only in a child process of TestCrashAndRecover")
	}
	cfg := config{pgDSN: os.Getenv("TRANSFER_PG"), mysqlDSN: os.Getenv("TRANSFER_MYSQL"), id: "transfer-test",
		transfers: 3, crash: os.Getenv("TRANSFER_CRASH"), grace: time.Millisecond, seed: 1}
	require.NoError(t, run(context.Background(), cfg, os.Stdout))
	t.Fatal("the run was not killed")
}

// The program runs small and the sum holds; killed at a point of its last
// move, the next run recovers it: rolled back before the decision,
// committed after it, and the sum holds.
func TestCrashAndRecover(t *testing.T) {
	pg, my := servicetest.Postgres(t), servicetest.MySQL(t)
	cfg := config{pgDSN: pg.DSN, mysqlDSN: my.DSN, id: "transfer-test", transfers: 4, grace: time.Millisecond, seed: 1}
	t.Cleanup(func() { // recovery ends what a failure left prepared, holding locks
		run(context.Background(), config{pgDSN: pg.DSN, mysqlDSN: my.DSN, id: "transfer-test", grace: time.Millisecond}, io.Discard) //nolint:errcheck // clean-up
	})
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), cfg, &out), out.String())
	assert.Contains(t, out.String(), "before: bank 1000 + ledger 1000 = 2000\n")
	assert.Contains(t, out.String(), "4 moves committed, 0 rolled back\n")
	assert.Contains(t, out.String(), "the sum holds: 2000\n")
	assert.NotContains(t, out.String(), "in doubt")

	for _, tt := range []struct{ crash, recovered string }{
		{"after-prepare", "recovered: 0 committed, 1 rolled back\n"},
		{"after-decision", "recovered: 1 committed, 0 rolled back\n"},
	} {
		child := servicetest.StartChild(t, "TestRunChild", "TRANSFER_PG="+pg.DSN, "TRANSFER_MYSQL="+my.DSN, "TRANSFER_CRASH="+tt.crash)
		select {
		case <-child.Done():
		case <-time.After(time.Minute):
			t.Fatalf("the run did not end within a minute:\n%s", child.Output())
		}
		require.Contains(t, child.Output(), "killed "+tt.crash+" on ", tt.crash)
		require.NotContains(t, child.Output(), "the sum holds", tt.crash)

		out.Reset()
		cfg.transfers = 0
		require.NoError(t, run(context.Background(), cfg, &out), out.String())
		assert.Contains(t, out.String(), "in doubt: tp.transfer-test.", tt.crash)
		assert.Contains(t, out.String(), tt.recovered, tt.crash)
		assert.Contains(t, out.String(), "the sum holds: 2000\n", tt.crash)
		assert.Equal(t, 1, strings.Count(out.String(), "in doubt:"), "one branch, the ledger's: %s", out.String())
	}

	out.Reset()
	cfg.crash = "nowhere"
	assert.ErrorContains(t, run(context.Background(), cfg, &out), `-crash "nowhere": want one of [before-prepare after-prepare before-decision after-decision after-commit]`)
}
