package policytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
)

// Policies that keep the contract pass.
func TestRunPassesGoodPolicies(t *testing.T) {
	tests := []struct {
		name string
		new  func() resilience.Policy
	}{
		{"Chain()", func() resilience.Policy { return resilience.Chain() }},
		{"Chain of four", func() resilience.Policy {
			return resilience.Chain(guard{}, guard{}, guard{}, guard{})
		}},
		{"goroutine per call, joined", func() resilience.Policy { return joined{} }},
		{"slot held and released", func() resilience.Policy { return &slot{sem: make(chan struct{}, 1)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { policytest.Run(t, tt.new) })
	}
}

// guard checks ctx and calls op: the least a policy can do inside a chain,
// which checks op; alone, it calls a nil op.
type guard struct{}

func (guard) Do(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return op(ctx)
}

// joined runs op on a goroutine of its own, waits for it and carries a panic
// back to the caller.
type joined struct{}

func (joined) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("policytest: joined.Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var (
		err error
		pv  any
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { pv = recover() }()
		err = op(ctx)
	}()
	<-done
	if pv != nil {
		panic(pv)
	}
	return err
}

var errFull = fmt.Errorf("slot taken: %w", resilience.ErrRejected)

// slot admits one call at a time and refuses the rest.
type slot struct{ sem chan struct{} }

func (s *slot) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("policytest: slot.Do: nil Op")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.sem <- struct{}{}:
	default:
		return errFull
	}
	defer func() { <-s.sem }()
	return op(ctx)
}

// broken holds policies that each break one rule of the contract, with the
// check that must catch it.
var broken = map[string]struct {
	rule string
	new  func() resilience.Policy
}{
	"nil op called": {"NilOp", func() resilience.Policy { return guard{} }},
	"returns before op": {"Synchronous", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			go op(ctx) //nolint:errcheck // the defect under test
			return nil
		})
	}},
	"overlapping attempts": {"Synchronous", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() { errs[i] = op(ctx) })
			}
			wg.Wait()
			return errs[0]
		})
	}},
	"background context": {"ContextPropagated", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return op(context.Background())
		})
	}},
	"cancellation dropped": {"ContextPropagated", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return op(context.WithoutCancel(ctx))
		})
	}},
	"calls op with a done context": {"DoneContext", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error { return op(ctx) })
	}},
	"error replaced": {"ErrorKept", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := guard.Do(guard{}, ctx, op); err != nil {
				return errors.New("call failed")
			}
			return nil
		})
	}},
	"error formatted with %v": {"ErrorKept", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := guard.Do(guard{}, ctx, op); err != nil {
				return fmt.Errorf("call: %v", err)
			}
			return nil
		})
	}},
	"panic swallowed": {"PanicPropagates", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("panic: %v", v)
				}
			}()
			return guard.Do(guard{}, ctx, op)
		})
	}},
	"slot kept after a panic": {"PanicPropagates", func() resilience.Policy {
		sem := make(chan struct{}, 1)
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			select {
			case sem <- struct{}{}:
			default:
				return errFull
			}
			err := op(ctx)
			<-sem // not deferred: a panic keeps the slot
			return err
		})
	}},
	"abandons an op that ignores its ctx": {"Synchronous", func() resilience.Policy {
		// A timeout of the kind that returns at its deadline and leaves
		// the call running.
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			done := make(chan error, 1)
			go func() { done <- op(ctx) }()
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case err := <-done:
				return err
			case <-t.C:
				return errors.New("timed out")
			}
		})
	}},
	"later attempts lose cancellation": {"ContextPropagated", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			var err error
			for attempt := range 3 {
				if err = ctx.Err(); err != nil {
					return err
				}
				c := ctx
				if attempt > 0 {
					c = context.WithoutCancel(ctx)
				}
				if err = op(c); err == nil {
					return nil
				}
			}
			return err
		})
	}},
	"drops the deadline": {"ContextPropagated", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Values and cancellation survive; the deadline does not.
			c, cancel := context.WithCancel(context.WithoutCancel(ctx))
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			return op(c)
		})
	}},
	"calls op again after a panic": {"PanicPropagates", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			defer func() {
				if v := recover(); v != nil {
					func() { defer func() { recover() }(); _ = op(ctx) }()
					panic(v)
				}
			}()
			return op(ctx)
		})
	}},
	"keeps one of four slots after a panic": {"PanicPropagates", func() resilience.Policy {
		sem := make(chan struct{}, 4)
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			select {
			case sem <- struct{}{}:
			default:
				return errFull
			}
			err := op(ctx)
			<-sem // not deferred: a panic keeps the slot
			return err
		})
	}},
	"goroutine left running": {"NoLeakedGoroutines", func() resilience.Policy {
		return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
			go func() { // a watchdog that outlives the call
				t := time.NewTimer(time.Hour)
				defer t.Stop()
				<-t.C
			}()
			return guard.Do(guard{}, ctx, op)
		})
	}},
}

// racy counts calls in a plain int: a data race the race detector reports.
type racy struct{ calls int }

func (r *racy) Do(ctx context.Context, op resilience.Op) error {
	r.calls++
	return guard.Do(guard{}, ctx, op)
}

// TestBroken runs the suite against each broken policy. It runs only in the
// child processes that TestRunCatchesBrokenPolicies starts, since every one of
// its subtests is meant to fail.
func TestBroken(t *testing.T) {
	if os.Getenv("POLICYTEST_BROKEN") != "1" {
		t.Skip("runs only in a child process of TestRunCatchesBrokenPolicies")
	}
	for name, b := range broken {
		t.Run(name, func(t *testing.T) { policytest.Run(t, b.new) })
	}
	t.Run("racy", func(t *testing.T) {
		policytest.Run(t, func() resilience.Policy { return &racy{} })
	})
}

// Each broken policy fails the check for the rule it breaks.
func TestRunCatchesBrokenPolicies(t *testing.T) {
	names := make([]string, 0, len(broken))
	for name := range broken {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b := broken[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := runBroken(t, name, b.rule)
			assert.Contains(t, out, "--- FAIL: TestBroken/"+subtestName(name)+"/"+b.rule+" ",
				"the %s check did not fail for a policy whose defect is %q", b.rule, name)
		})
	}
	t.Run("racy", func(t *testing.T) {
		if !policytest.RaceEnabled {
			t.Skip("a data race is reported only in a build with -race")
		}
		t.Parallel()
		out := runBroken(t, "racy", "Concurrent")
		assert.Contains(t, out, "WARNING: DATA RACE", "the race detector did not report the racy policy")
		assert.Contains(t, out, "--- FAIL: TestBroken/racy/Concurrent ", "the Concurrent check did not fail for the racy policy")
	})
}

// runBroken runs the check for rule against the broken policy name in a child
// process, which must fail, and returns what it printed.
func runBroken(t *testing.T, name, rule string) string {
	t.Helper()
	return runBrokenTest(t, "TestBroken", name, rule)
}

// runBrokenTest runs subtest rule of subtest name of test in a child
// process, which must fail, and returns what it printed.
func runBrokenTest(t *testing.T, test, name, rule string) string {
	t.Helper()
	pattern := "^" + test + "$/^" + regexp.QuoteMeta(subtestName(name)) + "$/^" + rule + "$"
	cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "POLICYTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the suite passed a policy whose defect is %q:\n%s", name, out)
	return string(out)
}

// subtestName is the name the testing package gives a subtest called name.
func subtestName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c == ' ' {
			b[i] = '_'
		}
	}
	return string(b)
}
