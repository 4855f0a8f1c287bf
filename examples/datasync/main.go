// Command datasync runs an inventory service whose products are
// event-sourced, and a warehouse that keeps its own copy of the stock from
// the service's events. The service appends each event and the message
// that announces it in one transaction; an outbox relay publishes the
// messages, in order per product, to NATS JetStream (or, when no NATS
// server answers, to a broker in this process, and says so). The warehouse
// applies each message once, in its own database, even when redelivered;
// midway it dies between applying a message and acknowledging it, and a
// new warehouse takes over. At the end the two copies must match, and the
// audit trail of one product is printed from its stream.
//
//	go run ./examples/datasync
//	go run ./examples/datasync -nats nats://127.0.0.1:4222 -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/outbox"
)

type config struct {
	dsn      string // the service's database, PostgreSQL; SQLite in a temporary directory when empty
	natsURL  string // NATS; a broker in this process when empty or when it does not answer
	products int
	commands int
	crashAt  int // the warehouse dies after applying this many messages
	seed     uint64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN for the service; SQLite in a temporary directory when empty")
	flag.StringVar(&cfg.natsURL, "nats", os.Getenv("RESILIENCE_NATS_URL"), "NATS server URL; a broker in this process when empty or unreachable")
	flag.IntVar(&cfg.products, "products", 10, "products in the inventory")
	flag.IntVar(&cfg.commands, "commands", 300, "receipts and shipments to make")
	flag.IntVar(&cfg.crashAt, "crash-at", 100, "messages the first warehouse applies before it dies")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the commands")
	flag.Parse()
	if _, err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "datasync:", err)
		os.Exit(1)
	}
}

// report is what a run saw.
type report struct {
	broker     string // "NATS JetStream" or "in-process"
	events     int    // events the service appended
	refused    int    // shipments refused for want of stock
	applied    int    // messages the warehouses applied
	duplicates int    // redeliveries the warehouses recognised and skipped
	crashed    bool   // the first warehouse died midway
	match      bool   // the copies match
	audit      []string
}

// tempSQLite opens a SQLite database in a new temporary directory.
func tempSQLite(name string) (*sql.DB, func(), error) {
	dir, err := os.MkdirTemp("", "datasync-"+name)
	if err != nil {
		return nil, nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name+".db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	return db, func() { db.Close(); os.RemoveAll(dir) }, err
}

// product is the service's aggregate: the stock of one SKU.
type product struct{ stock int64 }

func applyProduct(p product, e eventstore.Event) product {
	n, _ := strconv.ParseInt(string(e.Payload), 10, 64)
	switch e.Type {
	case "Received":
		p.stock += n
	case "Shipped":
		p.stock -= n
	}
	return p
}

// service is the inventory service: an event store and an outbox in one
// database.
type service struct {
	db    *sql.DB
	store *eventstore.Store
	ob    *outbox.Outbox
}

// errNoStock is how a shipment of more than the stock is refused.
var errNoStock = errors.New("not enough stock")

// handle receives (qty > 0) or ships (qty < 0) a product: it loads the
// product, decides, and appends the event and enqueues its message in one
// transaction, trying again when another writer got there first.
func (s *service) handle(ctx context.Context, sku string, qty int64) error {
	stream := "product-" + sku
	for {
		p, version, err := eventstore.Load(ctx, s.store, stream, applyProduct)
		if err != nil {
			return err
		}
		e := eventstore.Event{Type: "Received", Payload: strconv.AppendInt(nil, qty, 10)}
		if qty < 0 {
			if p.stock < -qty {
				return errNoStock
			}
			e = eventstore.Event{Type: "Shipped", Payload: strconv.AppendInt(nil, -qty, 10)}
		}
		err = s.append(ctx, stream, version, e)
		if errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return err
	}
}

func (s *service) append(ctx context.Context, stream string, version int64, e eventstore.Event) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	events := []eventstore.Event{e}
	if _, err := s.store.Append(ctx, tx, stream, version, events...); err != nil {
		return err
	}
	e = events[0] // with its ID, stream and version
	if err := s.ob.Enqueue(ctx, tx, outbox.Message{ID: e.ID, Topic: "inventory", Key: e.Stream, Payload: e.Payload,
		Headers: map[string]string{"type": e.Type, "stream": e.Stream, "version": strconv.FormatInt(e.Version, 10)}}); err != nil {
		return err
	}
	return tx.Commit()
}

func run(ctx context.Context, cfg config, out io.Writer) (report, error) {
	var rep report
	var (
		db      *sql.DB
		dialect = eventstore.SQLite
		odial   = outbox.SQLite
		closeDB func()
		err     error
	)
	if cfg.dsn != "" {
		db, err = sql.Open("pgx", cfg.dsn)
		closeDB = func() { db.Close() }
		dialect, odial = eventstore.Postgres, outbox.Postgres
	} else {
		db, closeDB, err = tempSQLite("inventory")
	}
	if err != nil {
		return rep, err
	}
	defer closeDB()
	svc := &service{db: db, store: eventstore.New(db, dialect), ob: outbox.New(db, odial)}
	if err := svc.store.Migrate(ctx); err != nil {
		return rep, err
	}
	if err := svc.ob.Migrate(ctx); err != nil {
		return rep, err
	}

	b, closeBroker, err := connect(ctx, cfg.natsURL, out)
	if err != nil {
		return rep, err
	}
	defer closeBroker()
	rep.broker = b.name()

	whDB, closeWH, err := tempSQLite("warehouse")
	if err != nil {
		return rep, err
	}
	defer closeWH()
	wh := &warehouse{db: whDB}
	if err := wh.migrate(ctx); err != nil {
		return rep, err
	}

	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	relay := svc.ob.NewRelay(b, outbox.WithOrdered(), outbox.WithPollInterval(20*time.Millisecond))
	wg.Go(func() { relay.Run(bg) }) //nolint:errcheck // Run returns nil when stopped

	// The first warehouse dies midway; the second takes over.
	firstDone := make(chan error, 1)
	wg.Go(func() { firstDone <- wh.consume(bg, b, cfg.crashAt) })

	rng := rand.New(rand.NewPCG(cfg.seed, 7))
	for range cfg.commands {
		sku := strconv.Itoa(rng.IntN(cfg.products))
		qty := 1 + rng.Int64N(10)
		if rng.IntN(3) == 0 {
			qty = -qty
		}
		switch err := svc.handle(ctx, sku, qty); {
		case errors.Is(err, errNoStock):
			rep.refused++
		case err != nil:
			return rep, err
		default:
			rep.events++
		}
	}
	if err := <-firstDone; !errors.Is(err, errCrashed) {
		return rep, fmt.Errorf("the first warehouse: %v, want a crash after %d messages", err, cfg.crashAt)
	}
	rep.crashed = true
	fmt.Fprintf(out, "warehouse died after applying %d messages, before acknowledging the last; a new one takes over\n", cfg.crashAt)
	secondDone := make(chan error, 1)
	wg.Go(func() { secondDone <- wh.consume(bg, b, -1) })

	// Wait until the warehouse's copy has every event and the broker has
	// every message acknowledged, the one the first warehouse left
	// unacknowledged included.
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := wh.versions(ctx)
		if err != nil {
			return rep, err
		}
		drained := false
		if n == rep.events {
			if drained, err = b.drained(ctx); err != nil {
				return rep, err
			}
		}
		if drained {
			break
		}
		if time.Now().After(deadline) && n != rep.events {
			return rep, fmt.Errorf("the warehouse applied %d events of %d within a minute", n, rep.events)
		}
		if time.Now().After(deadline) {
			return rep, errors.New("the broker still held unacknowledged messages after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-secondDone; err != nil && !errors.Is(err, context.Canceled) {
		return rep, err
	}
	rep.applied, rep.duplicates = wh.applied, wh.duplicates

	rep.match = true
	for i := range cfg.products {
		sku := strconv.Itoa(i)
		p, _, err := eventstore.Load(ctx, svc.store, "product-"+sku, applyProduct)
		if err != nil {
			return rep, err
		}
		copyStock, err := wh.stock(ctx, sku)
		if err != nil {
			return rep, err
		}
		if copyStock != p.stock {
			rep.match = false
			fmt.Fprintf(out, "product %s: service %d, warehouse %d\n", sku, p.stock, copyStock)
		}
	}
	fmt.Fprintf(out, "service: %d events appended through the outbox to %s, %d shipments refused for want of stock\n", rep.events, rep.broker, rep.refused)
	fmt.Fprintf(out, "warehouse: %d messages applied, %d redeliveries skipped\n", rep.applied, rep.duplicates)
	if rep.match {
		fmt.Fprintf(out, "copies match: %d products\n", cfg.products)
	}

	events, err := svc.store.ReadStream(ctx, "product-0", 1, 1000)
	if err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "audit trail of product-0:\n")
	for _, e := range events {
		line := fmt.Sprintf("  v%d  %-8s %3s  at position %d, %s", e.Version, e.Type, e.Payload, e.Position, e.Time.UTC().Format(time.RFC3339Nano))
		rep.audit = append(rep.audit, strings.TrimSpace(line))
		fmt.Fprintln(out, line)
	}
	return rep, nil
}

// warehouse keeps its own copy of the stock: a row per product with the
// version of the last event applied, in a database of its own.
type warehouse struct {
	db                  *sql.DB
	applied, duplicates int
}

func (w *warehouse) migrate(ctx context.Context) error {
	_, err := w.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL, version INTEGER NOT NULL)")
	return err
}

// errCrashed is how the first warehouse dies.
var errCrashed = errors.New("warehouse crashed")

// errGap is returned for a message that comes before the one it follows:
// it is left unacknowledged, and comes again.
var errGap = errors.New("a message of the product is missing before this one")

// consume applies the broker's messages until ctx is done, or, with crashAt
// >= 0, dies after applying that many, before acknowledging the last.
func (w *warehouse) consume(ctx context.Context, b broker, crashAt int) error {
	applied := 0
	for {
		deliveries, err := b.fetch(ctx, 50)
		if err != nil {
			return err
		}
		for _, d := range deliveries {
			dup, err := w.apply(ctx, d.msg)
			if errors.Is(err, errGap) {
				d.nak()
				continue
			}
			if err != nil {
				return err
			}
			if dup {
				w.duplicates++
			} else {
				w.applied++
				applied++
			}
			if crashAt >= 0 && applied == crashAt {
				return errCrashed // applied and committed, never acknowledged
			}
			d.ack()
		}
	}
}

// apply applies one message in one transaction, unless the copy has its
// version already (a redelivery).
func (w *warehouse) apply(ctx context.Context, m outbox.Message) (duplicate bool, err error) {
	sku := strings.TrimPrefix(m.Headers["stream"], "product-")
	version, err := strconv.ParseInt(m.Headers["version"], 10, 64)
	if err != nil {
		return false, fmt.Errorf("message %s: version: %w", m.ID, err)
	}
	n, err := strconv.ParseInt(string(m.Payload), 10, 64)
	if err != nil {
		return false, fmt.Errorf("message %s: quantity: %w", m.ID, err)
	}
	if m.Headers["type"] == "Shipped" {
		n = -n
	}
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	var have int64
	err = tx.QueryRowContext(ctx, "SELECT version FROM stock WHERE sku = ?", sku).Scan(&have)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	switch {
	case version <= have:
		return true, nil
	case version > have+1:
		return false, errGap
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO stock (sku, quantity, version) VALUES (?, ?, ?)
		ON CONFLICT (sku) DO UPDATE SET quantity = quantity + excluded.quantity, version = excluded.version`, sku, n, version); err != nil {
		return false, err
	}
	return false, tx.Commit()
}

// versions returns how many events the copy holds: the sum of its
// products' versions.
func (w *warehouse) versions(ctx context.Context) (int, error) {
	var n int
	err := w.db.QueryRowContext(ctx, "SELECT COALESCE(SUM(version), 0) FROM stock").Scan(&n)
	return n, err
}

func (w *warehouse) stock(ctx context.Context, sku string) (int64, error) {
	var n int64
	err := w.db.QueryRowContext(ctx, "SELECT quantity FROM stock WHERE sku = ?", sku).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}
