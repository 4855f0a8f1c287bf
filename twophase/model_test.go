package twophase_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/twophase"
)

// modelChecks is how many runs TestModel makes, whatever RAPID_CHECKS
// says: each run commits against the databases.
const modelChecks = 50

// The model of a transfer: runs of one to four transfers over three
// participants (PostgreSQL and MariaDB, each in turn the home), each from
// a drawn participant to the other two, with a drawn fault: none; a crash
// (the Hook fails, and the transaction stops as a process that died
// there, its connections dropped) at a drawn point, followed by recovery;
// or a statement that fails and whose error the caller ignores. The model
// predicts every balance after each transfer: a transfer commits unless it
// crashed before the decision or a PostgreSQL branch had a failed statement
// (which aborts a PostgreSQL transaction, home or not; a failed MariaDB
// statement does not). After each one, no branch is left prepared.
func TestModel(t *testing.T) {
	checks := flag.Lookup("rapid.checks")
	old := checks.Value.String()
	require.NoError(t, checks.Value.Set(fmt.Sprint(modelChecks)))
	t.Cleanup(func() { checks.Value.Set(old) }) //nolint:errcheck // it was set before

	b := newBank(t)
	ctx := context.Background()
	crash := errors.New("crash")
	type setup struct {
		cfg       crashConfig
		c, rescue *twophase.Coordinator
		ps        map[string]*twophase.Participant
	}
	var at *crashPoint // where the next transfer crashes, if anywhere
	hook := twophase.WithHook(func(_ context.Context, p twophase.Point, participant string) error {
		if at != nil && at.at == p && at.participant == participant {
			return crash
		}
		return nil
	})
	var setups []setup
	for _, cfg := range crashConfigs {
		id := "model-" + cfg.home
		c, ps := b.coordinator(t, id, cfg.home, cfg.others[:], hook)
		rescue, _ := b.coordinator(t, id, cfg.home, cfg.others[:], twophase.WithGrace(time.Nanosecond))
		setups = append(setups, setup{cfg, c, rescue, ps})
	}
	model := b.balances(t)

	rapid.Check(t, func(rt *rapid.T) {
		s := rapid.SampledFrom(setups).Draw(rt, "setup")
		names := []string{s.cfg.home, s.cfg.others[0], s.cfg.others[1]}
		for range rapid.IntRange(1, 4).Draw(rt, "transfers") {
			amount := int64(rapid.IntRange(1, 5).Draw(rt, "amount"))
			from := rapid.IntRange(0, 2).Draw(rt, "from")
			var to []string
			for i, n := range names {
				if i != from {
					to = append(to, n)
				}
			}
			at = nil
			failOn := ""
			switch rapid.IntRange(0, 2).Draw(rt, "fault") {
			case 1:
				cp := rapid.SampledFrom(s.cfg.points()).Draw(rt, "crash")
				at = &cp
			case 2:
				failOn = rapid.SampledFrom(names).Draw(rt, "failOn")
			}

			tx, err := twophase.Begin(ctx, s.c, s.ps[names[from]], s.ps[to[0]], s.ps[to[1]])
			require.NoError(rt, err)
			require.NoError(rt, add(ctx, tx.On(s.ps[names[from]]), -2*amount))
			for _, n := range to {
				require.NoError(rt, add(ctx, tx.On(s.ps[n]), amount))
			}
			if failOn != "" {
				_, err := tx.On(s.ps[failOn]).ExecContext(ctx, "INSERT INTO twophase_accounts (id, balance) VALUES ('acct', 0)")
				require.Error(rt, err, "a duplicate key")
			}
			err = tx.Commit(ctx)

			committed := true
			switch {
			case at != nil:
				require.ErrorIs(rt, err, crash)
				committed = at.committed
				recoverAll(t, s.rescue, b)
			case postgresNames[failOn]:
				require.ErrorIs(rt, err, twophase.ErrAborted, "a failed statement on %s", failOn)
				committed = false
			default:
				require.NoError(rt, err)
			}
			if committed {
				model[names[from]] -= 2 * amount
				for _, n := range to {
					model[n] += amount
				}
			}
			require.Equal(rt, model, b.balances(rt), "crash %v, failed statement on %q", at, failOn)
			require.Empty(rt, b.rawPrepared(rt, s.c.ID()))
		}
	})
	require.Equal(t, int64(4*initial), sum(b.balances(t)))
}
