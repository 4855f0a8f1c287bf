package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/resilience-go/resilience/saga"
)

// FuzzInMemory runs sagas drawn from the input (steps, parallel groups,
// failing actions, compensations that fail a few times) on an in-memory
// coordinator and checks the outcome against a model: the actions run group
// by group up to the first group with a failure; the steps that ran are
// compensated group by group in reverse, each compensation retried up to
// the attempts of a round; and a compensation that fails them all leaves the
// saga stuck, the groups before it untouched.
func FuzzInMemory(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0})
	f.Add([]byte{3, 0, 1, 0})
	f.Add([]byte{4, 0, 2, 3, 1})
	f.Add([]byte{4, 4, 2, 9, 1})
	f.Add([]byte{5, 8, 0, 3, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		const attempts = 2
		type stepSpec struct {
			fails     bool
			parallel  bool // in one group with the step before
			undoFails int  // the compensation fails this many times first
		}
		n := 1 + int(data[0])%5
		specs := make([]stepSpec, n)
		for i := range specs {
			var b byte
			if i+1 < len(data) {
				b = data[i+1]
			}
			specs[i] = stepSpec{fails: b&1 != 0, parallel: i > 0 && b&2 != 0, undoFails: int(b>>2) % 4}
		}
		var groups [][]int
		for i, s := range specs {
			if !s.parallel {
				groups = append(groups, nil)
			}
			groups[len(groups)-1] = append(groups[len(groups)-1], i)
		}

		var mu sync.Mutex
		var actions []int
		undos := map[int]int{}
		var undoOrder []int
		var items []saga.Item
		for _, g := range groups {
			var steps []saga.StepItem
			for _, i := range g {
				steps = append(steps, saga.Step(fmt.Sprint("s", i),
					func(ctx context.Context, c *saga.Call) error {
						mu.Lock()
						defer mu.Unlock()
						actions = append(actions, i)
						if specs[i].fails {
							return errDeclined
						}
						return nil
					},
					func(ctx context.Context, c *saga.Call) error {
						mu.Lock()
						defer mu.Unlock()
						undos[i]++
						undoOrder = append(undoOrder, i)
						if undos[i] <= specs[i].undoFails {
							return errors.New("undo failed")
						}
						return nil
					}))
			}
			if len(steps) == 1 {
				items = append(items, steps[0])
			} else {
				items = append(items, saga.Parallel(steps...))
			}
		}
		c := saga.New(saga.WithAttempts(attempts, time.Microsecond, time.Microsecond))
		err := c.Run(context.Background(), saga.Define("fuzz", 1, items...), "f", nil)

		// The model.
		failedGroup, failedStep := -1, -1
		for g, steps := range groups {
			for _, i := range steps {
				if specs[i].fails && failedStep < 0 {
					failedGroup, failedStep = g, i
				}
			}
			if failedGroup >= 0 {
				break
			}
		}
		var wantActions []int // in group order; any order within a group
		for g, steps := range groups {
			if failedGroup >= 0 && g > failedGroup {
				break
			}
			wantActions = append(wantActions, steps...)
		}
		if failedGroup < 0 {
			if err != nil {
				t.Fatalf("no step failed, but Run returned %v", err)
			}
			if len(undoOrder) > 0 {
				t.Fatalf("compensations ran in a saga that succeeded: %v", undoOrder)
			}
			checkGroups(t, groups, actions, wantActions)
			return
		}
		var se *saga.Error
		if !errors.As(err, &se) || !errors.Is(err, errDeclined) {
			t.Fatalf("Run returned %v, want a *saga.Error matching the step's error", err)
		}
		if se.Step != fmt.Sprint("s", failedStep) {
			t.Fatalf("Error.Step = %s, want s%d", se.Step, failedStep)
		}
		checkGroups(t, groups, actions, wantActions)
		wantStatus := saga.Compensated
		wantUndos := map[int]int{}
		var compensatedGroups [][]int
		for g := failedGroup; g >= 0; g-- {
			compensatedGroups = append(compensatedGroups, groups[g])
			stuck := false
			for _, i := range groups[g] {
				wantUndos[i] = min(specs[i].undoFails+1, attempts)
				stuck = stuck || specs[i].undoFails >= attempts
			}
			if stuck {
				wantStatus = saga.Stuck
				break
			}
		}
		if se.Status != wantStatus {
			t.Fatalf("status %v, want %v", se.Status, wantStatus)
		}
		if (se.Compensation != nil) != (wantStatus == saga.Stuck) {
			t.Fatalf("compensation error %v with status %v", se.Compensation, se.Status)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(undos) != fmt.Sprint(wantUndos) {
			t.Fatalf("compensation calls %v, want %v", undos, wantUndos)
		}
		// Each group's compensations, with their retries, before the
		// group's before it.
		seen := map[int]int{} // step -> group rank
		for rank, g := range compensatedGroups {
			for _, i := range g {
				seen[i] = rank
			}
		}
		for k := 1; k < len(undoOrder); k++ {
			if seen[undoOrder[k]] < seen[undoOrder[k-1]] {
				t.Fatalf("compensations out of group order: %v (groups %v)", undoOrder, compensatedGroups)
			}
		}
	})
}

// checkGroups checks that the actions ran group by group, each group's in
// any order.
func checkGroups(t *testing.T, groups [][]int, got, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("actions %v, want %v in group order", got, want)
	}
	k := 0
	for _, g := range groups {
		if k >= len(got) {
			break
		}
		part := slices.Clone(got[k:min(k+len(g), len(got))])
		slices.Sort(part)
		if !slices.Equal(part, g[:len(part)]) {
			t.Fatalf("actions %v, want group %v next", got, g)
		}
		k += len(g)
	}
}
