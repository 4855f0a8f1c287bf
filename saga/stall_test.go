package saga_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
)

// callsTable holds a row for every step call that started, written before
// the call does anything else, with the process that made it.
var callsTable = map[string]string{
	"postgres": `CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, saga_id VARCHAR(128) NOT NULL, step VARCHAR(64) NOT NULL, phase VARCHAR(16) NOT NULL, pid INTEGER NOT NULL)`,
	"mysql":    `CREATE TABLE calls (id BIGINT AUTO_INCREMENT PRIMARY KEY, saga_id VARBINARY(128) NOT NULL, step VARBINARY(64) NOT NULL, phase VARBINARY(16) NOT NULL, pid INTEGER NOT NULL)`,
	"sqlite":   `CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL, pid INTEGER NOT NULL)`,
}

var errTransient = errors.New("transient")

// tracker is a participant that records the start of every call, with its
// process ID, in the calls table, in autocommit, before it does anything
// else; then it takes effect through the barrier, as participant does. In a
// child it can pause at a boundary: after its stopAt-th call has taken
// effect, before the call returns.
type tracker struct {
	*participant
	record string
	pid    int
	// Set in a child only.
	child  bool
	calls  atomic.Int64
	stopAt int64
	resume string // the file whose creation ends a pause
}

func newTracker(s *store) *tracker {
	return &tracker{participant: newParticipant(s), pid: os.Getpid(),
		record: rebind(s.Dialect, "INSERT INTO calls (saga_id, step, phase, pid) VALUES (?, ?, ?, ?)")}
}

// pause tells the parent that the boundary is reached, and waits until the
// parent creates the resume file: the parent stops the process in the
// meantime.
func (r *tracker) pause() {
	fmt.Println("stall: boundary reached")
	for {
		if _, err := os.Stat(r.resume); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fn returns a step function through r. fail, if set, is the call's error,
// as participant.apply takes it; flaky makes a child's first attempt fail
// with errTransient, taking no effect.
func (r *tracker) fn(fail error, flaky bool) saga.StepFunc {
	var attempts atomic.Int64
	return func(ctx context.Context, c *saga.Call) error {
		// Whatever ctx says: a call that started is recorded.
		if _, err := r.db.ExecContext(context.Background(), r.record, c.SagaID, c.Step, c.Phase.String(), r.pid); err != nil {
			return err
		}
		n := r.calls.Add(1)
		var err error
		if flaky && r.child && attempts.Add(1) == 1 {
			err = errTransient
		} else {
			err = r.apply(ctx, c.Key, fail)
		}
		if n == r.stopAt {
			r.pause()
		}
		return err
	}
}

// stallScenario is a saga that TestStalledCoordinatorStartsNothing runs in a
// child per boundary, frozen at that boundary.
type stallScenario struct {
	name  string
	steps []string
	tcc   bool
	want  saga.Status // how the instance ends
	def   func(r *tracker) *saga.Definition
	// boundaries: after the n-th call of the child, or after its n-th
	// durable write; calls is how many calls the child started by then.
	boundaries []boundary
}

type boundary struct {
	after string // "call" or "commit"
	n     int
	calls int
}

func (b boundary) String() string { return fmt.Sprintf("after-%s-%d", b.after, b.n) }

var stallScenarios = []stallScenario{{
	// Calls: reserve, charge, ship (declined) actions; ship, charge,
	// reserve compensations. Writes: begin, reserve's result, charge's
	// result, the failure, the end.
	name: "saga", steps: []string{"reserve", "charge", "ship"}, want: saga.Compensated,
	def: func(r *tracker) *saga.Definition {
		return saga.Define("stall-saga", 1,
			saga.Step("reserve", r.fn(nil, false), r.fn(nil, false)),
			saga.Step("charge", r.fn(nil, false), r.fn(nil, false)),
			saga.Step("ship", r.fn(errDeclined, false), r.fn(nil, false)))
	},
	boundaries: []boundary{
		{"call", 1, 1}, {"call", 2, 2}, {"call", 3, 3}, {"call", 4, 4}, {"call", 5, 5}, {"call", 6, 6},
		{"commit", 1, 0}, {"commit", 2, 1}, {"commit", 3, 2}, {"commit", 4, 3},
	},
}, {
	// Calls: reserve; charge, whose first attempt fails and whose policy
	// retries it; ship (declined); the compensations of ship and charge;
	// reserve's, whose first attempt fails and which the coordinator
	// retries.
	name: "retry", steps: []string{"reserve", "charge", "ship"}, want: saga.Compensated,
	def: func(r *tracker) *saga.Definition {
		policy := retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)))
		return saga.Define("stall-retry", 1,
			saga.Step("reserve", r.fn(nil, false), r.fn(nil, true)),
			saga.Step("charge", r.fn(nil, true), r.fn(nil, false), saga.WithPolicy(policy)),
			saga.Step("ship", r.fn(errDeclined, false), r.fn(nil, false)))
	},
	boundaries: []boundary{{"call", 2, 2}, {"call", 7, 7}},
}, {
	// Calls: the tries of a and b (declined), the cancels of b and a.
	// Writes: begin, a's result, the failure, the end.
	name: "tcc", steps: []string{"a", "b"}, tcc: true, want: saga.Compensated,
	def: func(r *tracker) *saga.Definition {
		return saga.DefineTCC("stall-tcc", 1,
			saga.Participant("a", r.fn(nil, false), r.fn(nil, false), r.fn(nil, false)),
			saga.Participant("b", r.fn(errDeclined, false), r.fn(nil, false), r.fn(nil, false)))
	},
	boundaries: []boundary{{"call", 1, 1}, {"call", 2, 2}, {"call", 3, 3}, {"call", 4, 4}, {"commit", 3, 2}},
}, {
	// Writes: begin, a's result, b's result with the confirms owed.
	name: "tcc-confirm", steps: []string{"a", "b"}, tcc: true, want: saga.Succeeded,
	def: func(r *tracker) *saga.Definition {
		return saga.DefineTCC("stall-tcc-confirm", 1,
			saga.Participant("a", r.fn(nil, false), r.fn(nil, false), r.fn(nil, false)),
			saga.Participant("b", r.fn(nil, false), r.fn(nil, false), r.fn(nil, false)))
	},
	boundaries: []boundary{{"commit", 3, 2}},
}}

func stallScenarioNamed(name string) stallScenario {
	for _, sc := range stallScenarios {
		if sc.name == name {
			return sc
		}
	}
	panic("no scenario " + name)
}

// TestStallChild runs one saga of stallScenarios with a lease of stallLease,
// pauses at the boundary its parent names until the parent lets it go on,
// and prints what Run returned. It runs only as a child of
// TestStalledCoordinatorStartsNothing.
func TestStallChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only as a child of TestStalledCoordinatorStartsNothing")
	}
	db, err := sql.Open(os.Getenv("STALL_DRIVER"), os.Getenv("STALL_DSN"))
	require.NoError(t, err)
	defer db.Close()
	dialect := os.Getenv("STALL_DIALECT")
	after := os.Getenv("STALL_AFTER")
	n, err := strconv.Atoi(os.Getenv("STALL_N"))
	require.NoError(t, err)
	r := newTracker(&store{DB: &servicetest.DB{DB: db, Dialect: dialect}, d: dialectNamed(dialect)})
	r.child, r.resume = true, os.Getenv("STALL_RESUME")
	var commits atomic.Int64
	hook := func() {}
	if after == "call" {
		r.stopAt = int64(n)
	} else {
		hook = func() {
			if commits.Add(1) == int64(n) {
				r.pause()
			}
		}
	}
	c := saga.New(saga.WithStore(db, dialectNamed(dialect)), saga.WithLease(stallLease), saga.WithAfterCommit(hook),
		saga.WithAttempts(3, time.Millisecond, time.Millisecond))
	err = c.Run(context.Background(), stallScenarioNamed(os.Getenv("STALL_SCENARIO")).def(r), os.Getenv("STALL_ID"), nil)
	fmt.Printf("stall: run: %v; lease lost: %t\n", err, errors.Is(err, saga.ErrLeaseLost))
}

// stallLease is the lease of the children of
// TestStalledCoordinatorStartsNothing: long enough for a child to reach its
// boundary, renewing as it goes, on a machine loaded by a dozen children
// and the race detector (a child renews every third of the lease, and gives
// the instance up when a renewal takes longer than that). On SQLite, the
// children and the recovery also share one file, which lets one writer in
// at a time.
const stallLease = 3 * time.Second

// A coordinator frozen (SIGSTOP) at a boundary between two calls, past its
// lease, while another process takes the instance over and finishes it,
// starts no call once it goes on (SIGCONT): not the next action, nor the
// next compensation, nor a retry, whether its step's policy or the
// coordinator makes it, nor a TCC cancel or confirm. Its Run returns
// ErrLeaseLost, and the instance ends with each effect once.
func TestStalledCoordinatorStartsNothing(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		_, err := s.ExecContext(context.Background(), callsTable[s.Dialect])
		require.NoError(t, err)
		r := newTracker(s)
		var defs []*saga.Definition
		for _, sc := range stallScenarios {
			defs = append(defs, sc.def(r))
		}
		recovery := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(defs...),
			saga.WithAttempts(3, time.Millisecond, time.Millisecond))
		for _, sc := range stallScenarios {
			t.Run(sc.name, func(t *testing.T) { stall(t, s, recovery, sc) })
		}
	})
}

// stalled is a child frozen at a boundary.
type stalled struct {
	boundary
	id     string
	resume string // the file whose creation ends its pause
	child  *servicetest.Child
}

// stall runs sc in a child per boundary, at once, freezes each at its
// boundary, recovers their instances here, lets the children go on, and
// checks what each did then.
func stall(t *testing.T, s *store, recovery *saga.Coordinator, sc stallScenario) {
	ctx := context.Background()
	start := func(b boundary, try int) *stalled {
		id := sc.name + "-" + b.String()
		if try > 1 {
			id += "-" + strconv.Itoa(try)
		}
		st := &stalled{boundary: b, id: id, resume: filepath.Join(t.TempDir(), "resume")}
		st.child = servicetest.StartChild(t, "TestStallChild", "STALL_DRIVER="+s.Driver, "STALL_DSN="+s.DSN,
			"STALL_DIALECT="+s.Dialect, "STALL_SCENARIO="+sc.name, "STALL_ID="+st.id, "STALL_AFTER="+b.after,
			"STALL_N="+strconv.Itoa(b.n), "STALL_RESUME="+st.resume)
		return st
	}
	var all []*stalled
	for _, b := range sc.boundaries {
		all = append(all, start(b, 1))
	}
	// Every child reaches its boundary before any is frozen: one frozen in
	// the middle of a write would hold SQLite's lock. A child that gave its
	// instance up before its boundary, because a renewal took longer than
	// a third of its lease on a loaded machine, is started again with an
	// instance of its own, twice at most; the instance it gave up is left
	// to recovery.
	for i := range all {
		for try := 1; ; try++ {
			st := all[i]
			reached := func() bool { return strings.Contains(st.child.Output(), "stall: boundary reached") }
			require.Eventually(t, func() bool {
				select {
				case <-st.child.Done():
					return true
				default:
					return reached()
				}
			}, 3*time.Minute, time.Millisecond)
			if reached() {
				break
			}
			out := st.child.Output()
			require.True(t, try < 3 && strings.Contains(out, "lease lost: true"),
				"%s: the child ended before its boundary:\n%s", st.id, out)
			t.Logf("%s: the child lost its lease before its boundary; starting it again:\n%s", st.id, out)
			all[i] = start(st.boundary, try+1)
		}
	}
	for _, st := range all {
		st.child.Stop(t)
	}

	// The children are frozen at their boundaries. Once the lease of each
	// has run out, as the database sees it, recovery here takes its
	// instance over and drives it to its end.
	deadline := time.Now().Add(time.Minute)
	ended := func() bool {
		for _, st := range all {
			status, err := recovery.InstanceStatus(ctx, st.id)
			require.NoError(t, err)
			if status != saga.Succeeded && status != saga.Compensated {
				return false
			}
		}
		return true
	}
	for !ended() {
		n, err := recovery.Recover(ctx, 1)
		if err != nil && s.Dialect == "sqlite" && strings.Contains(err.Error(), "locked") {
			// A child was frozen inside a write (a renewal): let them
			// finish it, and freeze them again. They stay at their
			// boundaries.
			t.Logf("a frozen child held SQLite's lock: %v", err)
			for _, st := range all {
				st.child.Continue()
			}
			time.Sleep(20 * time.Millisecond)
			for _, st := range all {
				st.child.Stop(t)
			}
			continue
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "the frozen instances did not all end within a minute")
		if n == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}

	var last int64
	require.NoError(t, s.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM calls").Scan(&last))
	for _, st := range all {
		require.NoError(t, os.WriteFile(st.resume, nil, 0o600))
		st.child.Continue()
	}
	for _, st := range all {
		select {
		case <-st.child.Done():
		case <-time.After(time.Minute):
			t.Fatalf("%s: the child did not end:\n%s", st.id, st.child.Output())
		}
	}
	for _, st := range all {
		t.Run(st.boundary.String(), func(t *testing.T) {
			out := st.child.Output()
			assert.Contains(t, out, "lease lost: true", "the child's Run returns ErrLeaseLost")
			before, after := childCalls(t, s, st.id, st.child.Pid(), last)
			assert.Len(t, before, st.calls, "the child was frozen at its boundary")
			assert.Empty(t, after, "the child started calls after it was taken over:\n%s", out)
			assert.Equal(t, sc.want, checkAllOrNothing(t, s, recovery, st.id, sc.steps, sc.tcc), "recovery ended the instance")
		})
	}
}

// childCalls returns the calls of saga id that process pid started, as
// "step/phase", up to the call last and after it.
func childCalls(t *testing.T, s *store, id string, pid int, last int64) (before, after []string) {
	t.Helper()
	rows, err := s.QueryContext(context.Background(),
		rebind(s.Dialect, "SELECT id, step, phase FROM calls WHERE saga_id = ? AND pid = ? ORDER BY id"), id, pid)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var (
			n           int64
			step, phase string
		)
		require.NoError(t, rows.Scan(&n, &step, &phase))
		if n <= last {
			before = append(before, step+"/"+phase)
		} else {
			after = append(after, step+"/"+phase)
		}
	}
	require.NoError(t, rows.Err())
	return before, after
}

// A coordinator whose database stops answering (its renewals hang) starts
// no call once too little is left of the lease it last confirmed: it gives
// the instance up, Run returns ErrLeaseLost, and another coordinator
// finishes the compensations.
func TestUnansweredRenewalsStopCalls(t *testing.T) {
	for _, database := range servicetest.Databases {
		if database.Dialect == "sqlite" {
			continue // no connection to cut
		}
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, database.Open(t))
			proxied, proxy := servicetest.ThroughProxy(t, s.DB)
			ctx := context.Background()
			p := newParticipant(s)
			var running atomic.Bool // the first coordinator's Run is under way
			var late atomic.Int32   // compensations it called after the database went silent
			compensate := func(ctx context.Context, c *saga.Call) error {
				if running.Load() {
					late.Add(1)
					proxy.Restore()
				}
				return p.apply(ctx, c.Key, nil)
			}
			action := func(ctx context.Context, c *saga.Call) error { return p.apply(ctx, c.Key, nil) }
			def := saga.Define("silent", 1,
				saga.Step("a", action, compensate),
				saga.Step("b", action, compensate),
				saga.Step("c", func(context.Context, *saga.Call) error { return errDeclined },
					func(ctx context.Context, c *saga.Call) error {
						if !running.Load() {
							return p.apply(ctx, c.Key, nil)
						}
						// The database goes silent, and more than half of the
						// lease passes before the next compensation.
						proxy.Hold()
						time.Sleep(600 * time.Millisecond)
						return p.apply(ctx, c.Key, nil)
					}))
			first := saga.New(saga.WithStore(proxied.DB, s.d), saga.WithLease(time.Second),
				saga.WithOnEvent(func(e saga.Event) {
					if e.Kind == saga.LeaseLost {
						proxy.Restore() // so that the lease is released at once
					}
				}))
			running.Store(true)
			done := make(chan error, 1)
			go func() { done <- first.Run(ctx, def, "silent-1", nil) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatalf("Run did not return: a renewal waits for ever; %d compensations called with the lease unconfirmed", late.Load())
			}
			running.Store(false)
			assert.ErrorIs(t, err, saga.ErrLeaseLost)
			assert.Zero(t, late.Load(), "compensations called with the lease unconfirmed")

			second := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def))
			recoverUntilDone(t, second, "silent-1")
			assert.Equal(t, saga.Compensated, checkAllOrNothing(t, s, second, "silent-1", []string{"a", "b", "c"}, false))
		})
	}
}
