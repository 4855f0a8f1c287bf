package dashboard_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/saga"
)

// xss is an error text that would run a script if the page did not escape
// it.
const xss = `<script>alert("x")</script>`

// fixture is a dashboard of one of each component, on SQLite, with a dead
// letter and a stuck saga.
type fixture struct {
	breaker  *circuitbreaker.Breaker
	bulkhead *bulkhead.Bulkhead
	limiter  *ratelimit.Limiter
	outbox   *outbox.Outbox
	sagas    *saga.Coordinator
	deadID   string // the dead letter's ID
	stuckID  string // the stuck saga's ID
	d        *dashboard.Dashboard
}

// newFixture makes a fixture whose dead letter's and stuck saga's errors
// are errText, and a dashboard of it configured by opts.
func newFixture(t *testing.T, errText string, opts ...dashboard.Option) *fixture {
	t.Helper()
	ctx := context.Background()
	db := servicetest.SQLite(t)
	f := &fixture{
		breaker:  circuitbreaker.New(circuitbreaker.WithName("payments"), circuitbreaker.WithConsecutiveFailures(3)),
		bulkhead: bulkhead.New(4),
		limiter:  ratelimit.New(1, 1),
		outbox:   deadLetterOutbox(t, db.DB, errText),
		sagas:    stuckSagas(t, db.DB, errText),
		stuckID:  "order-1",
	}
	dead, err := f.outbox.ListDead(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	f.deadID = dead[0].ID
	f.d = dashboard.New(append([]dashboard.Option{
		dashboard.WithBreaker(f.breaker),
		dashboard.WithBulkhead("payments", f.bulkhead),
		dashboard.WithLimiter("api", f.limiter),
		dashboard.WithOutbox("events", f.outbox),
		dashboard.WithSagas("checkout", f.sagas),
	}, opts...)...)
	return f
}

// deadLetterOutbox returns an outbox in db that holds one dead letter, of
// topic "shop.paid", whose last error is errText.
func deadLetterOutbox(t *testing.T, db *sql.DB, errText string) *outbox.Outbox {
	t.Helper()
	ctx := context.Background()
	ob := outbox.New(db, outbox.SQLite)
	require.NoError(t, ob.Migrate(ctx))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Enqueue(ctx, tx, outbox.Message{Topic: "shop.paid", Key: "order-1", Payload: []byte("{}")}))
	require.NoError(t, tx.Commit())
	fail := outbox.PublisherFunc(func(context.Context, outbox.Message) error { return errors.New(errText) })
	_, err = ob.NewRelay(fail, outbox.WithMaxAttempts(1)).Process(ctx)
	require.NoError(t, err)
	return ob
}

// stuckSagas returns a coordinator with its store in db, which holds saga
// "order-1", stuck because its compensation failed with errText.
func stuckSagas(t *testing.T, db *sql.DB, errText string) *saga.Coordinator {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, saga.Migrate(ctx, db, saga.SQLite))
	noop := func(context.Context, *saga.Call) error { return nil }
	refundDown := func(context.Context, *saga.Call) error { return errors.New(errText) }
	declined := func(context.Context, *saga.Call) error { return errors.New("card declined") }
	c := saga.New(saga.WithStore(db, saga.SQLite), saga.WithAttempts(1, time.Millisecond, time.Millisecond),
		saga.WithStuckAfter(1))
	def := saga.Define("checkout", 1, saga.Step("reserve", noop, refundDown), saga.Step("charge", declined, nil))
	require.Error(t, c.Run(ctx, def, "order-1", nil))
	st, err := c.InstanceStatus(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, saga.Stuck, st)
	return c
}

// get returns the status and body of a GET of url.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// snapshot returns the dashboard's snapshot.json at base.
func snapshot(t *testing.T, c *http.Client, base string) dashboard.Snapshot {
	t.Helper()
	code, body := get(t, c, base+"snapshot.json")
	require.Equal(t, http.StatusOK, code, body)
	var s dashboard.Snapshot
	require.NoError(t, json.Unmarshal([]byte(body), &s), body)
	return s
}

// The page and snapshot.json show each component, by name, with its state,
// under any prefix, with or without StripPrefix.
func TestServe(t *testing.T) {
	f := newFixture(t, "broker said no")
	ctx := context.Background()
	for range 3 {
		_ = f.breaker.Do(ctx, func(context.Context) error { return errors.New("payments down") })
	}
	require.Equal(t, circuitbreaker.Open, f.breaker.State())

	mux := http.NewServeMux()
	mux.Handle("/ops/resilience/", f.d)
	mux.Handle("/stripped/", http.StripPrefix("/stripped", f.d))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, base := range []string{srv.URL + "/ops/resilience/", srv.URL + "/stripped/"} {
		resp, err := srv.Client().Get(base)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, base)
		assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"), base)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", base)
		page := string(body)
		assert.Contains(t, page, `<tr class="breaker" data-name="payments" data-state="open">`, base)
		assert.Contains(t, page, `<tr class="bulkhead" data-name="payments">`, base)
		assert.Contains(t, page, `<tr class="limiter" data-name="api">`, base)
		assert.Contains(t, page, `<tr class="dead" data-id="`+f.deadID+`">`, base)
		assert.Contains(t, page, "broker said no", base)
		assert.Contains(t, page, `<tr class="saga" data-id="order-1" data-status="stuck">`, base)
		assert.Contains(t, page, "not a health check", base)
		assert.NotContains(t, page, "data-do=", "no actions, no buttons: "+base)
		assert.NotContains(t, page, "resilience-token", base)
		assert.Empty(t, resp.Cookies(), base)

		for _, asset := range []string{"app.js", "app.css"} {
			code, body := get(t, srv.Client(), base+asset)
			assert.Equal(t, http.StatusOK, code, base+asset)
			assert.NotEmpty(t, body, base+asset)
		}
		code, _ := get(t, srv.Client(), base+"nothing-here")
		assert.Equal(t, http.StatusNotFound, code)

		s := snapshot(t, srv.Client(), base)
		require.Len(t, s.Breakers, 1)
		b := s.Breakers[0]
		assert.Equal(t, "payments", b.Name)
		assert.Equal(t, "open", b.State)
		assert.Equal(t, int64(3), b.Calls)
		assert.Equal(t, int64(3), b.Failures)
		assert.Equal(t, 1.0, b.FailureRate)
		require.NotEmpty(t, b.History)
		assert.Equal(t, 1.0, b.History[len(b.History)-1].FailureRate)
		assert.Equal(t, []dashboard.BulkheadView{{Name: "payments"}}, s.Bulkheads)
		assert.Equal(t, []dashboard.LimiterView{{Name: "api"}}, s.Limiters)
		require.Len(t, s.Outboxes, 1)
		ob := s.Outboxes[0]
		assert.Empty(t, ob.Error)
		assert.Equal(t, int64(0), ob.Pending)
		assert.Equal(t, int64(1), ob.Dead)
		require.Len(t, ob.DeadLetters, 1)
		assert.Equal(t, dashboard.DeadLetterView{ID: f.deadID, Topic: "shop.paid", Key: "order-1", Attempts: 1,
			Created: ob.DeadLetters[0].Created, Error: "broker said no"}, ob.DeadLetters[0])
		require.Len(t, s.Sagas, 1)
		sg := s.Sagas[0]
		assert.Empty(t, sg.Error)
		assert.Equal(t, 1, sg.Stuck)
		require.Len(t, sg.Instances, 1)
		assert.Equal(t, "order-1", sg.Instances[0].ID)
		assert.Equal(t, "stuck", sg.Instances[0].Status)
		assert.Equal(t, "charge", sg.Instances[0].Step)
		assert.Equal(t, "card declined", sg.Instances[0].Cause)
		assert.Contains(t, sg.Instances[0].LastError, "broker said no")
	}
}

// The dashboard's observer keeps the last EventsKept events, newest first,
// but for those of healthy calls, and allocates nothing.
func TestObserver(t *testing.T) {
	d := dashboard.New()
	obs := d.Observer()
	ctx := context.Background()
	for _, k := range []resilience.EventKind{resilience.Success, resilience.Ignored, resilience.Started} {
		obs.Observe(ctx, resilience.Event{Policy: resilience.PolicyRetry, Kind: k})
	}
	assert.Empty(t, d.Snapshot(ctx).Events, "the events of healthy calls are not kept")

	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range dashboard.EventsKept + 5 {
		obs.Observe(ctx, resilience.Event{Time: at.Add(time.Duration(i) * time.Second), Policy: resilience.PolicyRetry,
			Name: "api", Kind: resilience.Retry, Attempt: i + 1, Delay: time.Second, Err: errors.New("503")})
	}
	events := d.Snapshot(ctx).Events
	require.Len(t, events, dashboard.EventsKept)
	assert.Equal(t, dashboard.EventView{Seq: dashboard.EventsKept + 5, Time: at.Add((dashboard.EventsKept + 4) * time.Second),
		Policy: "retry", Name: "api", Kind: "retry", Attempt: dashboard.EventsKept + 5, Delay: time.Second, Error: "503"}, events[0])
	assert.Equal(t, uint64(6), events[len(events)-1].Seq, "the oldest 5 are gone")

	obs.Observe(ctx, resilience.Event{Policy: resilience.PolicyCircuitBreaker, Kind: resilience.StateChange,
		From: "closed", To: "open", Cause: resilience.FailureRate})
	e := d.Snapshot(ctx).Events[0]
	assert.Equal(t, "state change", e.Kind)
	assert.Equal(t, "failure rate", e.Cause)
	assert.False(t, e.Time.IsZero(), "an event with no time gets the time it was kept")

	ev := resilience.Event{Policy: resilience.PolicyCircuitBreaker, Kind: resilience.Rejected, Err: circuitbreaker.ErrOpen,
		Time: at}
	assert.Zero(t, testing.AllocsPerRun(100, func() { obs.Observe(ctx, ev) }))
}

// Error texts and names are the users' data: the page escapes them, in the
// page and in the stream, and no script of theirs runs.
func TestEscaping(t *testing.T) {
	f := newFixture(t, xss, dashboard.WithActions(func(*http.Request) bool { return true }))
	f.d.Observer().Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Name: `<b>api</b>`,
		Kind: resilience.GaveUp, Err: errors.New(xss), Subject: `"><img src=x onerror=alert(1)>`})
	f.d.Observer().Observe(context.Background(), resilience.Event{Policy: resilience.PolicyRetry, Name: "api",
		Kind: resilience.GaveUp, Err: errors.New("a\revent: breakers\r\ndata: <p>forged</p>\r\rretry: 1")})
	srv := httptest.NewServer(f.d)
	defer srv.Close()

	_, page := get(t, srv.Client(), srv.URL+"/")
	stream := readStream(t, srv.URL+"/events", "events")
	for name, body := range map[string]string{"page": page, "stream": stream} {
		assert.NotContains(t, body, "<script>alert", name)
		assert.NotContains(t, body, "<img", name)
		assert.NotContains(t, body, "<b>api", name)
		assert.Contains(t, body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", name)
		assert.Contains(t, body, "&lt;b&gt;api&lt;/b&gt;", name)
	}
	assert.Equal(t, 1, strings.Count(page, "<script"), "the page's own script, and only it")
	for _, line := range regexp.MustCompile("\r\n|\r|\n").Split(stream, -1) { // as EventSource reads it
		if !strings.HasPrefix(line, "data: ") {
			assert.Regexp(t, `^(event: [a-z]+|retry: 2000)?$`, line, "a field of the stream's own")
		}
	}
	assert.Contains(t, stream, "data: event: breakers\n", "the error's text, as data")
}

// readStream reads the event stream at url until it has sent the section
// named section, and returns what it read.
func readStream(t *testing.T, url, section string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "event: "+section+"\n") || !strings.Contains(got.String(), "event: tick\n") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		require.NoError(t, err, got.String())
	}
	return got.String()
}

var tokenRE = regexp.MustCompile(`<meta name="resilience-token" content="([^"]+)">`)

// session is an operator's browser: a client with a cookie jar, and the
// token of the page it loaded.
type session struct {
	c     *http.Client
	base  string
	token string
}

func newSession(t *testing.T, srv *httptest.Server, base string) *session {
	t.Helper()
	c := *srv.Client()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c.Jar = jar
	s := &session{c: &c, base: base}
	code, page := get(t, s.c, base)
	require.Equal(t, http.StatusOK, code)
	m := tokenRE.FindStringSubmatch(page)
	require.NotNil(t, m, "the page carries a token")
	s.token = m[1]
	return s
}

// post sends an action with the form's fields, and the token with each
// header of header, and returns the status and body.
func (s *session) post(t *testing.T, form url.Values, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+"action", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Resilience-Token", s.token)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
