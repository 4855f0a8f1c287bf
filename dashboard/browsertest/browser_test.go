package browsertest

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/projection"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/saga"
	"github.com/resilience-go/resilience/twophase"
)

// The environment variables the test reads.
const (
	chromiumVar   = "RESILIENCE_CHROMIUM"   // the browser to run
	artifactsVar  = "RESILIENCE_ARTIFACTS"  // where to save screenshots
	screenshotVar = "RESILIENCE_SCREENSHOT" // a file to copy the main screenshot to
)

// chromium returns the path of the browser, or skips the test (fails it,
// if RESILIENCE_REQUIRE_SERVICES=1) when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(chromiumVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", chromiumVar, p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "Chromium is not installed (apt-get install chromium, or set " + chromiumVar + ")"
	if os.Getenv(servicetest.RequireVar) == "1" {
		t.Fatalf("%s, and %s=1 requires it", why, servicetest.RequireVar)
	}
	t.Skipf("%s: skipping the browser test", why)
	return ""
}

// browser starts a headless Chromium with a fresh profile, for the test's
// life, and returns its context, which has run once: derive timeouts from
// it.
func browser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start Chromium")
	return ctx
}

// within runs steps with a timeout of d.
func within(ctx context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// waitFor waits up to d for a JavaScript expression to be true on the
// page.
func waitFor(ctx context.Context, d time.Duration, expr string) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr))
	return err
}

// eval returns the value of a JavaScript expression on the page, awaiting
// it if it is a promise.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, expr)
	return v
}

// shop is what the dashboard shows: a breaker, a bulkhead and a limiter
// in front of a payments service, an outbox on SQLite with a dead letter,
// and a saga coordinator with a stuck saga.
type shop struct {
	breaker  *circuitbreaker.Breaker
	bulkhead *bulkhead.Bulkhead
	limiter  *ratelimit.Limiter
	outbox   *outbox.Outbox
	sagas    *saga.Coordinator
	deadID   string
	release  func() // lets the calls that hold the bulkhead go
}

func newShop(t *testing.T, observe resilience.Observer) *shop {
	t.Helper()
	ctx := context.Background()
	db := servicetest.SQLite(t)
	s := &shop{
		// Until the breaker reports its events itself, its state changes
		// reach the dashboard through WithOnStateChange.
		breaker: circuitbreaker.New(circuitbreaker.WithName("payments"),
			circuitbreaker.WithFailureRate(0.5, 10), circuitbreaker.WithCountWindow(20),
			circuitbreaker.WithOnStateChange(func(tr circuitbreaker.Transition) {
				observe.Observe(context.Background(), resilience.Event{Time: time.Now(),
					Policy: resilience.PolicyCircuitBreaker, Name: tr.Name, Kind: resilience.StateChange,
					From: tr.From.String(), To: tr.To.String(), Delay: tr.Break, Cause: causeOf(tr)})
			})),
		bulkhead: bulkhead.New(8),
		limiter:  ratelimit.New(1, 5),
		outbox:   outbox.New(db.DB, outbox.SQLite),
	}
	require.NoError(t, s.outbox.Migrate(ctx))
	s.deadID = deadLetter(t, db.DB, s.outbox, "shop.payment.charged",
		`broker: publish shop.payment.charged: 503 Service Unavailable <html><title>busy</title></html>`)
	enqueue(t, db.DB, s.outbox, "shop.stock.reserved") // pending: no relay runs
	s.sagas = stuckSaga(t, db.DB)

	// A burst of calls goes past the limiter's.
	for range 8 {
		_ = s.limiter.Do(ctx, func(context.Context) error { return nil })
	}
	// Three calls hold slots of the bulkhead.
	hold := make(chan struct{})
	in := make(chan struct{})
	for range 3 {
		go func() {
			_ = s.bulkhead.Do(ctx, func(context.Context) error { in <- struct{}{}; <-hold; return nil })
		}()
		<-in
	}
	s.release = sync.OnceFunc(func() { close(hold) })
	t.Cleanup(s.release)
	return s
}

// causeOf tells why a breaker changed state, as far as a Transition says.
func causeOf(tr circuitbreaker.Transition) resilience.Cause {
	switch {
	case tr.To == circuitbreaker.ForcedOpen:
		return resilience.Forced
	case tr.From == circuitbreaker.Closed && tr.To == circuitbreaker.Open:
		return resilience.FailureRate // the only rule of this breaker
	case tr.From == circuitbreaker.HalfOpen && tr.To == circuitbreaker.Open:
		return resilience.ProbeFailed
	case tr.To == circuitbreaker.HalfOpen:
		return resilience.BreakElapsed
	case tr.From == circuitbreaker.HalfOpen && tr.To == circuitbreaker.Closed:
		return resilience.ProbesSucceeded
	case tr.To == circuitbreaker.Closed:
		return resilience.Reset
	}
	return 0
}

func enqueue(t *testing.T, db *sql.DB, ob *outbox.Outbox, topic string) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: "order-17", Payload: []byte("{}")}))
	require.NoError(t, tx.Commit())
}

// deadLetter enqueues a message of topic and has a relay give up on it
// with errText, and returns its ID.
func deadLetter(t *testing.T, db *sql.DB, ob *outbox.Outbox, topic, errText string) string {
	t.Helper()
	ctx := context.Background()
	enqueue(t, db, ob, topic)
	fail := outbox.PublisherFunc(func(context.Context, outbox.Message) error { return errors.New(errText) })
	_, err := ob.NewRelay(fail, outbox.WithMaxAttempts(1)).Process(ctx)
	require.NoError(t, err)
	dead, err := ob.ListDead(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	return dead[0].ID
}

// stuckSaga returns a coordinator whose store holds saga "order-42", stuck
// because its compensation failed.
func stuckSaga(t *testing.T, db *sql.DB) *saga.Coordinator {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, saga.Migrate(ctx, db, saga.SQLite))
	noop := func(context.Context, *saga.Call) error { return nil }
	c := saga.New(saga.WithStore(db, saga.SQLite), saga.WithAttempts(1, time.Millisecond, time.Millisecond),
		saga.WithStuckAfter(1))
	def := saga.Define("checkout", 1,
		saga.Step("reserve", noop, func(context.Context, *saga.Call) error { return errors.New("stock service: 500") }),
		saga.Step("charge", func(context.Context, *saga.Call) error { return errors.New("card declined") }, nil))
	require.Error(t, c.Run(ctx, def, "order-42", nil))
	return c
}

// saveScreenshot saves png as name in the artifacts directory, and
// returns its path.
func saveScreenshot(t *testing.T, name string, png []byte) string {
	t.Helper()
	dir := os.Getenv(artifactsVar)
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
	return path
}

// The page shows the breaker open within 2s of its trip, without a
// reload; an operator's retry takes a dead letter off the list; and a page
// without actions has no buttons, and a forged action is refused.
func TestDashboard(t *testing.T) {
	ctx := browser(t)
	events := new(dashboard.Events)
	s := newShop(t, events)
	components := []dashboard.Option{
		dashboard.WithEvents(events),
		dashboard.WithBreaker(s.breaker),
		dashboard.WithBulkhead("payments", s.bulkhead),
		dashboard.WithLimiter("api", s.limiter),
		dashboard.WithOutbox("events", s.outbox),
		dashboard.WithSagas("checkout", s.sagas),
	}
	operated := dashboard.New(append(components, dashboard.WithActions(func(*http.Request) bool { return true }))...)
	readOnly := dashboard.New(components...)
	mux := http.NewServeMux()
	mux.Handle("/ops/resilience/", operated)
	mux.Handle("/status/", http.StripPrefix("/status", readOnly))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.RegisterOnShutdown(operated.Close)
	srv.Config.RegisterOnShutdown(readOnly.Close)
	srv.Start()
	defer srv.Close()

	t.Run("breaker", func(t *testing.T) {
		require.NoError(t, within(ctx, 30*time.Second,
			chromedp.Navigate(srv.URL+"/ops/resilience/"),
			chromedp.WaitVisible(chromedp.CSS(`tr.breaker[data-name="payments"][data-state="closed"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#live.live`)), // the stream is open
		))
		eval[bool](t, ctx, `window.loadedOnce = true`)

		// Calls fail, more and more: the page shows the failure rate
		// climb, a sample a second, until the breaker trips.
		call := func(err error) {
			_ = s.breaker.Do(context.Background(), func(context.Context) error { return err })
		}
		failed := errors.New("payments: dial tcp 10.0.0.7:443: connect: connection refused")
		fail := func() {
			call(failed)
			events.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyCircuitBreaker,
				Name: "payments", Kind: resilience.Failure, Err: failed, Duration: 30 * time.Millisecond})
		}
		rate := `tr.breaker[data-name="payments"] td.rate .num`
		for _, step := range []struct {
			ok, failed int
			shows      string
		}{{10, 0, "0%"}, {3, 2, "13%"}, {2, 3, "25%"}} {
			for range step.ok {
				call(nil)
			}
			for range step.failed {
				fail()
			}
			require.NoError(t, waitFor(ctx, 5*time.Second,
				`document.querySelector('`+rate+`').textContent === '`+step.shows+`'`), step.shows)
		}
		for i := 0; s.breaker.State() == circuitbreaker.Closed; i++ {
			require.Less(t, i, 100, "the breaker trips")
			fail()
		}
		call(nil) // rejected
		start := time.Now()
		err := within(ctx, 2*time.Second,
			chromedp.WaitVisible(chromedp.CSS(`tr.breaker[data-name="payments"][data-state="open"] .state-open`)))
		require.NoError(t, err, "the page shows the breaker open within 2s")
		t.Logf("the page showed the breaker open %v after it tripped", time.Since(start).Round(time.Millisecond))
		assert.True(t, eval[bool](t, ctx, `window.loadedOnce === true`), "without a reload")
		assert.Equal(t, "open", eval[string](t, ctx,
			`document.querySelector('tr.breaker[data-name="payments"] .state').textContent`))
		assert.Contains(t, eval[string](t, ctx, `document.getElementById('events').textContent`), "closed → open")

		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		path := saveScreenshot(t, "dashboard.png", png)
		if dst := os.Getenv(screenshotVar); dst != "" {
			require.NoError(t, os.WriteFile(dst, png, 0o644))
			t.Logf("screenshot copied to %s (from %s)", dst, path)
		}
	})

	t.Run("retry dead letter", func(t *testing.T) {
		row := `tr.dead[data-id="` + s.deadID + `"]`
		require.NoError(t, within(ctx, 10*time.Second, chromedp.WaitVisible(chromedp.CSS(row))))
		assert.Contains(t, eval[string](t, ctx, `document.querySelector('`+row+` .error').textContent`),
			"503 Service Unavailable <html><title>busy</title></html>", "the error, as text")
		require.NoError(t, within(ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(row+` button[data-do="dead-retry"]`))))
		require.NoError(t, within(ctx, 2*time.Second, chromedp.WaitNotPresent(chromedp.CSS(row))),
			"the dead letter leaves the list")
		b, err := s.outbox.Backlog(context.Background())
		require.NoError(t, err)
		assert.Equal(t, int64(0), b.Dead)
		assert.Equal(t, int64(2), b.Pending)
		assert.Contains(t, eval[string](t, ctx, `document.getElementById('events').textContent`),
			"retry dead letter "+s.deadID, "the action is an event")
		assert.Equal(t, "Retry: done", eval[string](t, ctx, `document.getElementById('status').textContent`))
	})

	t.Run("read-only", func(t *testing.T) {
		s.breaker.Reset()
		require.NoError(t, within(ctx, 30*time.Second,
			chromedp.Navigate(srv.URL+"/status/"),
			chromedp.WaitVisible(chromedp.CSS(`tr.breaker[data-name="payments"][data-state="closed"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#live.live`)),
		))
		assert.Zero(t, eval[int](t, ctx, `document.querySelectorAll('button').length`), "no buttons")
		assert.False(t, eval[bool](t, ctx, `document.querySelector('meta[name="resilience-token"]') !== null`), "no token")

		// A forged action, from the page itself and from outside.
		status := eval[int](t, ctx, `fetch('action', {method: 'POST', body: new URLSearchParams({do: 'breaker-open', name: 'payments'})}).then(r => r.status)`)
		assert.Equal(t, http.StatusForbidden, status)
		resp, err := srv.Client().PostForm(srv.URL+"/status/action", url.Values{"do": {"breaker-open"}, "name": {"payments"}})
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, circuitbreaker.Closed, s.breaker.State(), "the forged actions changed nothing")
		assert.NotContains(t, eval[string](t, ctx, `document.getElementById('events').textContent`), "force open")
	})

	// The streams end when the server shuts down.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(shutdown))
	s.release()
}

// A branch that a transaction left prepared shows on the page, with its
// age and decision, marked as an alert past its coordinator's threshold;
// once recovery ends it, it leaves the page without a reload.
func TestTwoPhase(t *testing.T) {
	ctx := browser(t)
	bg := context.Background()
	home, ledger := servicetest.Postgres(t), servicetest.MySQL(t)
	_, err := ledger.Exec("CREATE TABLE browsertest_entries (id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB")
	require.NoError(t, err)
	// Names of the test's own: a server lists the branches of every test,
	// by participant name.
	suffix := servicetest.UniqueName(t)[3:11]
	orders := twophase.Postgres("orders-"+suffix, home.DB)
	entries := twophase.MySQL("ledger-"+suffix, ledger.DB)
	id := servicetest.UniqueName(t)
	died := errors.New("the process died")
	c, err := twophase.New(bg, id, orders, []*twophase.Participant{entries}, twophase.WithAlertAfter(time.Nanosecond),
		twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
			if at == twophase.AfterPrepare {
				return died
			}
			return nil
		}))
	require.NoError(t, err)
	// Recovery, past the grace period, rolls back what the test leaves.
	recovery, err := twophase.New(bg, id, orders, []*twophase.Participant{entries}, twophase.WithGrace(time.Nanosecond))
	require.NoError(t, err)
	resolve := func() {
		if _, err := recovery.Recover(bg); err != nil {
			t.Errorf("recover: %v", err)
		}
	}
	t.Cleanup(resolve) // before the databases are dropped

	tx, err := twophase.Begin(bg, c)
	require.NoError(t, err)
	_, err = tx.On(entries).ExecContext(bg, "INSERT INTO browsertest_entries (id) VALUES (?)", tx.ID())
	require.NoError(t, err)
	require.ErrorIs(t, tx.Commit(bg), died)

	d := dashboard.New(dashboard.WithTwoPhase("payments", c))
	srv := httptest.NewUnstartedServer(d)
	srv.Config.RegisterOnShutdown(d.Close)
	srv.Start()
	defer srv.Close()
	defer d.Close() // first, should the test stop early: it ends the stream

	row := `tr.in-doubt.alert[data-tx="` + tx.ID() + `"][data-participant="` + entries.Name() + `"]`
	require.NoError(t, within(ctx, 30*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(`#live.live`)),
	))
	eval[bool](t, ctx, `window.loadedOnce = true`)
	cells := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('`+row+` td'), td => td.textContent)`)
	require.Len(t, cells, 5, "participant, transaction, coordinator, age, decision")
	assert.Equal(t, []string{entries.Name(), tx.ID(), id}, cells[:3])
	assert.Regexp(t, regexp.MustCompile(`^\d+s alert$`), cells[3], "its age, and the alert mark")
	assert.Equal(t, "undecided", cells[4])
	assert.Equal(t, "1 in doubt · 1 in doubt for 0s or more",
		eval[string](t, ctx, `document.querySelector('.twophase[data-name="payments"] .summary').textContent`))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	saveScreenshot(t, "twophase.png", png)

	resolve()
	require.NoError(t, within(ctx, 5*time.Second, chromedp.WaitNotPresent(chromedp.CSS(row))),
		"the branch leaves the page once recovery ends it")
	assert.True(t, eval[bool](t, ctx, `window.loadedOnce === true`), "without a reload")
	assert.Equal(t, "0 in doubt · 0 in doubt for 0s or more",
		eval[string](t, ctx, `document.querySelector('.twophase[data-name="payments"] .summary').textContent`))

	shutdown, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(shutdown))
}

// positions is a projection that keeps the position of each event it
// applied.
var positions = projection.Projection{
	Name: "positions",
	Create: func(table string) []string {
		return []string{"CREATE TABLE IF NOT EXISTS " + table + " (position BIGINT NOT NULL PRIMARY KEY)"}
	},
	Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
		for _, e := range events {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (position) VALUES (?)", e.Position); err != nil {
				return err
			}
		}
		return nil
	},
}

// A projection behind its event store shows on the page with how many
// events it has yet to apply; once it catches up, the page shows it
// caught up, without a reload.
func TestProjections(t *testing.T) {
	ctx := browser(t)
	bg := context.Background()
	db := servicetest.SQLite(t)
	s := eventstore.New(db.DB, eventstore.SQLite)
	require.NoError(t, s.Migrate(bg))
	pr := projection.New(s, positions)
	require.NoError(t, pr.Migrate(bg))
	appendEvents := func(n int) {
		tx, err := db.BeginTx(bg, nil)
		require.NoError(t, err)
		events := make([]eventstore.Event, n)
		for i := range events {
			events[i] = eventstore.Event{Type: "Received", Payload: []byte("1")}
		}
		_, err = s.Append(bg, tx, "stock-1", eventstore.Any, events...)
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
	}
	appendEvents(3)
	require.NoError(t, pr.Run(bg, eventstore.UntilCaughtUp()))
	appendEvents(4)

	d := dashboard.New(dashboard.WithProjections("catalogue", s))
	srv := httptest.NewUnstartedServer(d)
	srv.Config.RegisterOnShutdown(d.Close)
	srv.Start()
	defer srv.Close()
	defer d.Close() // first, should the test stop early: it ends the stream

	row := `tr.projection[data-projection="positions"]`
	require.NoError(t, within(ctx, 30*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(row+`.behind[data-lag="4"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#live.live`)),
	))
	eval[bool](t, ctx, `window.loadedOnce = true`)
	cells := func() []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll('`+row+` td'), td => td.textContent)`)
	}
	got := cells()
	require.Len(t, got, 7, "name, generation, position, head, behind, oldest waiting, run by")
	assert.Equal(t, []string{"positions", "1 positions_1", "3", "7", "4"}, got[:5])
	assert.Regexp(t, regexp.MustCompile(`^\d+s$`), got[5], "how long the oldest event not applied has waited")
	assert.Equal(t, "1 of 1 behind",
		eval[string](t, ctx, `document.querySelector('.projections[data-name="catalogue"] .summary').textContent`))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	saveScreenshot(t, "projections.png", png)

	require.NoError(t, pr.Run(bg, eventstore.UntilCaughtUp()))
	require.NoError(t, within(ctx, 5*time.Second, chromedp.WaitVisible(chromedp.CSS(row+`[data-lag="0"]`))),
		"the projection shows caught up once it has run")
	assert.True(t, eval[bool](t, ctx, `window.loadedOnce === true`), "without a reload")
	assert.Equal(t, []string{"positions", "1 positions_1", "7", "7", "0", "0s", ""}, cells())
	assert.Equal(t, "0 of 1 behind",
		eval[string](t, ctx, `document.querySelector('.projections[data-name="catalogue"] .summary').textContent`))

	shutdown, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(shutdown))
}
