package saga_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

// takeoverDef is the saga that TestRunTakesOverAnOrphan runs, in a child
// and then in the test: its last step fails if fail is set, and blocks, in
// the child, if block is.
func takeoverDef(p *participant, fail, block bool) *saga.Definition {
	last := p.step("ship", nil)
	if fail {
		last = p.step("ship", errDeclined)
	}
	if block {
		last = saga.Step("ship", func(ctx context.Context, c *saga.Call) error {
			fmt.Println("takeover: blocked")
			<-ctx.Done()
			return ctx.Err()
		}, nil)
	}
	return saga.Define(fmt.Sprint("takeover-", fail), 1,
		p.step("reserve", nil, saga.Idempotent()), p.step("charge", nil, saga.Idempotent()), last)
}

// TestRunChild runs a saga of takeoverDef and exits abruptly right after
// the coordinator's second write (TAKEOVER_MODE=crash), or blocks in its
// last step (TAKEOVER_MODE=block). It runs only as a child of
// TestRunTakesOverAnOrphan.
func TestRunChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only as a child of TestRunTakesOverAnOrphan")
	}
	db, err := sql.Open(os.Getenv("TAKEOVER_DRIVER"), os.Getenv("TAKEOVER_DSN"))
	require.NoError(t, err)
	defer db.Close()
	dialect := os.Getenv("TAKEOVER_DIALECT")
	s := &store{DB: &servicetest.DB{DB: db, Dialect: dialect}, d: dialectNamed(dialect)}
	block := os.Getenv("TAKEOVER_MODE") == "block"
	writes := 0
	c := saga.New(saga.WithStore(db, s.d), saga.WithLease(time.Minute), saga.WithAfterCommit(func() {
		if writes++; writes == 2 && !block {
			os.Exit(crashExit)
		}
	}))
	err = c.Run(context.Background(), takeoverDef(newParticipant(s), os.Getenv("TAKEOVER_FAIL") == "true", block),
		os.Getenv("TAKEOVER_ID"), nil)
	t.Fatalf("Run returned %v", err)
}

// Run with the ID of an instance whose coordinator died takes it over once
// its lease has run out, drives it to its end and returns its outcome, as a
// caller that retries its submit wants; no second instance is made. With a
// live owner, Run returns ErrExists.
func TestRunTakesOverAnOrphan(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		child := func(id, mode string, fail bool) *servicetest.Child {
			return servicetest.StartChild(t, "TestRunChild", "TAKEOVER_DRIVER="+s.Driver, "TAKEOVER_DSN="+s.DSN,
				"TAKEOVER_DIALECT="+s.Dialect, "TAKEOVER_ID="+id, "TAKEOVER_MODE="+mode, fmt.Sprint("TAKEOVER_FAIL=", fail))
		}
		for _, fail := range []bool{false, true} {
			id := fmt.Sprint("orphan-", fail)
			ch := child(id, "crash", fail)
			<-ch.Done()
			def := takeoverDef(p, fail, false)
			c := saga.New(saga.WithStore(s.DB.DB, s.d))
			status, err := c.InstanceStatus(ctx, id)
			require.NoError(t, err, ch.Output())
			require.Equal(t, saga.Running, status, "the child crashed in the middle of its saga:\n%s", ch.Output())
			assert.ErrorIs(t, c.Run(ctx, def, id, nil), saga.ErrExists, "the lease of the dead owner still runs")
			// The lease runs out, as the store sees it.
			_, err = s.ExecContext(ctx, rebind(s.Dialect, "UPDATE saga_instances SET lease_until = 0 WHERE id = ?"), id)
			require.NoError(t, err)

			err = c.Run(ctx, def, id, nil)
			want := saga.Succeeded
			if fail {
				want = saga.Compensated
				var se *saga.Error
				require.ErrorAs(t, err, &se)
				assert.Equal(t, saga.Error{SagaID: id, Step: "ship", Err: errDeclined, Status: saga.Compensated}, *se)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, want, checkAllOrNothing(t, s, c, id, []string{"reserve", "charge", "ship"}, false))
			var n int
			require.NoError(t, s.QueryRowContext(ctx, rebind(s.Dialect, "SELECT COUNT(*) FROM saga_instances WHERE id = ?"), id).Scan(&n))
			assert.Equal(t, 1, n, "one instance")

			// Once more, as a caller retrying again: the recorded outcome.
			again := c.Run(ctx, def, id, nil)
			if fail {
				assert.EqualError(t, again, "saga "+id+": step ship: card declined; compensated")
			} else {
				assert.NoError(t, again)
			}
		}

		// An owner that lives keeps its instance.
		ch := child("alive", "block", false)
		require.Eventually(t, func() bool { return strings.Contains(ch.Output(), "takeover: blocked") }, time.Minute, time.Millisecond,
			"the child's saga reaches its last step")
		c := saga.New(saga.WithStore(s.DB.DB, s.d))
		assert.ErrorIs(t, c.Run(ctx, takeoverDef(p, false, false), "alive", nil), saga.ErrExists)
		ch.Kill()
	})
}
