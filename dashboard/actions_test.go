package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/saga"
)

// state is what the actions may change, for checking that a refused one
// changed nothing.
type state struct {
	Breaker string
	Dead    int64
	Pending int64
	Stuck   int
	Events  int
}

func stateOf(t *testing.T, d *dashboard.Dashboard) state {
	t.Helper()
	s := d.Snapshot(context.Background())
	require.Empty(t, s.Outboxes[0].Error)
	require.Empty(t, s.Sagas[0].Error)
	return state{s.Breakers[0].State, s.Outboxes[0].Dead, s.Outboxes[0].Pending, s.Sagas[0].Stuck, len(s.Events)}
}

// Without WithActions the page has no buttons and no token, and every
// POST, to any path and with any header, is answered 403 and changes
// nothing.
func TestActionsOff(t *testing.T) {
	f := newFixture(t, "broker said no")
	srv := httptest.NewServer(f.d)
	defer srv.Close()
	before := stateOf(t, f.d)

	for _, path := range []string{"/action", "/", "/snapshot.json", "/events"} {
		for _, do := range []string{"breaker-open", "dead-discard", "saga-resolve"} {
			form := url.Values{"do": {do}, "name": {"payments"}, "id": {f.deadID}}
			resp, err := srv.Client().PostForm(srv.URL+path, form)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, path, do)
		}
	}
	assert.Equal(t, before, stateOf(t, f.d))
}

// With WithActions, an action is done only when it comes from the same
// origin, authorize allows it, and it carries the token of its cookie;
// otherwise it is answered 403 and changes nothing.
func TestActionsRefused(t *testing.T) {
	var allow atomic.Bool
	allow.Store(true)
	f := newFixture(t, "broker said no", dashboard.WithActions(func(*http.Request) bool { return allow.Load() }))
	srv := httptest.NewServer(f.d)
	defer srv.Close()
	s := newSession(t, srv, srv.URL+"/")
	other := newSession(t, srv, srv.URL+"/") // another browser: another cookie, another token
	before := stateOf(t, f.d)
	open := url.Values{"do": {"breaker-open"}, "name": {"payments"}}

	tests := []struct {
		name   string
		s      *session
		header http.Header
		allow  bool
	}{
		{"no token", s, http.Header{"X-Resilience-Token": {""}}, true},
		{"a wrong token", s, http.Header{"X-Resilience-Token": {strings.Repeat("A", 43)}}, true},
		{"another session's token", s, http.Header{"X-Resilience-Token": {other.token}}, true},
		{"no cookie", &session{c: srv.Client(), base: s.base, token: s.token}, nil, true},
		{"cross-site", s, http.Header{"Sec-Fetch-Site": {"cross-site"}}, true},
		{"another origin", s, http.Header{"Origin": {"https://evil.example"}}, true},
		{"not authorized", s, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allow.Store(tt.allow)
			defer allow.Store(true)
			code, body := tt.s.post(t, open, tt.header)
			assert.Equal(t, http.StatusForbidden, code, body)
			assert.Equal(t, "dashboard: action refused\n", body)
			assert.Equal(t, before, stateOf(t, f.d))
		})
	}

	// A page that authorize does not allow has no buttons and no token.
	allow.Store(false)
	_, page := get(t, srv.Client(), srv.URL+"/")
	assert.NotContains(t, page, "data-do=")
	assert.NotContains(t, page, "resilience-token")
}

// Each action does what it says, answers 204, and is an event; an action
// on nothing is answered 404, 400 or 409 and is no event.
func TestActions(t *testing.T) {
	f := newFixture(t, "broker said no", dashboard.WithActions(func(*http.Request) bool { return true }))
	srv := httptest.NewServer(f.d)
	defer srv.Close()
	s := newSession(t, srv, srv.URL+"/")
	ctx := context.Background()

	_, page := get(t, s.c, s.base)
	for _, button := range []string{
		`data-do="breaker-open" data-name="payments"`,
		`data-do="breaker-reset" data-name="payments"`,
		`data-do="dead-retry" data-name="events" data-id="` + f.deadID + `"`,
		`data-do="dead-discard" data-name="events" data-id="` + f.deadID + `"`,
		`data-do="saga-retry" data-name="checkout" data-id="order-1"`,
		`data-do="saga-resolve" data-name="checkout" data-id="order-1"`,
	} {
		assert.Contains(t, page, button)
	}

	do := func(form url.Values) (int, string) {
		t.Helper()
		return s.post(t, form, nil)
	}
	lastEvent := func() dashboard.EventView {
		t.Helper()
		events := f.d.Snapshot(ctx).Events
		require.NotEmpty(t, events)
		return events[0]
	}

	code, body := do(url.Values{"do": {"breaker-open"}, "name": {"payments"}})
	assert.Equal(t, http.StatusNoContent, code, body)
	assert.Equal(t, circuitbreaker.ForcedOpen, f.breaker.State())
	e := lastEvent()
	assert.Equal(t, []string{"circuitbreaker", "payments", "action", "force open"}, []string{e.Policy, e.Name, e.Kind, e.Subject})

	code, body = do(url.Values{"do": {"breaker-reset"}, "name": {"payments"}})
	assert.Equal(t, http.StatusNoContent, code, body)
	assert.Equal(t, circuitbreaker.Closed, f.breaker.State())
	assert.Equal(t, "reset", lastEvent().Subject)

	code, body = do(url.Values{"do": {"dead-retry"}, "name": {"events"}, "id": {f.deadID}})
	assert.Equal(t, http.StatusNoContent, code, body)
	b, err := f.outbox.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(0), b.Dead)
	assert.Equal(t, int64(1), b.Pending)
	e = lastEvent()
	assert.Equal(t, []string{"outbox", "events", "retry dead letter " + f.deadID}, []string{e.Policy, e.Name, e.Subject})

	events := len(f.d.Snapshot(ctx).Events)
	code, body = do(url.Values{"do": {"dead-retry"}, "name": {"events"}, "id": {f.deadID}})
	assert.Equal(t, http.StatusConflict, code, "no longer dead: "+body)
	assert.Len(t, f.d.Snapshot(ctx).Events, events, "an action that did nothing is no event")

	code, body = do(url.Values{"do": {"dead-discard"}, "name": {"events"}, "id": {f.deadID}})
	assert.Equal(t, http.StatusNoContent, code, body)
	b, err = f.outbox.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(0), b.Pending)
	assert.Equal(t, "discard dead letter "+f.deadID, lastEvent().Subject)

	code, body = do(url.Values{"do": {"saga-resolve"}, "name": {"checkout"}, "id": {"order-1"}, "note": {"TICKET-7"}})
	assert.Equal(t, http.StatusNoContent, code, body)
	st, err := f.sagas.InstanceStatus(ctx, "order-1")
	require.NoError(t, err)
	assert.Equal(t, saga.Resolved, st)
	e = lastEvent()
	assert.Equal(t, []string{"saga", "checkout", "mark saga order-1 resolved: TICKET-7"}, []string{e.Policy, e.Name, e.Subject})

	code, body = do(url.Values{"do": {"saga-retry"}, "name": {"checkout"}, "id": {"order-1"}})
	assert.Equal(t, http.StatusConflict, code, "no longer stuck: "+body)

	events = len(f.d.Snapshot(ctx).Events)
	tests := []struct {
		form url.Values
		code int
	}{
		{url.Values{"do": {"breaker-open"}, "name": {"nobody"}}, http.StatusNotFound},
		{url.Values{"do": {"dead-retry"}, "name": {"nobody"}, "id": {"x"}}, http.StatusNotFound},
		{url.Values{"do": {"saga-retry"}, "name": {"nobody"}, "id": {"x"}}, http.StatusNotFound},
		{url.Values{"do": {"dead-retry"}, "name": {"events"}}, http.StatusBadRequest},
		{url.Values{"do": {"saga-resolve"}, "name": {"checkout"}}, http.StatusBadRequest},
		{url.Values{"do": {"explode"}, "name": {"payments"}}, http.StatusBadRequest},
		{url.Values{}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		code, body := do(tt.form)
		assert.Equal(t, tt.code, code, "%v: %s", tt.form, body)
	}
	assert.Len(t, f.d.Snapshot(ctx).Events, events)
	assert.Equal(t, circuitbreaker.Closed, f.breaker.State())
}

// A stuck saga retried is due again.
func TestActionRetrySaga(t *testing.T) {
	f := newFixture(t, "refunds down", dashboard.WithActions(func(*http.Request) bool { return true }))
	srv := httptest.NewServer(f.d)
	defer srv.Close()
	s := newSession(t, srv, srv.URL+"/")
	code, body := s.post(t, url.Values{"do": {"saga-retry"}, "name": {"checkout"}, "id": {"order-1"}}, nil)
	assert.Equal(t, http.StatusNoContent, code, body)
	st, err := f.sagas.InstanceStatus(context.Background(), "order-1")
	require.NoError(t, err)
	assert.Equal(t, saga.Compensating, st)
}
