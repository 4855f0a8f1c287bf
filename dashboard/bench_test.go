package dashboard_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/ratelimit"
)

// event is a rejection, as a breaker reports each one while it is open.
var event = resilience.Event{Time: time.Unix(1, 0), Policy: resilience.PolicyCircuitBreaker, Name: "payments",
	Kind: resilience.Rejected, Err: circuitbreaker.ErrOpen, Delay: time.Second}

// BenchmarkObserve is an event kept.
func BenchmarkObserve(b *testing.B) {
	events := new(dashboard.Events)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		events.Observe(ctx, event)
	}
}

// BenchmarkObserveParallel is BenchmarkObserve from every P at once, on one
// Events.
func BenchmarkObserveParallel(b *testing.B) {
	events := new(dashboard.Events)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			events.Observe(ctx, event)
		}
	})
}

// BenchmarkObserveSuccess is an event not kept: that of a healthy call.
func BenchmarkObserveSuccess(b *testing.B) {
	events := new(dashboard.Events)
	ctx := context.Background()
	e := resilience.Event{Policy: resilience.PolicyCircuitBreaker, Kind: resilience.Success}
	b.ReportAllocs()
	for b.Loop() {
		events.Observe(ctx, e)
	}
}

// full returns a dashboard of 4 breakers, 4 bulkheads and 4 limiters, with
// EventsKept events, as the benchmarks render it.
func full() *dashboard.Dashboard {
	events := new(dashboard.Events)
	opts := []dashboard.Option{dashboard.WithEvents(events)}
	for _, name := range []string{"payments", "stock", "shipping", "email"} {
		cb := circuitbreaker.New(circuitbreaker.WithName(name))
		for range 50 {
			_ = cb.Do(context.Background(), func(context.Context) error { return errors.New("down") })
		}
		opts = append(opts, dashboard.WithBreaker(cb), dashboard.WithBulkhead(name, bulkhead.New(10)),
			dashboard.WithLimiter(name, ratelimit.New(10, 10)))
	}
	for range dashboard.EventsKept {
		events.Observe(context.Background(), event)
	}
	return dashboard.New(opts...)
}

// BenchmarkSnapshot reads the state of every component and the events.
func BenchmarkSnapshot(b *testing.B) {
	d := full()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d.Snapshot(ctx)
	}
}

// BenchmarkServe serves the page and snapshot.json.
func BenchmarkServe(b *testing.B) {
	d := full()
	for _, path := range []string{"/", "/snapshot.json"} {
		b.Run(path, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				d.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				io.Copy(io.Discard, w.Body) //nolint:errcheck // a bytes.Buffer
			}
		})
	}
}

// BenchmarkTwoPhaseSnapshot is a look at a coordinator over three
// databases with four branches in doubt: a query on each participant and
// one on the home for each branch.
func BenchmarkTwoPhaseSnapshot(b *testing.B) {
	f := newInDoubt(b)
	d := dashboard.New(dashboard.WithTwoPhase("ledger", f.c))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v := d.Snapshot(ctx).TwoPhase[0]; v.InDoubt != 4 {
			b.Fatalf("%+v", v)
		}
	}
}

// BenchmarkProjectionsSnapshot is a look at the two projections of an
// event store of 1000 events, one caught up and one 500 behind: four
// queries.
func BenchmarkProjectionsSnapshot(b *testing.B) {
	for _, database := range []servicetest.Database{{Dialect: "sqlite", Open: servicetest.SQLite}, {Dialect: "postgres", Open: servicetest.Postgres}} {
		b.Run(database.Dialect, func(b *testing.B) {
			ctx := context.Background()
			s, prs := newStore(b, database.Open(b), "stock", "totals")
			appendEvents(b, s, 500)
			if err := prs[1].Run(ctx, eventstore.UntilCaughtUp()); err != nil {
				b.Fatal(err)
			}
			appendEvents(b, s, 500)
			if err := prs[0].Run(ctx, eventstore.UntilCaughtUp()); err != nil {
				b.Fatal(err)
			}
			d := dashboard.New(dashboard.WithProjections("inventory", s))
			b.ReportAllocs()
			for b.Loop() {
				if v := d.Snapshot(ctx).Projections[0]; v.Behind != 1 || v.Projections[1].Lag != 500 {
					b.Fatalf("%+v", v)
				}
			}
		})
	}
}
