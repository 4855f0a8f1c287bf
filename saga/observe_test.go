package saga_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
)

// told is an event as the tests compare it: its kind, subject and attempt.
type told struct {
	kind    resilience.EventKind
	subject string
	attempt int
}

func toldOf(events []resilience.Event) []told {
	out := make([]told, len(events))
	for i, e := range events {
		out[i] = told{e.Kind, e.Subject, e.Attempt}
	}
	return out
}

type runKey struct{}

// checkCommon checks what every event of a coordinator named "orders" has,
// given by a Run whose ctx carries runKey.
func checkCommon(t *testing.T, rec *policytest.Recorder) {
	t.Helper()
	for i, e := range rec.Events() {
		assert.Equal(t, resilience.PolicySaga, e.Policy, "Policy of %+v", e)
		assert.Equal(t, "orders", e.Name, "Name of %+v", e)
		assert.False(t, e.Time.IsZero(), "Time of %+v", e)
		assert.Equal(t, "run", rec.Contexts()[i].Value(runKey{}), "ctx of %+v", e)
	}
}

// A saga that succeeds tells that it started, each attempt of each step,
// each step's success and its own, with how long it took.
func TestObserverEventsOfASuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		def := saga.Define("checkout", 1,
			saga.Step("reserve", func(context.Context, *saga.Call) error { time.Sleep(time.Second); return nil }, nil),
			saga.Step("charge", func(context.Context, *saga.Call) error {
				if attempts++; attempts < 3 {
					return errors.New("503")
				}
				return nil
			}, nil, saga.WithPolicy(retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(0))))))
		var rec policytest.Recorder
		c := saga.New(saga.WithName("orders"), saga.WithObserver(&rec))
		ctx := context.WithValue(context.Background(), runKey{}, "run")
		require.NoError(t, c.Run(ctx, def, "o-1", nil))
		assert.Equal(t, []told{
			{resilience.Started, "o-1", 0},
			{resilience.Started, "o-1/reserve", 1},
			{resilience.Success, "o-1/reserve", 1},
			{resilience.Started, "o-1/charge", 1},
			{resilience.Started, "o-1/charge", 2},
			{resilience.Started, "o-1/charge", 3},
			{resilience.Success, "o-1/charge", 3},
			{resilience.Success, "o-1", 0},
		}, toldOf(rec.Events()))
		events := rec.Events()
		assert.Equal(t, time.Second, events[2].Duration, "the step's call")
		assert.Equal(t, time.Second, events[7].Duration, "the saga")
		checkCommon(t, &rec)
	})
}

// A saga whose step fails tells the failure, each compensation and its own
// end; a compensation that fails says so in its error.
func TestObserverEventsOfACompensation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refunds := 0
		def := saga.Define("checkout", 1,
			saga.Step("reserve", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { return nil }),
			saga.Step("charge", func(context.Context, *saga.Call) error { return errDeclined },
				func(context.Context, *saga.Call) error {
					if refunds++; refunds < 2 {
						return errors.New("refund service down")
					}
					return nil
				}),
		)
		var rec policytest.Recorder
		c := saga.New(saga.WithName("orders"), saga.WithObserver(&rec), saga.WithAttempts(3, time.Millisecond, time.Millisecond))
		ctx := context.WithValue(context.Background(), runKey{}, "run")
		err := c.Run(ctx, def, "o-2", nil)
		require.ErrorIs(t, err, errDeclined)
		assert.Equal(t, []told{
			{resilience.Started, "o-2", 0},
			{resilience.Started, "o-2/reserve", 1},
			{resilience.Success, "o-2/reserve", 1},
			{resilience.Started, "o-2/charge", 1},
			{resilience.Failure, "o-2/charge", 1},
			{resilience.Started, "o-2/charge", 1},
			{resilience.Failure, "o-2/charge", 1},
			{resilience.Started, "o-2/charge", 2},
			{resilience.Compensated, "o-2/charge", 2},
			{resilience.Started, "o-2/reserve", 1},
			{resilience.Compensated, "o-2/reserve", 1},
			{resilience.Compensated, "o-2", 0},
		}, toldOf(rec.Events()))
		events := rec.Events()
		assert.Equal(t, errDeclined, events[4].Err, "the action's error, as it is")
		assert.EqualError(t, events[6].Err, "compensate: refund service down", "a compensation's error names the phase")
		assert.Equal(t, err, events[11].Err, "the saga's Error")
		checkCommon(t, &rec)
	})
}

// An in-memory saga whose compensation fails every attempt of its round is
// stuck: an alert (an Error) and Dead.
func TestObserverEventsOfAStuckSaga(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { return errors.New("refund service down") }),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		var rec policytest.Recorder
		c := saga.New(saga.WithName("orders"), saga.WithObserver(&rec), saga.WithAttempts(2, time.Millisecond, time.Millisecond))
		ctx := context.WithValue(context.Background(), runKey{}, "run")
		_ = c.Run(ctx, def, "r-1", nil)
		var sagaEvents []resilience.Event
		for _, e := range rec.Events() {
			if e.Subject == "r-1" {
				sagaEvents = append(sagaEvents, e)
			}
		}
		require.Equal(t, []told{
			{resilience.Started, "r-1", 0},
			{resilience.Error, "r-1", 1},
			{resilience.Dead, "r-1", 1},
		}, toldOf(sagaEvents))
		assert.EqualError(t, sagaEvents[1].Err, "saga: 1 rounds failed: charge compensate: refund service down")
		assert.EqualError(t, sagaEvents[2].Err, "charge compensate: refund service down")
		checkCommon(t, &rec)
	})
}

// A TCC saga's confirms succeed, and its cancels compensate.
func TestObserverEventsOfTCC(t *testing.T) {
	for _, fail := range []bool{false, true} {
		var rec policytest.Recorder
		def := saga.DefineTCC("transfer", 1, saga.Participant("a",
			func(context.Context, *saga.Call) error {
				if fail {
					return errDeclined
				}
				return nil
			},
			func(context.Context, *saga.Call) error { return nil },
			func(context.Context, *saga.Call) error { return nil }))
		c := saga.New(saga.WithName("orders"), saga.WithObserver(&rec))
		ctx := context.WithValue(context.Background(), runKey{}, "run")
		_ = c.Run(ctx, def, "t-1", nil)
		want := []told{
			{resilience.Started, "t-1", 0},
			{resilience.Started, "t-1/a", 1},
			{resilience.Success, "t-1/a", 1},
			{resilience.Started, "t-1/a", 1},
			{resilience.Success, "t-1/a", 1},
			{resilience.Success, "t-1", 0},
		}
		if fail {
			want[2].kind, want[4].kind, want[5].kind = resilience.Failure, resilience.Compensated, resilience.Compensated
		}
		assert.Equal(t, want, toldOf(rec.Events()), "try fails: %v", fail)
		checkCommon(t, &rec)
	}
}

// The steps of a saga whose caller cancels end Ignored, not failed.
func TestObserverCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), runKey{}, "run"))
		def := saga.Define("checkout", 1,
			saga.Step("reserve", func(ctx context.Context, _ *saga.Call) error { cancel(); return ctx.Err() },
				func(context.Context, *saga.Call) error { return nil }))
		var rec policytest.Recorder
		c := saga.New(saga.WithName("orders"), saga.WithObserver(&rec))
		_ = c.Run(ctx, def, "c-1", nil)
		assert.Equal(t, []told{
			{resilience.Started, "c-1", 0},
			{resilience.Started, "c-1/reserve", 1},
			{resilience.Ignored, "c-1/reserve", 1},
			{resilience.Started, "c-1/reserve", 1},
			{resilience.Compensated, "c-1/reserve", 1},
			{resilience.Compensated, "c-1", 0},
		}, toldOf(rec.Events()))
		checkCommon(t, &rec)
	})
}

// A durable coordinator tells each failed round of compensations as a
// Retry with the wait before the next, the alert as an Error, and the
// instance parked as stuck as Dead; recovery's events come with its ctx.
func TestObserverEventsOfRounds(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		def := saga.Define("refund", 1,
			saga.Step("charge", func(context.Context, *saga.Call) error { return nil },
				func(context.Context, *saga.Call) error { return errors.New("refund service down") }),
			saga.Step("ship", func(context.Context, *saga.Call) error { return errDeclined }, nil),
		)
		var rec policytest.Recorder
		c := saga.New(saga.WithStore(s.DB.DB, s.d), saga.WithName("orders"), saga.WithObserver(&rec),
			saga.WithAttempts(1, time.Millisecond, time.Millisecond), saga.WithRoundBackoff(time.Millisecond, 2*time.Millisecond),
			saga.WithAlertAfter(2), saga.WithStuckAfter(3))
		ctx := context.WithValue(context.Background(), runKey{}, "run")
		_ = c.Run(ctx, def, "r-1", nil)
		for range 100 {
			if stuck, _ := c.ListStuck(ctx, 10); len(stuck) > 0 {
				break
			}
			_, err := c.Recover(ctx, 10)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		var sagaEvents []resilience.Event
		for _, e := range rec.Events() {
			if e.Subject == "r-1" {
				sagaEvents = append(sagaEvents, e)
			}
		}
		require.Equal(t, []told{
			{resilience.Started, "r-1", 0},
			{resilience.Retry, "r-1", 1},
			{resilience.Retry, "r-1", 2},
			{resilience.Error, "r-1", 2},
			{resilience.Dead, "r-1", 3},
		}, toldOf(sagaEvents))
		for _, e := range sagaEvents[1:3] {
			assert.GreaterOrEqual(t, e.Delay, 500*time.Microsecond, "the wait before the next round: %+v", e)
			assert.LessOrEqual(t, e.Delay, 2*time.Millisecond, "the wait before the next round: %+v", e)
		}
		for _, e := range rec.Events() {
			if strings.HasPrefix(e.Subject, "r-1/charge") && e.Kind == resilience.Failure {
				assert.EqualError(t, e.Err, "compensate: refund service down")
			}
		}
		checkCommon(t, &rec)
	})
}

// An observer adds nothing to what an in-memory saga allocates but the
// subjects of a step call's events, one for its start and one for its end:
// its events are values.
func TestObserverAllocatesOnlySubjects(t *testing.T) {
	if policytest.RaceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	noop := func(context.Context, *saga.Call) error { return nil }
	def := saga.Define("allocs", 1, saga.Step("a", noop, noop), saga.Step("b", noop, noop))
	ctx := context.Background()
	runs := func(c *saga.Coordinator) float64 {
		return testing.AllocsPerRun(100, func() {
			if err := c.Run(ctx, def, "id", nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	bare := runs(saga.New())
	observed := runs(saga.New(saga.WithObserver(resilience.ObserverFunc(func(context.Context, resilience.Event) {}))))
	assert.Equal(t, bare+4, observed, "two subjects per step call: \"id/a\" twice and \"id/b\" twice")
}
