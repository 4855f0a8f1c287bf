// Command checkout processes orders as sagas: reserve the stock, charge the
// card, create the shipment. Each step writes its change and an event in one
// transaction, through the outbox, behind a barrier that makes it take
// effect once; a relay publishes the events. A share of cards is declined,
// so some orders are compensated: the charge is not kept, the stock goes
// back, and events say so. The payment gateway also times out now and then,
// which a retry absorbs. The program prints what happened to each order,
// the events published, and checks that the stock adds up.
//
// It uses SQLite in a temporary directory by default, or PostgreSQL:
//
//	go run ./examples/checkout
//	go run ./examples/checkout -orders 50 -decline 0.3
//	go run ./examples/checkout -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// With -http it serves the dashboard of the outbox and the sagas at
// /resilience/ while it runs, and after, until interrupted:
//
//	go run ./examples/checkout -http :8080 -orders 5000 -workers 2
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/saga"
)

type config struct {
	dsn       string  // PostgreSQL; empty for SQLite
	orders    int     // orders to place
	decline   float64 // share of cards declined
	flaky     float64 // share of charges that time out once
	workers   int     // orders processed at once
	seed      uint64  // chooses which cards are declined
	quiet     bool    // print the summary only
	http      string  // where to serve the dashboard; "": nowhere
	initStock int
}

func main() {
	cfg := config{initStock: 1000}
	flag.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN; SQLite in a temporary directory when empty")
	flag.IntVar(&cfg.orders, "orders", 12, "orders to place")
	flag.Float64Var(&cfg.decline, "decline", 0.25, "share of cards declined")
	flag.Float64Var(&cfg.flaky, "flaky", 0.3, "share of charges whose first attempt times out")
	flag.IntVar(&cfg.workers, "workers", 4, "orders processed at once")
	flag.Uint64Var(&cfg.seed, "seed", 1, "chooses which cards are declined")
	flag.BoolVar(&cfg.quiet, "quiet", false, "print the summary only")
	flag.StringVar(&cfg.http, "http", "", "serve the dashboard at this address, such as :8080, until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "checkout:", err)
		os.Exit(1)
	}
}

// report is what a run saw.
type report struct {
	completed, compensated int
	events                 map[string][]string // order -> event types, as published
	stockBefore, stockNow  int
	sold                   int
	timeouts               int // charges that timed out and were retried
}

// shop holds the services' tables and the outbox, in one database.
type shop struct {
	db       *sql.DB
	postgres bool
	events   *outbox.Outbox
	barrier  *saga.Barrier
	cfg      config
	timeouts atomic.Int32
	mu       sync.Mutex
	charges  map[string]int // attempts per order
}

// q rebinds a query's ? placeholders for PostgreSQL.
func (s *shop) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func open(cfg config) (*sql.DB, bool, func(), error) {
	if cfg.dsn != "" {
		db, err := sql.Open("pgx", cfg.dsn)
		return db, true, func() { db.Close() }, err
	}
	dir, err := os.MkdirTemp("", "checkout-example")
	if err != nil {
		return nil, false, nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	return db, false, func() { db.Close(); os.RemoveAll(dir) }, err
}

// order is what the saga carries: its input.
type order struct {
	id    string
	num   int
	sku   string
	qty   int
	cents int
}

func (o order) encode() []byte {
	return fmt.Appendf(nil, "%s %d %s %d %d", o.id, o.num, o.sku, o.qty, o.cents)
}

func decode(b []byte) (o order) {
	fmt.Sscanf(string(b), "%s %d %s %d %d", &o.id, &o.num, &o.sku, &o.qty, &o.cents) //nolint:errcheck // written by encode
	return o
}

var errDeclined = errors.New("card declined")

// chance maps an order's number and a purpose to [0, 1), the same on every
// run with the same seed.
func (s *shop) chance(num int, purpose string) float64 {
	h := fnv.New64a()
	fmt.Fprint(h, s.cfg.seed, "/", num, "/", purpose)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// local runs fn in a transaction behind the barrier, with the event it
// publishes: the change, the barrier's record and the event commit together,
// or not at all.
func (s *shop) local(ctx context.Context, c *saga.Call, event string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	o := decode(c.Input)
	err = s.barrier.Call(ctx, tx, c.Key, func(ctx context.Context) error {
		if err := fn(tx); err != nil {
			return err
		}
		return s.events.Enqueue(ctx, tx, outbox.Message{
			ID:      c.Key.String(), // one event per call: a re-publish is a duplicate
			Topic:   "shop." + event,
			Key:     o.id, // an order's events are published in order
			Payload: o.encode(),
		})
	})
	if err != nil {
		return err
	}
	return tx.Commit()
}

func (s *shop) reserve(ctx context.Context, c *saga.Call) error {
	o := decode(c.Input)
	return s.local(ctx, c, "stock.reserved", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q("UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?"), o.qty, o.sku, o.qty)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(errors.New("out of stock"), err)
		}
		return nil
	})
}

func (s *shop) release(ctx context.Context, c *saga.Call) error {
	o := decode(c.Input)
	return s.local(ctx, c, "stock.released", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q("UPDATE stock SET available = available + ? WHERE sku = ?"), o.qty, o.sku)
		return err
	})
}

// charge calls a payment gateway that declines some cards and times out
// now and then; the retry around it absorbs the timeouts.
func (s *shop) charge(ctx context.Context, c *saga.Call) error {
	o := decode(c.Input)
	if s.chance(o.num, "decline") < s.cfg.decline {
		return retry.Permanent(errDeclined)
	}
	if s.chance(o.num, "flaky") < s.cfg.flaky && s.firstAttempt(o.id) {
		s.timeouts.Add(1)
		return errors.New("payment gateway: timeout")
	}
	paymentID := "pay-" + o.id
	c.SetOutput([]byte(paymentID))
	return s.local(ctx, c, "payment.charged", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO payments (id, order_id, cents, refunded) VALUES (?, ?, ?, 0)"), paymentID, o.id, o.cents)
		return err
	})
}

func (s *shop) refund(ctx context.Context, c *saga.Call) error {
	return s.local(ctx, c, "payment.refunded", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q("UPDATE payments SET refunded = 1 WHERE id = ?"), string(c.Output))
		return err
	})
}

func (s *shop) ship(ctx context.Context, c *saga.Call) error {
	o := decode(c.Input)
	return s.local(ctx, c, "shipment.created", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO shipments (order_id, sku, qty) VALUES (?, ?, ?)"), o.id, o.sku, o.qty)
		return err
	})
}

// firstAttempt reports whether this is the first charge of the order.
func (s *shop) firstAttempt(orderID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.charges[orderID]++
	return s.charges[orderID] == 1
}

func run(ctx context.Context, cfg config, out io.Writer) (report, error) {
	rep := report{events: map[string][]string{}}
	db, postgres, done, err := open(cfg)
	if err != nil {
		return rep, err
	}
	defer done()
	db.SetMaxOpenConns(8)
	s := &shop{db: db, postgres: postgres, cfg: cfg, charges: map[string]int{}}
	od, sd := outbox.SQLite, saga.SQLite
	if postgres {
		od, sd = outbox.Postgres, saga.Postgres
	}
	s.events = outbox.New(db, od)
	s.barrier = saga.NewBarrier(sd)
	if err := s.events.Migrate(ctx); err != nil {
		return rep, err
	}
	if err := saga.Migrate(ctx, db, sd); err != nil {
		return rep, err
	}
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS stock (sku VARCHAR(32) PRIMARY KEY, available INTEGER NOT NULL)",
		"CREATE TABLE IF NOT EXISTS payments (id VARCHAR(64) PRIMARY KEY, order_id VARCHAR(64) NOT NULL, cents INTEGER NOT NULL, refunded INTEGER NOT NULL)",
		"CREATE TABLE IF NOT EXISTS shipments (order_id VARCHAR(64) PRIMARY KEY, sku VARCHAR(32) NOT NULL, qty INTEGER NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return rep, err
		}
	}
	// Each run has orders of its own, so that runs on one database do not
	// meet.
	runID := fmt.Sprintf("%x", time.Now().UnixNano())
	sku := "sku-" + runID
	if _, err := db.ExecContext(ctx, s.q("INSERT INTO stock (sku, available) VALUES (?, ?)"), sku, cfg.initStock); err != nil {
		return rep, err
	}
	rep.stockBefore = cfg.initStock

	checkout := saga.Define("checkout", 1,
		saga.Step("reserve", s.reserve, s.release, saga.Idempotent()),
		saga.Step("charge", s.charge, s.refund, saga.WithPolicy(retry.New(
			retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(5*time.Millisecond))))),
		saga.Step("ship", s.ship, nil),
	)
	coordinator := saga.New(saga.WithStore(db, sd), saga.WithDefinitions(checkout))
	if cfg.http != "" {
		stop, err := serveDashboard(cfg.http, s.events, coordinator, out)
		if err != nil {
			return rep, err
		}
		defer stop()
	}

	// The relay publishes the events to a broker that prints them.
	var mu sync.Mutex
	var published []outbox.Message
	broker := publisherFunc(func(ctx context.Context, msgs []outbox.Message) []error {
		mu.Lock()
		published = append(published, msgs...)
		mu.Unlock()
		return nil
	})
	relay := s.events.NewRelay(broker, outbox.WithOrdered(), outbox.WithPollInterval(20*time.Millisecond))
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()

	// The orders, a few at a time.
	orders := make([]order, cfg.orders)
	for i := range orders {
		orders[i] = order{id: fmt.Sprintf("order-%03d-%s", i+1, runID), num: i + 1, sku: sku, qty: 1 + i%3, cents: 1999 + 500*(i%4)}
	}
	outcome := make([]string, len(orders))
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(cfg.workers, 1) {
		wg.Go(func() {
			for i := range work {
				o := orders[i]
				err := coordinator.Run(ctx, checkout, o.id, o.encode())
				var se *saga.Error
				switch {
				case err == nil:
					outcome[i] = "completed"
				case errors.As(err, &se):
					outcome[i] = fmt.Sprintf("%s: %s failed (%v)", se.Status, se.Step, se.Err)
				default:
					outcome[i] = "error: " + err.Error()
				}
			}
		})
	}
	for i := range orders {
		work <- i
	}
	close(work)
	wg.Wait()

	// Wait for the relay to publish every event, then stop it.
	for {
		backlog, err := s.events.Backlog(ctx)
		if err != nil {
			stopRelay()
			return rep, err
		}
		if backlog.Pending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return rep, err
	}

	mu.Lock()
	for _, m := range published {
		o := decode(m.Payload)
		rep.events[o.id] = append(rep.events[o.id], strings.TrimPrefix(m.Topic, "shop."))
	}
	mu.Unlock()
	if err := db.QueryRowContext(ctx, s.q("SELECT available FROM stock WHERE sku = ?"), sku).Scan(&rep.stockNow); err != nil {
		return rep, err
	}
	rep.timeouts = int(s.timeouts.Load())

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for i, o := range orders {
		if outcome[i] == "completed" {
			rep.completed++
			rep.sold += o.qty
		} else if strings.HasPrefix(outcome[i], saga.Compensated.String()) {
			rep.compensated++
		}
		if !cfg.quiet {
			fmt.Fprintf(tw, "%s\t%d × $%d.%02d\t%s\t%s\n", strings.TrimSuffix(o.id, "-"+runID), o.qty, o.cents/100, o.cents%100, outcome[i],
				strings.Join(rep.events[o.id], " → "))
		}
	}
	tw.Flush()
	fmt.Fprintf(out, "\n%d orders: %d completed, %d compensated; %d gateway timeouts retried; %d events published\n",
		len(orders), rep.completed, rep.compensated, rep.timeouts, len(published))
	verdict := "adds up"
	if rep.stockBefore-rep.sold != rep.stockNow {
		verdict = "DOES NOT ADD UP"
	}
	fmt.Fprintf(out, "stock: %d before, %d sold, %d now: %s\n", rep.stockBefore, rep.sold, rep.stockNow, verdict)
	if cfg.http != "" {
		fmt.Fprintln(out, "dashboard: serving until interrupted")
		<-ctx.Done()
	}
	return rep, nil
}

// serveDashboard serves a dashboard of the outbox and the sagas at
// /resilience/ on addr, and returns the func that stops it.
func serveDashboard(addr string, events *outbox.Outbox, sagas *saga.Coordinator, out io.Writer) (stop func(), err error) {
	d := dashboard.New(dashboard.WithOutbox("events", events), dashboard.WithSagas("checkout", sagas))
	mux := http.NewServeMux()
	mux.Handle("/resilience/", d)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(d.Close) // the page's event streams end
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	fmt.Fprintf(out, "dashboard: http://%s/resilience/\n", net.JoinHostPort(host, port))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck // the program ends
		<-served
	}, nil
}

type publisherFunc func(ctx context.Context, msgs []outbox.Message) []error

func (f publisherFunc) Publish(ctx context.Context, msgs []outbox.Message) []error {
	return f(ctx, msgs)
}
