package twophase_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/twophase"
)

// Transfers between PostgreSQL and MariaDB, each way and with each as the
// home, commit on both sides: the balances move, their sum stays, and no
// branch is left prepared.
func TestTransfer(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	for _, home := range []string{pgName, myName} {
		other := map[string]string{pgName: myName, myName: pgName}[home]
		c, ps := b.coordinator(t, "transfer-"+home, home, []string{other})
		before := b.balances(t)
		for i := range 10 {
			from, to := ps[home], ps[other]
			if i%2 == 1 {
				from, to = to, from
			}
			require.NoError(t, transfer(ctx, c, int64(i+1), from, to), "transfer %d", i)
		}
		after := b.balances(t)
		// +1 -2 +3 ... -10: the home's account got 1+3+5+7+9-2-4-6-8-10 = -5.
		assert.Equal(t, before[home]+5, after[home], "home %s", home)
		assert.Equal(t, before[other]-5, after[other], "home %s", home)
		assert.Equal(t, int64(4*initial), sum(after))
		assert.Empty(t, b.rawPrepared(t, c.ID()))
		doubt, err := c.ListInDoubt(ctx)
		require.NoError(t, err)
		assert.Empty(t, doubt)
	}
}

// A transaction over four participants, two on each server, commits on
// all four; one that rolls back changes none.
func TestFourParticipants(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	c, ps := b.coordinator(t, "four", pgName, []string{myName, pg2Name, my2Name})
	require.NoError(t, transfer(ctx, c, 10, ps[pgName], ps[myName], ps[pg2Name], ps[my2Name]))
	assert.Equal(t, map[string]int64{pgName: 970, myName: 1010, pg2Name: 1010, my2Name: 1010}, b.balances(t))

	tx, err := twophase.Begin(ctx, c) // every participant
	require.NoError(t, err)
	for _, p := range ps {
		require.NoError(t, add(ctx, tx.On(p), 100))
	}
	require.NoError(t, tx.Rollback(ctx))
	assert.ErrorIs(t, tx.Commit(ctx), twophase.ErrTxDone)
	assert.ErrorIs(t, tx.Rollback(ctx), twophase.ErrTxDone)
	assert.Equal(t, map[string]int64{pgName: 970, myName: 1010, pg2Name: 1010, my2Name: 1010}, b.balances(t))
	assert.Empty(t, b.rawPrepared(t, c.ID()))
}

// A PostgreSQL branch whose statement failed is not prepared (PostgreSQL
// answers PREPARE TRANSACTION with ROLLBACK, and no error): Commit finds it
// out and rolls the whole transaction back, the MariaDB branch prepared
// before it included.
func TestFailedStatementAborts(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	c, ps := b.coordinator(t, "failed", myName, []string{my2Name, pgName})
	tx, err := twophase.Begin(ctx, c, ps[my2Name], ps[pgName], ps[myName])
	require.NoError(t, err)
	for _, p := range ps {
		require.NoError(t, add(ctx, tx.On(p), 5))
	}
	_, err = tx.On(ps[pgName]).ExecContext(ctx, "INSERT INTO twophase_accounts (id, balance) VALUES ('acct', 1)")
	require.Error(t, err, "a duplicate key")
	err = tx.Commit(ctx)
	require.ErrorIs(t, err, twophase.ErrAborted)
	assert.ErrorContains(t, err, "prepare pg: the database prepared nothing")
	assert.Equal(t, int64(3*initial), b.balance(t, myName)+b.balance(t, my2Name)+b.balance(t, pgName))
	assert.Equal(t, int64(initial), b.balance(t, my2Name), "the branch prepared first is rolled back")
	assert.Empty(t, b.rawPrepared(t, c.ID()))
}

// A commit that is slow to decide meets recovery, which presumed it dead
// and aborted it: the decision is fenced, so the commit fails and nothing
// commits, the branches that recovery could not reach (a MariaDB branch
// held by the live connection) included.
func TestRecoveryFencesALateDecision(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	for _, home := range []string{pgName, myName} {
		t.Run("home="+home, func(t *testing.T) {
			others := map[string][]string{pgName: {myName, pg2Name}, myName: {pgName, my2Name}}[home]
			var c *twophase.Coordinator
			var rec twophase.Recovered
			c, ps := b.coordinator(t, "fence-"+home, home, others, twophase.WithGrace(time.Nanosecond),
				twophase.WithHook(func(ctx context.Context, at twophase.Point, _ string) error {
					if at == twophase.BeforeDecision {
						var err error
						rec, err = c.Recover(ctx)
						return err
					}
					return nil
				}))
			before := b.balances(t)
			err := transfer(ctx, c, 1, ps[home], ps[others[0]], ps[others[1]])
			require.ErrorIs(t, err, twophase.ErrAborted)
			assert.Equal(t, 2, rec.RolledBack, "recovery rolled back both prepared branches (or found them held)")
			assert.Equal(t, before, b.balances(t))
			assert.Empty(t, b.rawPrepared(t, c.ID()))
		})
	}
}

// A branch left prepared by a transaction that stopped after preparing it
// is listed with its age, alerted past WithAlertAfter, kept while younger
// than the grace, ignored by a coordinator of another ID, and rolled back
// by one of the same ID once the grace is over.
func TestInDoubtListedAlertedAndRecovered(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	crash := errors.New("crash")
	var (
		mu     sync.Mutex
		events []resilience.Event
	)
	observer := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	})
	c, ps := b.coordinator(t, "doubt", pgName, []string{myName}, twophase.WithGrace(time.Hour),
		twophase.WithAlertAfter(time.Nanosecond), twophase.WithObserver(observer), twophase.WithName("ledger"),
		twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
			if at == twophase.AfterPrepare {
				return crash
			}
			return nil
		}))
	err := transfer(ctx, c, 7, ps[pgName], ps[myName])
	require.ErrorIs(t, err, crash)
	assert.ErrorContains(t, err, "stopped after-prepare on maria")

	require.Eventually(t, func() bool { return len(b.rawPrepared(t, "doubt")) == 1 }, 10*time.Second, 10*time.Millisecond)
	doubt, err := c.ListInDoubt(ctx)
	require.NoError(t, err)
	require.Len(t, doubt, 1)
	assert.Equal(t, "maria", doubt[0].Participant)
	assert.Equal(t, "doubt", doubt[0].Coordinator)
	assert.Equal(t, twophase.Undecided, doubt[0].Decision)
	assert.Positive(t, doubt[0].Age)

	rec, err := c.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, twophase.Recovered{Waiting: 1}, rec, "within the grace")
	mu.Lock()
	var alert *twophase.InDoubtError
	for _, e := range events {
		if e.Kind == resilience.Error && errors.As(e.Err, &alert) {
			assert.Equal(t, resilience.PolicyTwoPhase, e.Policy)
			assert.Equal(t, "ledger", e.Name)
			assert.Equal(t, doubt[0].TxID+"/maria", e.Subject)
			assert.ErrorIs(t, e.Err, twophase.ErrInDoubt)
		}
	}
	mu.Unlock()
	require.NotNil(t, alert, "an alert for the branch in doubt: %v", events)
	require.NotEmpty(t, events)
	assert.Equal(t, resilience.Failure, events[0].Kind, "the commit that stopped")
	assert.ErrorIs(t, events[0].Err, crash)
	assert.Equal(t, doubt[0].TxID, events[0].Subject)
	assert.Equal(t, "maria", alert.Participant)

	other, _ := b.coordinator(t, "doubt-other", pgName, []string{myName}, twophase.WithGrace(time.Nanosecond))
	rec, err = other.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, twophase.Recovered{}, rec, "another coordinator's transaction is left alone")
	doubt, err = other.ListInDoubt(ctx)
	require.NoError(t, err)
	require.Len(t, doubt, 1, "but listed")

	same, _ := b.coordinator(t, "doubt", pgName, []string{myName}, twophase.WithGrace(time.Nanosecond))
	rec, err = same.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, twophase.Recovered{RolledBack: 1}, rec)
	assert.Empty(t, b.rawPrepared(t, "doubt"))
	assert.Equal(t, int64(initial), b.balance(t, myName))
	assert.Equal(t, int64(initial), b.balance(t, pgName))
}

// A second phase that fails (the branch's connection is cut after the
// decision) leaves the transaction committed: Commit returns nil, an Error
// event tells, the branch is listed with its Commit decision, and recovery
// commits it.
func TestSecondPhaseFailureIsRecovered(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	var pid int
	var (
		mu     sync.Mutex
		events []resilience.Event
	)
	observer := resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	})
	c, ps := b.coordinator(t, "phase2", myName, []string{pgName}, twophase.WithObserver(observer),
		twophase.WithHook(func(ctx context.Context, at twophase.Point, _ string) error {
			if at == twophase.AfterDecision {
				_, err := b.dbs[pgName].ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid)
				return err
			}
			return nil
		}))
	tx, err := twophase.Begin(ctx, c, ps[pgName])
	require.NoError(t, err)
	require.NoError(t, tx.On(ps[pgName]).QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	require.NoError(t, add(ctx, tx.On(ps[pgName]), 3))
	require.NoError(t, add(ctx, tx.On(ps[myName]), -3))
	require.NoError(t, tx.Commit(ctx), "committed: the decision is recorded")

	mu.Lock()
	kinds := []resilience.EventKind{}
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	require.Equal(t, []resilience.EventKind{resilience.Error, resilience.Success}, kinds)
	assert.Equal(t, tx.ID()+"/pg", events[0].Subject)
	assert.ErrorContains(t, events[0].Err, "recovery commits later")
	assert.Equal(t, 2, events[1].Count)
	mu.Unlock()

	assert.Equal(t, int64(initial-3), b.balance(t, myName))
	doubt, err := c.ListInDoubt(ctx)
	require.NoError(t, err)
	require.Len(t, doubt, 1)
	assert.Equal(t, twophase.Commit, doubt[0].Decision)
	rec, err := c.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, twophase.Recovered{Committed: 1}, rec)
	assert.Equal(t, int64(initial+3), b.balance(t, pgName))
	assert.Empty(t, b.rawPrepared(t, c.ID()))
}

// Bad input gets an error that says what is wrong.
func TestBadInput(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	pg, my := b.p(pgName), b.p(myName)
	_, err := twophase.New(ctx, "a.b", pg, nil)
	assert.ErrorContains(t, err, `coordinator ID "a.b": want 1 to 32 letters`)
	_, err = twophase.New(ctx, "x", pg, []*twophase.Participant{b.p(pgName)})
	assert.ErrorContains(t, err, `two participants named "pg"`)
	_, err = twophase.New(ctx, "x", pg, nil, twophase.WithGrace(48*time.Hour))
	assert.ErrorContains(t, err, "WithRetention(24h0m0s) must be longer than WithGrace(48h0m0s)")
	_, err = twophase.New(ctx, "x", twophase.MySQL("pg", b.dbs[pgName].DB), nil)
	assert.ErrorContains(t, err, "participant pg: not a MySQL or MariaDB server")
	_, err = twophase.New(ctx, "x", twophase.Postgres("maria", b.dbs[myName].DB), nil)
	assert.ErrorContains(t, err, "participant maria: dialect PostgreSQL but the server is MariaDB")

	c, err := twophase.New(ctx, "x", pg, nil)
	require.NoError(t, err)
	_, err = twophase.Begin(ctx, c, my)
	assert.ErrorContains(t, err, "maria (MySQL) is not a participant of coordinator x")

	assert.PanicsWithValue(t, `twophase: Postgres("a b"): want a name of 1 to 32 letters, digits, '_' or '-'`, func() { twophase.Postgres("a b", b.dbs[pgName].DB) })
	assert.PanicsWithValue(t, "twophase: WithGrace(0s): want d > 0", func() { twophase.WithGrace(0) })
	assert.PanicsWithValue(t, "twophase: WithRetention(1s): want d >= 1m", func() { twophase.WithRetention(time.Second) })
	assert.Panics(t, func() { twophase.WithTable("a;b") })
}

// PostgreSQL refuses to prepare a transaction that ran NOTIFY, so a
// PostgreSQL branch that notifies (an outbox with contrib/pgnotify's
// wake-up) rolls the transaction back; the home branch, a local
// transaction, may notify.
func TestNotifyOnlyInTheHomeBranch(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	for _, home := range []string{myName, pgName} {
		c, ps := b.coordinator(t, "notify-"+home, home, []string{map[string]string{pgName: myName, myName: pgName}[home]})
		tx, err := twophase.Begin(ctx, c)
		require.NoError(t, err)
		require.NoError(t, add(ctx, tx.On(ps[pgName]), 1))
		require.NoError(t, add(ctx, tx.On(ps[myName]), -1))
		_, err = tx.On(ps[pgName]).ExecContext(ctx, "SELECT pg_notify('twophase_test', 'x')")
		require.NoError(t, err)
		err = tx.Commit(ctx)
		if home == pgName {
			assert.NoError(t, err, "NOTIFY in the home branch")
			continue
		}
		require.ErrorIs(t, err, twophase.ErrAborted)
		assert.ErrorContains(t, err, "NOTIFY")
		assert.Equal(t, int64(initial), b.balance(t, pgName))
		assert.Equal(t, int64(initial), b.balance(t, myName))
		assert.Empty(t, b.rawPrepared(t, c.ID()))
	}
	assert.Equal(t, int64(initial+1), b.balance(t, pgName))
}

// Transfers from several goroutines at once, through one coordinator,
// all commit, and the sum holds.
func TestConcurrentTransfers(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	c, ps := b.coordinator(t, "concurrent", myName, []string{pgName})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				assert.NoError(t, transfer(ctx, c, 1, ps[myName], ps[pgName]))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(initial-20), b.balance(t, myName))
	assert.Equal(t, int64(initial+20), b.balance(t, pgName))
	assert.Empty(t, b.rawPrepared(t, c.ID()))
}

// Recovery deletes the coordinator's decisions older than the retention,
// but not one whose transaction still has a branch prepared (until a
// later pass, once the branch is committed), nor another coordinator's.
func TestRecoveryPurgesOldDecisions(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	// A transaction that stops after its decision: its branch stays
	// prepared, with a decision.
	c, ps := b.coordinator(t, "purge", pgName, []string{myName}, twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
		if at == twophase.AfterDecision {
			return errors.New("crash")
		}
		return nil
	}))
	require.Error(t, transfer(ctx, c, 1, ps[pgName], ps[myName]))

	pg := b.dbs[pgName]
	_, err := pg.Exec("INSERT INTO twophase_decisions (gid, outcome, decided_at) VALUES ('tp.purge.1.0000000000000000', 1, 0), ('tp.purge-other.1.0000000000000000', 1, 0)")
	require.NoError(t, err)
	_, err = pg.Exec("UPDATE twophase_decisions SET decided_at = 0")
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, pg.QueryRow("SELECT COUNT(*) FROM twophase_decisions").Scan(&n))
		return n
	}
	require.Equal(t, 3, count())

	rescue, _ := b.coordinator(t, "purge", pgName, []string{myName})
	r, err := rescue.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, twophase.Recovered{Committed: 1}, r)
	assert.Equal(t, 2, count(), "the old decision went; the one of a prepared branch and another coordinator's stay")
	_, err = rescue.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, count(), "the decision of the committed branch went; another coordinator's stays")
	assert.Equal(t, int64(initial+1), b.balance(t, myName))
}

// RunRecovery resolves, every interval, what a transaction left in doubt;
// reports Recover's errors as Error events (here: a participant whose
// handle is closed); and returns nil once its ctx is done. The decisions
// are in the table WithTable names.
func TestRunRecovery(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	c, ps := b.coordinator(t, "run", myName, []string{pgName}, twophase.WithTable("twophase_custom"),
		twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
			if at == twophase.AfterDecision {
				return errors.New("crash")
			}
			return nil
		}))
	require.Error(t, transfer(ctx, c, 4, ps[myName], ps[pgName]))
	require.Len(t, b.rawPrepared(t, "run"), 1)
	var n int
	require.NoError(t, b.dbs[myName].QueryRow("SELECT COUNT(*) FROM twophase_custom").Scan(&n))
	assert.Equal(t, 1, n, "the decision")

	closed, err := sql.Open("pgx", b.dbs[pg2Name].DSN)
	require.NoError(t, err)
	var (
		mu     sync.Mutex
		errs   []error
		events = resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			if e.Kind == resilience.Error {
				mu.Lock()
				defer mu.Unlock()
				errs = append(errs, e.Err)
			}
		})
	)
	rescue, err := twophase.New(ctx, "run", b.p(myName), []*twophase.Participant{b.p(pgName), twophase.Postgres(pg2Name, closed)},
		twophase.WithTable("twophase_custom"), twophase.WithRecoveryInterval(10*time.Millisecond), twophase.WithObserver(events))
	require.NoError(t, err)
	closed.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- rescue.RunRecovery(runCtx) }()
	// A pass commits the branch on pg and then reports that it could not
	// list pg2's: wait for both, since a pass that ctx's end cuts short
	// reports nothing.
	reported := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(errs) > 0
	}
	require.Eventually(t, func() bool { return len(b.rawPrepared(t, "run")) == 0 && reported() }, 10*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	assert.Equal(t, int64(initial+4), b.balance(t, pgName))
	mu.Lock()
	defer mu.Unlock()
	assert.ErrorContains(t, errs[0], "list the prepared branches on pg2: sql: database is closed")
}

// A branch in which no statement ran has nothing to commit: it ends before
// the decision instead of being prepared, on either kind of database, so
// that a crash then leaves only the branches that wrote for recovery.
// (MariaDB lists an empty prepared XA branch, and then fails its commit or
// rollback from another connection with XA_RBROLLBACK.)
func TestEmptyBranchIsNotPrepared(t *testing.T) {
	b := newBank(t)
	ctx := context.Background()
	crash := errors.New("crash")
	stop := twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
		if at == twophase.BeforeDecision {
			return crash
		}
		return nil
	})
	for _, home := range []string{pgName, myName} {
		id := "empty-" + home
		others := []string{my2Name, pg2Name}
		c, ps := b.coordinator(t, id, home, others, stop)
		before := b.balances(t)
		tx, err := twophase.Begin(ctx, c, ps[my2Name], ps[pg2Name], ps[home])
		require.NoError(t, err)
		require.NoError(t, add(ctx, tx.On(ps[pg2Name]), 7))
		require.NoError(t, add(ctx, tx.On(ps[home]), -7))
		require.ErrorIs(t, tx.Commit(ctx), crash)
		require.Eventually(t, func() bool { return len(b.rawPrepared(t, id)) == 1 }, 10*time.Second, 10*time.Millisecond,
			"only the branch that wrote is prepared")

		recovery, _ := b.coordinator(t, id, home, others, twophase.WithGrace(time.Nanosecond))
		rec, err := recovery.Recover(ctx)
		require.NoError(t, err, "home %s", home)
		assert.Equal(t, twophase.Recovered{RolledBack: 1}, rec)
		assert.Empty(t, b.rawPrepared(t, id))
		assert.Equal(t, before, b.balances(t))
	}
}
