package twophase_test

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
	"github.com/resilience-go/resilience/twophase"
)

// crashMark is what a child prints when it reaches its crash point, and
// then waits to be killed.
const crashMark = "twophase: at the crash point"

// crashConfig is a transaction over three participants: home, then two
// others prepared in order, one of each kind of database.
type crashConfig struct {
	home   string
	others [2]string
}

var crashConfigs = []crashConfig{
	{pgName, [2]string{myName, pg2Name}},
	{myName, [2]string{pgName, my2Name}},
}

// crashPoint is where a child is killed: at point at of participant.
type crashPoint struct {
	at          twophase.Point
	participant string
	// committed: the transaction is committed there (the decision is).
	committed bool
}

// points lists every point of the protocol of a transaction of cfg.
func (cfg crashConfig) points() []crashPoint {
	a, b := cfg.others[0], cfg.others[1]
	return []crashPoint{
		{twophase.BeforePrepare, a, false},
		{twophase.AfterPrepare, a, false},
		{twophase.BeforePrepare, b, false},
		{twophase.AfterPrepare, b, false},
		{twophase.BeforeDecision, cfg.home, false},
		{twophase.AfterDecision, cfg.home, true},
		{twophase.AfterCommit, a, true}, // between the second-phase commits
		{twophase.AfterCommit, b, true},
	}
}

// TestCrashChild runs one transfer of TestCrashAtEveryPoint and, at the
// point the parent names, prints crashMark and waits for its SIGKILL. It
// runs only in that test's child processes.
func TestCrashChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only in a child process of TestCrashAtEveryPoint")
	}
	ctx := context.Background()
	home, others := childParticipants(t)
	point, participant := os.Getenv("TWOPHASE_POINT"), os.Getenv("TWOPHASE_PARTICIPANT")
	c, err := twophase.New(ctx, os.Getenv("TWOPHASE_ID"), home, others,
		twophase.WithHook(func(_ context.Context, at twophase.Point, p string) error {
			if at.String() == point && p == participant {
				fmt.Println(crashMark)
				time.Sleep(time.Hour) // until the parent kills this process
			}
			return nil
		}))
	require.NoError(t, err)
	require.NoError(t, transfer(ctx, c, 1, home, others...))
	t.Fatal("the transfer passed its crash point")
}

// childParticipants opens, in a child, the participants its parent names.
func childParticipants(t *testing.T) (home *twophase.Participant, others []*twophase.Participant) {
	open := func(name string) *twophase.Participant {
		db, err := sql.Open(os.Getenv("TWOPHASE_DRIVER_"+name), os.Getenv("TWOPHASE_DSN_"+name))
		require.NoError(t, err)
		if os.Getenv("TWOPHASE_DRIVER_"+name) == "pgx" {
			return twophase.Postgres(name, db)
		}
		return twophase.MySQL(name, db)
	}
	home = open(os.Getenv("TWOPHASE_HOME"))
	for name := range strings.SplitSeq(os.Getenv("TWOPHASE_OTHERS"), ",") {
		others = append(others, open(name))
	}
	return home, others
}

// TestRecoverChild is the new process that recovers what TestCrashChild
// left: a coordinator of the same ID runs Recover until none of its
// branches is prepared, and prints what it did.
func TestRecoverChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only in a child process of TestCrashAtEveryPoint")
	}
	ctx := context.Background()
	home, others := childParticipants(t)
	c, err := twophase.New(ctx, os.Getenv("TWOPHASE_ID"), home, others, twophase.WithGrace(time.Nanosecond))
	require.NoError(t, err)
	var total twophase.Recovered
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := c.Recover(ctx)
		require.NoError(t, err)
		total.Committed += r.Committed
		total.RolledBack += r.RolledBack
		doubt, err := c.ListInDoubt(ctx)
		require.NoError(t, err)
		mine := 0
		for _, d := range doubt {
			if d.Coordinator == c.ID() {
				mine++
			}
		}
		if mine == 0 {
			fmt.Println("recovered:", total)
			return
		}
		require.True(t, time.Now().Before(deadline), "still in doubt after 30s: %v", doubt)
		time.Sleep(10 * time.Millisecond) // a killed MariaDB connection's branch is free once the server sees it end
	}
}

// A transfer over three participants (PostgreSQL and MariaDB, each in turn
// the home) is killed with SIGKILL at every point of the protocol: before
// and after each prepare, before and after the decision's commit, between
// the second-phase commits and after the last. Then a coordinator of the
// same ID, in a new process, recovers: the sum of the balances holds, no
// branch stays prepared, and the transfer committed on every participant
// if the child was killed after the decision, and on none before it.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, cfg := range crashConfigs {
		t.Run("home="+cfg.home, func(t *testing.T) {
			t.Parallel()
			b := newBank(t)
			env := []string{"TWOPHASE_HOME=" + cfg.home, "TWOPHASE_OTHERS=" + cfg.others[0] + "," + cfg.others[1]}
			for name, db := range b.dbs {
				env = append(env, "TWOPHASE_DSN_"+name+"="+db.DSN, "TWOPHASE_DRIVER_"+name+"="+db.Driver)
			}
			for i, cp := range cfg.points() {
				id := fmt.Sprintf("crash-%s-%d", cfg.home, i)
				before := b.balances(t)
				child := servicetest.StartChild(t, "TestCrashChild", append(env, "TWOPHASE_ID="+id,
					"TWOPHASE_POINT="+cp.at.String(), "TWOPHASE_PARTICIPANT="+cp.participant)...)
				select {
				case <-waitFor(child, crashMark):
				case <-child.Done():
					t.Fatalf("%s %s: the child ended before its crash point:\n%s", cp.at, cp.participant, child.Output())
				case <-time.After(time.Minute):
					t.Fatalf("%s %s: the child did not reach its crash point within a minute:\n%s", cp.at, cp.participant, child.Output())
				}
				require.Contains(t, child.Output(), crashMark, "%s %s: the child ended before its crash point", cp.at, cp.participant)
				child.Kill() // SIGKILL

				rescue := servicetest.StartChild(t, "TestRecoverChild", append(env, "TWOPHASE_ID="+id)...)
				<-rescue.Done()
				require.Contains(t, rescue.Output(), "--- PASS: TestRecoverChild", "%s %s: recovery:\n%s", cp.at, cp.participant, rescue.Output())
				t.Logf("%s %s: %s", cp.at, cp.participant, lineWith(rescue.Output(), "recovered:"))
				assert.Empty(t, b.rawPrepared(t, id), "%s %s: no branch stays prepared", cp.at, cp.participant)
				b.rollBackLeftovers(t, id)
				after := b.balances(t)
				assert.Equal(t, int64(4*initial), sum(after), "%s %s: the sum holds", cp.at, cp.participant)
				want := before
				if cp.committed {
					want = map[string]int64{cfg.home: before[cfg.home] - 2, cfg.others[0]: before[cfg.others[0]] + 1,
						cfg.others[1]: before[cfg.others[1]] + 1}
					for name, n := range before {
						if _, ok := want[name]; !ok {
							want[name] = n
						}
					}
				}
				assert.Equal(t, want, after, "%s %s: all or nothing", cp.at, cp.participant)
			}
		})
	}
}

// recoverAll runs recovery until none of c's branches is prepared: a
// MariaDB branch of a killed connection can be ended once the server has
// seen the connection end.
func recoverAll(t *testing.T, c *twophase.Coordinator, b *bank) twophase.Recovered {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var total twophase.Recovered
	for {
		r, err := c.Recover(ctx)
		require.NoError(t, err)
		total.Committed += r.Committed
		total.RolledBack += r.RolledBack
		if len(b.rawPrepared(t, c.ID())) == 0 {
			return total
		}
		require.True(t, time.Now().Before(deadline), "branches still prepared after 30s of recovery: %v", b.rawPrepared(t, c.ID()))
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor returns a channel closed once the child has written s.
func waitFor(c *servicetest.Child, s string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !strings.Contains(c.Output(), s) {
			select {
			case <-c.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return done
}

// lineWith returns the first line of s that holds sub.
func lineWith(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
