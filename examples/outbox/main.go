// Command outbox runs an order service that announces each order through a
// transactional outbox, with relays publishing to a broker that fails now
// and then, and a consumer that drops redeliveries with an inbox. It prints
// what was written, published and consumed.
//
// It uses SQLite in a temporary directory by default, or PostgreSQL:
//
//	go run ./examples/outbox
//	go run ./examples/outbox -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
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
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/outbox"
)

type config struct {
	dsn     string  // PostgreSQL; empty for SQLite
	orders  int     // orders to place
	reject  float64 // share of orders whose transaction rolls back
	fail    float64 // share of publishes the broker fails
	relays  int
	ordered bool
	seed    uint64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN; SQLite in a temporary directory when empty")
	flag.IntVar(&cfg.orders, "orders", 500, "orders to place")
	flag.Float64Var(&cfg.reject, "reject", 0.1, "share of orders whose transaction rolls back")
	flag.Float64Var(&cfg.fail, "fail", 0.2, "share of publishes the broker fails")
	flag.IntVar(&cfg.relays, "relays", 2, "relays running at once")
	flag.BoolVar(&cfg.ordered, "ordered", true, "publish each order's messages in order")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the broker's failures")
	flag.Parse()
	if _, err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "outbox:", err)
		os.Exit(1)
	}
}

// report is what a run saw.
type report struct {
	committed, rolledBack int // orders
	messages              int // messages committed
	deliveries            int // messages the broker delivered, redeliveries included
	consumed              int // messages the consumer acted on
	duplicates            int // redeliveries the inbox dropped
	outOfOrder            int // an order's messages consumed out of order
}

func open(cfg config) (*sql.DB, outbox.Dialect, func(), error) {
	if cfg.dsn != "" {
		db, err := sql.Open("pgx", cfg.dsn)
		return db, outbox.Postgres, func() { db.Close() }, err
	}
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		return nil, outbox.Dialect{}, nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	return db, outbox.SQLite, func() { db.Close(); os.RemoveAll(dir) }, err
}

// broker hands each message it accepts to the consumer, and fails a share
// of publishes. It may fail after delivering, as a broker whose
// acknowledgement is lost does: the relay then publishes again.
type broker struct {
	mu      sync.Mutex
	rng     *rand.Rand
	fail    float64
	deliver func(outbox.Message)
}

func (b *broker) Publish(ctx context.Context, msgs []outbox.Message) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for i, m := range msgs {
		x := b.rng.Float64()
		if x < b.fail/2 {
			b.deliver(m) // delivered, but the acknowledgement is lost
		}
		if x < b.fail {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = errors.New("broker: timeout")
			continue
		}
		b.deliver(m)
	}
	return errs
}

func run(ctx context.Context, cfg config, out io.Writer) (report, error) {
	var rep report
	db, d, done, err := open(cfg)
	if err != nil {
		return rep, err
	}
	defer done()
	orders := outbox.New(db, d)
	if err := orders.Migrate(ctx); err != nil {
		return rep, err
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS orders (id VARCHAR(32) PRIMARY KEY, total INTEGER NOT NULL)"); err != nil {
		return rep, err
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM orders"); err != nil {
		return rep, err
	}

	// The consumer: an inbox in its own transaction drops redeliveries.
	inbox := orders.NewInbox(fmt.Sprint("shipping-", cfg.seed, "-", time.Now().UnixNano()))
	var mu sync.Mutex
	lastStep := map[string]int{}
	consume := func(m outbox.Message) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			panic(err)
		}
		first, err := inbox.Receive(ctx, tx, m.ID)
		if err != nil {
			panic(err)
		}
		if err := tx.Commit(); err != nil {
			panic(err)
		}
		mu.Lock()
		defer mu.Unlock()
		rep.deliveries++
		if !first {
			rep.duplicates++
			return
		}
		rep.consumed++
		step := int(m.Payload[0] - '0')
		if step != lastStep[m.Key]+1 {
			rep.outOfOrder++
		}
		lastStep[m.Key] = step
	}
	pub := &broker{rng: rand.New(rand.NewPCG(cfg.seed, cfg.seed+1)), fail: cfg.fail, deliver: consume}

	// The relays run while the orders are placed.
	opts := []outbox.Option{outbox.WithPollInterval(20 * time.Millisecond), outbox.WithMaxAttempts(100),
		outbox.WithRetryBackoff(time.Millisecond, 50*time.Millisecond), outbox.WithGapGrace(0)}
	if cfg.ordered {
		opts = append(opts, outbox.WithOrdered())
	}
	rctx, stop := context.WithCancel(ctx)
	var relays sync.WaitGroup
	defer func() { stop(); relays.Wait() }()
	for range cfg.relays {
		relay := orders.NewRelay(pub, opts...)
		relays.Go(func() { relay.Run(rctx) }) //nolint:errcheck // Run returns nil when stopped
	}

	// The service: each order and its two messages in one transaction.
	rng := rand.New(rand.NewPCG(cfg.seed+2, cfg.seed+3))
	for i := range cfg.orders {
		id := fmt.Sprint("o-", i)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return rep, err
		}
		if _, err := tx.ExecContext(ctx, rebind(d, "INSERT INTO orders (id, total) VALUES (?, ?)"), id, 100+i); err != nil {
			tx.Rollback() //nolint:errcheck // the error that matters is err
			return rep, err
		}
		err = orders.Enqueue(ctx, tx,
			outbox.Message{Topic: "orders.created", Key: id, Payload: []byte("1 created")},
			outbox.Message{Topic: "orders.paid", Key: id, Payload: []byte("2 paid")})
		if err != nil {
			tx.Rollback() //nolint:errcheck // the error that matters is err
			return rep, err
		}
		if rng.Float64() < cfg.reject { // a validation fails late: nothing of it remains
			if err := tx.Rollback(); err != nil {
				return rep, err
			}
			rep.rolledBack++
			continue
		}
		if err := tx.Commit(); err != nil {
			return rep, err
		}
		rep.committed++
		rep.messages += 2
	}

	// Wait for the backlog to drain, then stop the relays.
	for {
		b, err := orders.Backlog(ctx)
		if err != nil {
			return rep, err
		}
		if b.Pending+b.Dead == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	relays.Wait()

	fmt.Fprintf(out, "orders committed      %d\n", rep.committed)
	fmt.Fprintf(out, "orders rolled back    %d\n", rep.rolledBack)
	fmt.Fprintf(out, "messages committed    %d\n", rep.messages)
	fmt.Fprintf(out, "broker deliveries     %d\n", rep.deliveries)
	fmt.Fprintf(out, "consumed once         %d\n", rep.consumed)
	fmt.Fprintf(out, "duplicates dropped    %d\n", rep.duplicates)
	fmt.Fprintf(out, "out of order          %d\n", rep.outOfOrder)
	return rep, nil
}

// rebind turns ? placeholders into PostgreSQL's $n.
func rebind(d outbox.Dialect, q string) string {
	if d != outbox.Postgres {
		return q
	}
	n := 0
	out := make([]byte, 0, len(q)+8)
	for i := range len(q) {
		if q[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}
