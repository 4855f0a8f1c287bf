package saga_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

// modelStep is what the model draws for one step or participant.
type modelStep struct {
	name       string
	fails      bool          // the action (or try) is declined
	idempotent bool          // saga steps only
	undoFlaky  int           // the compensation (or cancel, or confirm) fails this many times first
	slow       time.Duration // the action sleeps this long
	parallel   bool          // runs in one group with the step before (saga steps only)
}

// recorder watches every call the coordinators make.
type recorder struct {
	mu       sync.Mutex
	calls    map[saga.Key]int
	inFlight map[saga.Key]bool
	twice    []saga.Key // calls that ran while another call of the same key did
}

func (r *recorder) enter(k saga.Key) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inFlight[k] {
		r.twice = append(r.twice, k)
	}
	r.inFlight[k] = true
	r.calls[k]++
	return r.calls[k]
}

func (r *recorder) leave(k saga.Key) {
	r.mu.Lock()
	delete(r.inFlight, k)
	r.mu.Unlock()
}

// A model of the saga's guarantees, checked on random sagas on SQLite: random
// step failures, flaky compensations, slow steps, deadlines, a crash after
// a random durable write, and one to three coordinators recovering at once.
//
//   - Every instance ends succeeded or compensated, all or nothing: every
//     action's effect is undone once, or none is.
//   - A saga with a declined step never succeeds; one with no failure, no
//     crash and no deadline always does.
//   - A step that is not idempotent never runs its action twice; no call
//     runs while another call of the same key does; a succeeded saga ran no
//     compensation, and a compensated one no confirm.
func TestSagaModel(t *testing.T) {
	s := newStore(t, servicetest.SQLite(t))
	p := newParticipant(s)
	var seq atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		n := seq.Add(1)
		id := fmt.Sprint("m-", n)
		tcc := rapid.Bool().Draw(rt, "tcc")
		steps := make([]modelStep, rapid.IntRange(1, 4).Draw(rt, "steps"))
		for i := range steps {
			steps[i] = modelStep{
				name:       fmt.Sprint("s", i),
				fails:      rapid.IntRange(0, 5).Draw(rt, "fails") == 0,
				idempotent: !tcc && rapid.Bool().Draw(rt, "idempotent"),
				undoFlaky:  rapid.IntRange(0, 3).Draw(rt, "undoFlaky"),
				slow:       time.Duration(rapid.IntRange(0, 2).Draw(rt, "slow")) * time.Millisecond,
				parallel:   !tcc && i > 0 && rapid.IntRange(0, 3).Draw(rt, "parallel") == 0,
			}
		}
		deadline := rapid.SampledFrom([]time.Duration{0, 0, time.Millisecond, time.Minute}).Draw(rt, "deadline")
		crashAt := rapid.IntRange(0, 6).Draw(rt, "crashAt") // 0: no crash
		coordinators := rapid.IntRange(1, 3).Draw(rt, "coordinators")

		rec := &recorder{calls: map[saga.Key]int{}, inFlight: map[saga.Key]bool{}}
		var items []saga.Item
		var members []saga.TCCItem
		if deadline > 0 {
			items = append(items, saga.Timeout(deadline))
			members = append(members, saga.Timeout(deadline))
		}
		var group []saga.StepItem
		flush := func() {
			switch len(group) {
			case 0:
			case 1:
				items = append(items, group[0])
			default:
				items = append(items, saga.Parallel(group...))
			}
			group = nil
		}
		for _, st := range steps {
			forward := func(ctx context.Context, c *saga.Call) error {
				rec.enter(c.Key)
				defer rec.leave(c.Key)
				if st.slow > 0 {
					time.Sleep(st.slow)
				}
				var fail error
				if st.fails {
					fail = errDeclined
				}
				return p.apply(ctx, c.Key, fail)
			}
			settle := func(ctx context.Context, c *saga.Call) error {
				if rec.enter(c.Key) <= st.undoFlaky {
					rec.leave(c.Key)
					return errors.New("unavailable")
				}
				defer rec.leave(c.Key)
				return p.apply(ctx, c.Key, nil)
			}
			if tcc {
				members = append(members, saga.Participant(st.name, forward, settle, settle))
				continue
			}
			var opts []saga.StepOption
			if st.idempotent {
				opts = append(opts, saga.Idempotent())
			}
			if !st.parallel {
				flush()
			}
			group = append(group, saga.Step(st.name, forward, settle, opts...))
		}
		flush()
		var def *saga.Definition
		if tcc {
			def = saga.DefineTCC(id, 1, members...)
		} else {
			def = saga.Define(id, 1, items...)
		}

		opts := []saga.Option{saga.WithStore(s.DB.DB, s.d), saga.WithDefinitions(def),
			saga.WithAttempts(2, time.Millisecond, time.Millisecond), saga.WithRoundBackoff(time.Millisecond, 2*time.Millisecond)}
		first := saga.New(append(opts, saga.WithAfterCommit(crashAfter(crashAt)))...)
		crashed := runCrashing(func() { _ = first.Run(context.Background(), def, id, nil) })
		if crashed {
			_, err := s.ExecContext(context.Background(), "UPDATE saga_instances SET lease_until = 0 WHERE id = ?", id)
			require.NoError(rt, err)
		}
		var wg sync.WaitGroup
		errs := make([]error, coordinators)
		for k := range coordinators {
			c := saga.New(append(opts, saga.WithOwner(fmt.Sprint("m", k)))...)
			wg.Go(func() { errs[k] = drain(c, id) })
		}
		wg.Wait()
		require.NoError(rt, errors.Join(errs...))

		names := make([]string, len(steps))
		anyFails := false
		for i, st := range steps {
			names[i] = st.name
			anyFails = anyFails || st.fails
		}
		status := checkAllOrNothing(rt, s, first, id, names, tcc)
		if anyFails && status != saga.Compensated {
			rt.Fatalf("a saga with a declined step ended %v", status)
		}
		if !anyFails && !crashed && deadline == 0 && status != saga.Succeeded {
			rt.Fatalf("a saga with no failure, crash or deadline ended %v", status)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.twice) > 0 {
			rt.Fatalf("calls ran twice at once: %v", rec.twice)
		}
		for k, calls := range rec.calls {
			switch k.Phase {
			case saga.Action, saga.Try:
				if calls > 1 && !steps[stepIndex(k.Step)].idempotent {
					rt.Fatalf("%v ran %d times, and is not idempotent", k, calls)
				}
			case saga.Compensate, saga.Cancel:
				if status == saga.Succeeded {
					rt.Fatalf("%v ran in a saga that succeeded", k)
				}
			case saga.Confirm:
				if status == saga.Compensated {
					rt.Fatalf("%v ran in a saga that was compensated", k)
				}
			}
		}
	})
}

// drain recovers until the instance id has ended.
func drain(c *saga.Coordinator, id string) error {
	ctx := context.Background()
	for range 5000 {
		status, err := c.InstanceStatus(ctx, id)
		if err != nil {
			return err
		}
		if status != saga.Running && status != saga.Compensating && status != saga.Confirming {
			return nil
		}
		if _, err := c.Recover(ctx, 1); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("saga %s did not end", id)
}

func stepIndex(name string) int {
	var i int
	fmt.Sscanf(name, "s%d", &i) //nolint:errcheck // names are s0, s1...
	return i
}
