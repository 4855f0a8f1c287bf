package policytest_test

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/policytest"
)

// told is guard with an observer, which it tells of each call as a policy
// must, unless defect names a rule it breaks.
type told struct {
	name   string
	o      resilience.Observer
	defect string
}

// escaped keeps an event on the heap, for the defect that allocates one.
var escaped *resilience.Event

func (p told) Do(ctx context.Context, op resilience.Op) error {
	if p.o != nil && p.defect == "event for a done ctx" {
		p.o.Observe(ctx, resilience.Event{Policy: resilience.PolicyBulkhead, Name: p.name, Kind: resilience.Ignored})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.o == nil {
		return op(ctx)
	}
	start := time.Now()
	err := op(ctx)
	now := time.Now()
	e := resilience.Event{Time: now, Policy: resilience.PolicyBulkhead, Name: p.name, Kind: event.Outcome(ctx, err),
		Duration: now.Sub(start), Err: err}
	octx := ctx
	switch p.defect {
	case "no event":
		return err
	case "two events":
		p.o.Observe(ctx, e)
	case "background ctx":
		octx = context.Background()
	case "cancellation counted as a failure":
		if err != nil {
			e.Kind = resilience.Failure
		}
	case "allocates its event":
		escaped = &resilience.Event{Name: p.name}
	case "no duration":
		e.Duration = 0
	case "no name":
		e.Name = ""
	case "error dropped":
		e.Err = nil
	}
	p.o.Observe(octx, e)
	return err
}

func TestRunObservedPassesAGoodPolicy(t *testing.T) {
	policytest.RunObserved(t, resilience.PolicyBulkhead, func(name string, o resilience.Observer) resilience.Policy {
		return told{name: name, o: o}
	})
}

// brokenObserved maps each defect of told to the check that must catch it.
var brokenObserved = map[string]string{
	"event for a done ctx":              "DoneContext",
	"no event":                          "Success",
	"two events":                        "Success",
	"background ctx":                    "CallContext",
	"cancellation counted as a failure": "CallerCancelled",
	"allocates its event":               "NoAllocs",
	"no duration":                       "Success",
	"no name":                           "Success",
	"error dropped":                     "Failure",
}

// TestBrokenObserved runs RunObserved against each defect of told. It runs
// only in the child processes that TestRunObservedCatchesBrokenPolicies
// starts, since every one of its subtests is meant to fail.
func TestBrokenObserved(t *testing.T) {
	if os.Getenv("POLICYTEST_BROKEN") != "1" {
		t.Skip("runs only in a child process of TestRunObservedCatchesBrokenPolicies")
	}
	for defect := range brokenObserved {
		t.Run(defect, func(t *testing.T) {
			policytest.RunObserved(t, resilience.PolicyBulkhead, func(name string, o resilience.Observer) resilience.Policy {
				return told{name: name, o: o, defect: defect}
			})
		})
	}
}

// Each defect fails the check for the rule it breaks.
func TestRunObservedCatchesBrokenPolicies(t *testing.T) {
	defects := make([]string, 0, len(brokenObserved))
	for defect := range brokenObserved {
		defects = append(defects, defect)
	}
	sort.Strings(defects)
	for _, defect := range defects {
		rule := brokenObserved[defect]
		t.Run(defect, func(t *testing.T) {
			if rule == "NoAllocs" && policytest.RaceEnabled {
				t.Skip("RunObserved counts allocations only without the race detector; make test runs this without it")
			}
			t.Parallel()
			out := runBrokenTest(t, "TestBrokenObserved", defect, rule)
			assert.Contains(t, out, "--- FAIL: TestBrokenObserved/"+subtestName(defect)+"/"+rule+" ",
				"the %s check did not fail for a policy whose defect is %q", rule, defect)
		})
	}
}

func TestRecorder(t *testing.T) {
	var rec policytest.Recorder
	ctx := context.WithValue(context.Background(), recorderKey{}, 1)
	rec.Observe(ctx, resilience.Event{Kind: resilience.Retry})
	rec.Observe(context.Background(), resilience.Event{Kind: resilience.GaveUp})
	assert.Equal(t, []resilience.EventKind{resilience.Retry, resilience.GaveUp}, rec.Kinds())
	assert.Len(t, rec.Events(), 2)
	assert.Equal(t, 1, rec.Contexts()[0].Value(recorderKey{}))
	rec.Reset()
	assert.Empty(t, rec.Events())
	assert.True(t, policytest.Ends(resilience.FellBack))
	assert.False(t, policytest.Ends(resilience.Retry))
}

type recorderKey struct{}
