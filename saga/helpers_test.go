package saga_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/internal/sqlstore"
	"github.com/resilience-go/resilience/saga"
)

func dialectNamed(name string) saga.Dialect {
	return map[string]saga.Dialect{"postgres": saga.Postgres, "mysql": saga.MySQL, "sqlite": saga.SQLite}[name]
}

// tester is what the helpers need of a *testing.T or a *rapid.T.
type tester interface {
	require.TestingT
	Helper()
	Fatalf(format string, args ...any)
}

// rebind turns the ? placeholders of q into PostgreSQL's $n.
func rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	return sqlstore.Postgres.Rebind(q)
}

// store is a test's database with the saga tables and a participant's
// effects table.
type store struct {
	*servicetest.DB
	d saga.Dialect
}

var effectsTable = map[string]string{
	"postgres": `CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, saga_id VARCHAR(128) NOT NULL, step VARCHAR(64) NOT NULL, phase VARCHAR(16) NOT NULL)`,
	"mysql":    `CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, saga_id VARBINARY(128) NOT NULL, step VARBINARY(64) NOT NULL, phase VARBINARY(16) NOT NULL)`,
	"sqlite":   `CREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL)`,
}

func newStore(t testing.TB, db *servicetest.DB) *store {
	t.Helper()
	d := dialectNamed(db.Dialect)
	require.NoError(t, saga.Migrate(context.Background(), db.DB, d))
	_, err := db.ExecContext(context.Background(), effectsTable[db.Dialect])
	require.NoError(t, err)
	return &store{DB: db, d: d}
}

// forEachDatabase runs f against SQLite, PostgreSQL and MySQL, in parallel.
func forEachDatabase(t *testing.T, f func(t *testing.T, s *store)) {
	for _, database := range servicetest.Databases {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			f(t, newStore(t, database.Open(t)))
		})
	}
}

// participant is a service a saga calls: each call writes an effect row in
// its own transaction, behind a barrier, so that it takes effect at most
// once. The effects table has no unique key: a call that took effect twice
// shows as two rows.
type participant struct {
	db      *sql.DB
	barrier *saga.Barrier
	insert  string
	// committed, if set, runs after each transaction that committed.
	committed func()
}

func newParticipant(s *store) *participant {
	insert := rebind(s.Dialect, "INSERT INTO effects (saga_id, step, phase) VALUES (?, ?, ?)")
	return &participant{db: s.DB.DB, barrier: saga.NewBarrier(s.d), insert: insert}
}

// apply runs the call k behind the barrier: fail, if not nil, is the call's
// error, and rolls its transaction back.
func (p *participant) apply(ctx context.Context, k saga.Key, fail error) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	err = p.barrier.Call(ctx, tx, k, func(ctx context.Context) error {
		if _, err := tx.ExecContext(ctx, p.insert,
			k.SagaID, k.Step, k.Phase.String()); err != nil {
			return err
		}
		return fail
	})
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if p.committed != nil {
		p.committed()
	}
	return nil
}

// step returns a saga step whose action and compensation go through p; the
// action fails with failWith, if set.
func (p *participant) step(name string, failWith error, opts ...saga.StepOption) saga.Item {
	return saga.Step(name,
		func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, failWith) },
		func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) },
		opts...)
}

// member returns a TCC participant whose calls go through p; its try fails
// with failWith, if set.
func (p *participant) member(name string, failWith error) saga.TCCItem {
	return saga.Participant(name,
		func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, failWith) },
		func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) },
		func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) })
}

// effects counts the effect rows of a saga by "step/phase".
func effects(t tester, db *sql.DB, dialect, id string) map[string]int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), rebind(dialect, "SELECT step, phase FROM effects WHERE saga_id = ?"), id)
	require.NoError(t, err)
	defer rows.Close()
	n := map[string]int{}
	for rows.Next() {
		var step, phase string
		require.NoError(t, rows.Scan(&step, &phase))
		n[step+"/"+phase]++
	}
	require.NoError(t, rows.Err())
	return n
}

// checkAllOrNothing checks that the saga id over steps ended completed, with
// each action once and nothing compensated, or compensated, with each action
// that took effect undone once. For a TCC saga (forward phase "try") a
// completed one has each try and confirm once.
func checkAllOrNothing(t tester, s *store, c *saga.Coordinator, id string, steps []string, tcc bool) saga.Status {
	t.Helper()
	status, err := c.InstanceStatus(context.Background(), id)
	require.NoError(t, err)
	got := effects(t, s.DB.DB, s.Dialect, id)
	forward, undo := "action", "compensate"
	if tcc {
		forward, undo = "try", "cancel"
	}
	switch status {
	case saga.Succeeded:
		want := map[string]int{}
		for _, st := range steps {
			want[st+"/"+forward] = 1
			if tcc {
				want[st+"/confirm"] = 1
			}
		}
		require.Equal(t, want, got, "saga %s succeeded: every step once, nothing undone", id)
	case saga.Compensated:
		for _, st := range steps {
			f, u := got[st+"/"+forward], got[st+"/"+undo]
			require.LessOrEqual(t, f, 1, "saga %s: %s/%s took effect twice: %v", id, st, forward, got)
			require.Equal(t, f, u, "saga %s: %s: every effect undone once: %v", id, st, got)
			require.Zero(t, got[st+"/confirm"], "saga %s: nothing confirmed: %v", id, got)
		}
	default:
		t.Fatalf("saga %s ended %v, want succeeded or compensated; effects %v", id, status, got)
	}
	return status
}

// recoverUntilDone drives recovery until the instance id has ended.
func recoverUntilDone(t tester, c *saga.Coordinator, id string) {
	t.Helper()
	ctx := context.Background()
	for range 600 {
		status, err := c.InstanceStatus(ctx, id)
		require.NoError(t, err)
		if status != saga.Running && status != saga.Compensating && status != saga.Confirming {
			return
		}
		_, err = c.Recover(ctx, 16)
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("saga %s did not end", id)
}

var errCrash = fmt.Errorf("crash")

// crashAfter returns a commit hook that panics with errCrash at its n-th
// call, standing for a coordinator that dies right after that write.
func crashAfter(n int) func() {
	k := 0
	return func() {
		k++
		if k == n {
			panic(errCrash)
		}
	}
}

// crash runs f, which must crash with errCrash, and then lets the leases
// that the crashed coordinator held run out, as the store sees it.
func crash(t tester, s *store, f func()) {
	t.Helper()
	require.True(t, runCrashing(f), "crashed")
	_, err := s.ExecContext(context.Background(), "UPDATE saga_instances SET lease_until = 0 WHERE owner IS NOT NULL")
	require.NoError(t, err)
}

// runCrashing runs f and reports whether it crashed with errCrash.
func runCrashing(f func()) (crashed bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != errCrash {
				panic(v)
			}
			crashed = true
		}
	}()
	f()
	return false
}
