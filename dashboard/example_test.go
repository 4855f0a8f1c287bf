package dashboard_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/projection"
)

// A dashboard mounted under a prefix; a script reads its snapshot.
func Example() {
	payments := circuitbreaker.New(circuitbreaker.WithName("payments"), circuitbreaker.WithConsecutiveFailures(3))
	d := dashboard.New(
		dashboard.WithBreaker(payments),
		dashboard.WithBulkhead("payments", bulkhead.New(10)),
	)
	mux := http.NewServeMux()
	mux.Handle("/resilience/", d) // the page is at /resilience/
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for range 3 {
		_ = payments.Do(context.Background(), func(context.Context) error { return errors.New("connection refused") })
	}

	resp, err := http.Get(srv.URL + "/resilience/snapshot.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var s dashboard.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		fmt.Println(err)
		return
	}
	b := s.Breakers[0]
	fmt.Printf("%s: %s, %d of %d calls failed\n", b.Name, b.State, b.Failures, b.Calls)
	fmt.Printf("bulkhead %s: %d in flight\n", s.Bulkheads[0].Name, s.Bulkheads[0].InFlight)
	// Output:
	// payments: open, 3 of 3 calls failed
	// bulkhead payments: 0 in flight
}

// An Events made before the components, so that they can report to it,
// and given to the dashboard.
func ExampleEvents() {
	events := new(dashboard.Events)
	payments := circuitbreaker.New(circuitbreaker.WithName("payments"), circuitbreaker.WithConsecutiveFailures(1),
		circuitbreaker.WithOnStateChange(func(tr circuitbreaker.Transition) {
			events.Observe(context.Background(), resilience.Event{Policy: resilience.PolicyCircuitBreaker,
				Name: tr.Name, Kind: resilience.StateChange, From: tr.From.String(), To: tr.To.String()})
		}))
	d := dashboard.New(dashboard.WithEvents(events), dashboard.WithBreaker(payments))

	_ = payments.Do(context.Background(), func(context.Context) error { return errors.New("connection refused") })

	for _, e := range d.Snapshot(context.Background()).Events {
		fmt.Println(e.Policy, e.Name, e.Kind, e.From, "→", e.To)
	}
	// Output:
	// circuitbreaker payments state change closed → open
}

// Actions are for the operators that authorize allows, from the page
// itself: a POST from elsewhere is refused.
func ExampleWithActions() {
	payments := circuitbreaker.New(circuitbreaker.WithName("payments"))
	d := dashboard.New(
		dashboard.WithBreaker(payments),
		dashboard.WithActions(func(r *http.Request) bool {
			return r.Header.Get("X-Role") == "operator" // as the application's auth says
		}),
	)
	srv := httptest.NewServer(d)
	defer srv.Close()

	resp, err := http.PostForm(srv.URL+"/action", url.Values{"do": {"breaker-open"}, "name": {"payments"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, payments.State())
	// Output:
	// 403 Forbidden closed
}

// The projections of an event store on the page: how far behind each read
// model is, before and after its Run.
func ExampleWithProjections() {
	dir, _ := os.MkdirTemp("", "dashboard-example-")
	defer os.RemoveAll(dir)
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "events.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	defer db.Close()
	ctx := context.Background()
	store := eventstore.New(db, eventstore.SQLite)
	_ = store.Migrate(ctx)
	orders := projection.New(store, projection.Projection{
		Name: "orders",
		Create: func(table string) []string {
			return []string{"CREATE TABLE IF NOT EXISTS " + table + " (id TEXT PRIMARY KEY)"}
		},
		Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			for _, e := range events {
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES (?)", e.Stream); err != nil {
					return err
				}
			}
			return nil
		},
	})
	_ = orders.Migrate(ctx)
	for _, id := range []string{"order-1", "order-2", "order-3"} {
		tx, _ := db.BeginTx(ctx, nil)
		_, _ = store.Append(ctx, tx, id, eventstore.NoStream, eventstore.Event{Type: "Placed"})
		_ = tx.Commit()
	}

	d := dashboard.New(dashboard.WithProjections("shop", store))
	show := func() {
		for _, p := range d.Snapshot(ctx).Projections[0].Projections {
			fmt.Printf("%s (generation %d): at %d of %d, %d behind\n", p.Name, p.Generation, p.Position, p.Head, p.Lag)
		}
	}
	show()
	_ = orders.Run(ctx, eventstore.UntilCaughtUp())
	show()
	// Output:
	// orders (generation 1): at 0 of 3, 3 behind
	// orders (generation 1): at 3 of 3, 0 behind
}
