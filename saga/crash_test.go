package saga_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

// crashScenario is a saga that TestCrashAtEveryWrite runs in a child
// process killed after each of its durable writes in turn.
type crashScenario struct {
	name  string
	steps []string
	tcc   bool
	// fails: the saga cannot succeed (a step or try is declined).
	fails bool
	def   func(p *participant) *saga.Definition
}

var crashScenarios = []crashScenario{
	{"saga-ok", []string{"reserve", "charge", "ship"}, false, false, func(p *participant) *saga.Definition {
		return saga.Define("crash-saga-ok", 1, p.step("reserve", nil, saga.Idempotent()), p.step("charge", nil), p.step("ship", nil))
	}},
	{"saga-fails", []string{"reserve", "charge", "ship"}, false, true, func(p *participant) *saga.Definition {
		return saga.Define("crash-saga-fails", 1, p.step("reserve", nil, saga.Idempotent()), p.step("charge", nil), p.step("ship", errDeclined))
	}},
	{"tcc-ok", []string{"a", "b"}, true, false, func(p *participant) *saga.Definition {
		return saga.DefineTCC("crash-tcc-ok", 1, p.member("a", nil), p.member("b", nil))
	}},
	{"tcc-fails", []string{"a", "b"}, true, true, func(p *participant) *saga.Definition {
		return saga.DefineTCC("crash-tcc-fails", 1, p.member("a", nil), p.member("b", errDeclined))
	}},
}

func scenarioNamed(name string) crashScenario {
	for _, sc := range crashScenarios {
		if sc.name == name {
			return sc
		}
	}
	panic("no scenario " + name)
}

// crashExit is the exit status of a child that crashed on purpose.
const crashExit = 3

// TestSagaChild runs one saga and exits abruptly right after its k-th
// durable write: the coordinator's commits and the participant's
// transactions alike. It runs only in TestCrashAtEveryWrite's children.
func TestSagaChild(t *testing.T) {
	dsn := os.Getenv("SAGA_CHILD_DSN")
	if dsn == "" {
		t.Skip("runs only in a child process of TestCrashAtEveryWrite")
	}
	db, err := sql.Open(os.Getenv("SAGA_CHILD_DRIVER"), dsn)
	require.NoError(t, err)
	dialect := os.Getenv("SAGA_CHILD_DIALECT")
	k, err := strconv.Atoi(os.Getenv("SAGA_CHILD_K"))
	require.NoError(t, err)
	var writes atomic.Int64
	hit := func() {
		if writes.Add(1) == int64(k) {
			os.Exit(crashExit)
		}
	}
	s := &store{DB: &servicetest.DB{DB: db, Dialect: dialect}, d: dialectNamed(dialect)}
	p := newParticipant(s)
	p.committed = hit
	sc := scenarioNamed(os.Getenv("SAGA_CHILD_SCENARIO"))
	c := saga.New(saga.WithStore(db, s.d), saga.WithLease(time.Second), saga.WithAfterCommit(hit))
	err = c.Run(context.Background(), sc.def(p), os.Getenv("SAGA_CHILD_ID"), nil)
	var se *saga.Error
	if err != nil && !errors.As(err, &se) {
		t.Fatal(err)
	}
}

// A 3-step saga and a 2-participant TCC, each run in a child process that
// exits abruptly right after its k-th durable write, for every k, and then
// recovered by a new coordinator: every run ends fully completed or fully
// compensated, and, with the barrier, every action and compensation took
// effect at most once.
func TestCrashAtEveryWrite(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		// One recovering coordinator, which knows every scenario: the
		// scenarios run at once on one database, and recover one another's
		// instances too.
		p := newParticipant(s)
		var defs []*saga.Definition
		for _, sc := range crashScenarios {
			defs = append(defs, sc.def(p))
		}
		recovery := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(defs...), saga.WithLease(time.Second))
		for _, sc := range crashScenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				outcomes := map[saga.Status]int{}
				for k := 1; ; k++ {
					id := fmt.Sprintf("%s-%d", sc.name, k)
					cmd := exec.Command(os.Args[0], "-test.run=^TestSagaChild$", "-test.count=1")
					cmd.Env = append(os.Environ(), "SAGA_CHILD_DSN="+s.DSN, "SAGA_CHILD_DRIVER="+s.Driver,
						"SAGA_CHILD_DIALECT="+s.Dialect, "SAGA_CHILD_SCENARIO="+sc.name,
						"SAGA_CHILD_K="+strconv.Itoa(k), "SAGA_CHILD_ID="+id)
					out, err := cmd.CombinedOutput()
					var exit *exec.ExitError
					crashed := errors.As(err, &exit) && exit.ExitCode() == crashExit
					require.True(t, err == nil || crashed, "child: %v\n%s", err, out)
					if crashed {
						// The child is gone: let its lease run out, as the
						// store sees it (TestDurableLeaseRunsOut waits for
						// one for real).
						_, err := s.ExecContext(context.Background(), rebind(s.Dialect, "UPDATE saga_instances SET lease_until = 0 WHERE id = ?"), id)
						require.NoError(t, err)
						recoverUntilDone(t, recovery, id)
					}
					status := checkAllOrNothing(t, s, recovery, id, sc.steps, sc.tcc)
					if sc.fails {
						require.Equal(t, saga.Compensated, status, "%s: a declined saga never succeeds", id)
					}
					outcomes[status]++
					if !crashed {
						if !sc.fails {
							assert.Equal(t, saga.Succeeded, status, "the run without a crash succeeds")
						}
						t.Logf("%d crash points: %v", k-1, outcomes)
						break
					}
				}
			})
		}
	})
}
