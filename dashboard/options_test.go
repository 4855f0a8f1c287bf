package dashboard_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/twophase"
)

// Options and New panic on what would make a dashboard that cannot tell
// its components apart, naming the option and the fault.
func TestOptionPanics(t *testing.T) {
	named := circuitbreaker.New(circuitbreaker.WithName("payments"))
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"nil breaker", func() { dashboard.WithBreaker(nil) }, "dashboard: WithBreaker: nil Breaker"},
		{"unnamed breaker", func() { dashboard.WithBreaker(circuitbreaker.New()) },
			"dashboard: WithBreaker: a breaker with no name; make it with circuitbreaker.WithName"},
		{"zero breaker", func() { dashboard.WithBreaker(new(circuitbreaker.Breaker)) }, "circuitbreaker: zero Breaker; use New"},
		{"nil bulkhead", func() { dashboard.WithBulkhead("b", nil) }, "dashboard: WithBulkhead: nil Bulkhead"},
		{"nil limiter", func() { dashboard.WithLimiter("l", nil) }, "dashboard: WithLimiter: nil Limiter"},
		{"nil budget", func() { dashboard.WithRetryBudget("r", nil) }, "dashboard: WithRetryBudget: nil Budget"},
		{"zero budget", func() { dashboard.WithRetryBudget("r", new(retry.Budget)) }, "retry: zero Budget; use NewBudget"},
		{"nil outbox", func() { dashboard.WithOutbox("o", nil) }, "dashboard: WithOutbox: nil Outbox"},
		{"nil coordinator", func() { dashboard.WithSagas("s", nil) }, "dashboard: WithSagas: nil Coordinator"},
		{"nil two-phase coordinator", func() { dashboard.WithTwoPhase("t", nil) }, "dashboard: WithTwoPhase: nil Coordinator"},
		{"zero two-phase coordinator", func() { dashboard.WithTwoPhase("t", new(twophase.Coordinator)) },
			"dashboard: WithTwoPhase: a zero Coordinator; make it with twophase.New"},
		{"nil store", func() { dashboard.WithProjections("p", nil) }, "dashboard: WithProjections: nil Store"},
		{"zero store", func() { dashboard.WithProjections("p", new(eventstore.Store)) },
			"dashboard: WithProjections: a Store with no database; make it with eventstore.New"},
		{"nil authorize", func() { dashboard.WithActions(nil) }, "dashboard: WithActions: nil authorize"},
		{"nil events", func() { dashboard.WithEvents(nil) }, "dashboard: WithEvents: nil Events"},
		{"nil option", func() { dashboard.New(nil) }, "dashboard: New: nil Option"},
		{"two breakers of a name", func() { dashboard.New(dashboard.WithBreaker(named), dashboard.WithBreaker(named)) },
			`dashboard: New: two breakers named "payments"`},
		{"empty name", func() { dashboard.New(dashboard.WithBulkhead("", bulkhead.New(1))) },
			"dashboard: New: an empty name among the bulkheads"},
		{"two limiters of a name", func() {
			dashboard.New(dashboard.WithLimiter("api", ratelimit.New(1, 1)), dashboard.WithLimiter("api", ratelimit.New(1, 1)))
		}, `dashboard: New: two limiters named "api"`},
		{"two budgets of a name", func() {
			dashboard.New(dashboard.WithRetryBudget("api", retry.NewBudget(0.2, 10)), dashboard.WithRetryBudget("api", retry.NewBudget(0.2, 10)))
		}, `dashboard: New: two retry budgets named "api"`},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f, tt.name)
	}

	// One name may serve components of different kinds.
	assert.NotPanics(t, func() {
		dashboard.New(dashboard.WithBreaker(named), dashboard.WithBulkhead("payments", bulkhead.New(1)),
			dashboard.WithLimiter("payments", ratelimit.New(1, 1)))
	})
}

// A retry budget shows the retries it would allow, and those it allowed and
// refused, in the snapshot and on the page.
func TestRetryBudget(t *testing.T) {
	budget := retry.NewBudget(0.2, 1)
	r := retry.New(retry.WithBudget(budget), retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(0)))
	failing := errors.New("down")
	_ = r.Do(context.Background(), func(context.Context) error { return failing }) // one retry from the floor, one refused

	d := dashboard.New(dashboard.WithRetryBudget("payments", budget))
	s := d.Snapshot(context.Background())
	require.Len(t, s.Budgets, 1)
	got := s.Budgets[0]
	assert.Equal(t, "payments", got.Name)
	assert.Equal(t, int64(1), got.Retries)
	assert.Equal(t, int64(1), got.Refused)
	assert.Less(t, got.Available, 1.0, "the floor's token is spent")

	srv := httptest.NewServer(d)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(page), "<h2>Retry budgets</h2>")
	assert.Regexp(t, `<tr class="budget" data-name="payments"><td>payments</td><td class="num">0\.\d</td><td class="num">1</td><td class="num">1</td></tr>`, string(page))
}
