// Command readheavy runs a catalogue with an event-sourced write model (a
// stream per product) and a projection as its read model, under a load of
// many reads per write: reads go through a cache whose misses are
// de-duplicated with singleflight, and each client is held to a rate of its
// own. It prints reads per second, the cache's hit rate, the calls the
// limiter refused, and how far the projection lagged.
//
// It uses SQLite in a temporary directory by default, or PostgreSQL:
//
//	go run ./examples/readheavy
//	go run ./examples/readheavy -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
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
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/projection"
	"github.com/resilience-go/resilience/ratelimit"
)

type config struct {
	dsn      string        // PostgreSQL; empty for SQLite
	products int           // products in the catalogue
	writes   int           // price changes
	ratio    int           // reads per write
	clients  int           // clients reading and writing at once
	rate     float64       // reads a second each client may make
	ttl      time.Duration // how long the cache keeps a product
	seed     uint64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.dsn, "dsn", "", "PostgreSQL DSN; SQLite in a temporary directory when empty")
	flag.IntVar(&cfg.products, "products", 100, "products in the catalogue")
	flag.IntVar(&cfg.writes, "writes", 400, "price changes to make")
	flag.IntVar(&cfg.ratio, "ratio", 20, "reads per write")
	flag.IntVar(&cfg.clients, "clients", 8, "clients at once")
	flag.Float64Var(&cfg.rate, "rate", 2000, "reads a second each client may make")
	flag.DurationVar(&cfg.ttl, "ttl", 100*time.Millisecond, "how long the cache keeps a product")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the load")
	flag.Parse()
	if _, err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "readheavy:", err)
		os.Exit(1)
	}
}

// report is what a run saw.
type report struct {
	reads, hits, misses, limited int64 // read calls, and how each ended
	loads                        int64 // queries of the read model
	writes, conflicts            int64 // price changes, and appends that lost a race and were tried again
	maxLag                       int64 // the projection's largest lag seen, in events
	maxLagTime                   time.Duration
	matches                      bool // the read model equals the streams at the end
	elapsed                      time.Duration
}

func open(cfg config) (*sql.DB, eventstore.Dialect, func(), error) {
	if cfg.dsn != "" {
		db, err := sql.Open("pgx", cfg.dsn)
		return db, eventstore.Postgres, func() { db.Close() }, err
	}
	dir, err := os.MkdirTemp("", "readheavy-example")
	if err != nil {
		return nil, eventstore.Dialect{}, nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "catalogue.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	return db, eventstore.SQLite, func() { db.Close(); os.RemoveAll(dir) }, err
}

// product is the write model's aggregate and the read model's row.
type product struct {
	ID    string
	Name  string
	Price int64 // cents
}

func applyProduct(p product, e eventstore.Event) product {
	switch e.Type {
	case "ProductCreated":
		name, price, _ := strings.Cut(string(e.Payload), "|")
		p.ID = strings.TrimPrefix(e.Stream, "product-")
		p.Name = name
		p.Price, _ = strconv.ParseInt(price, 10, 64)
	case "PriceChanged":
		p.Price, _ = strconv.ParseInt(string(e.Payload), 10, 64)
	}
	return p
}

// catalogue is the read model: a row per product, kept by a projection.
func catalogue(rebind func(string) string) projection.Projection {
	return projection.Projection{
		Name: "catalogue",
		Create: func(table string) []string {
			return []string{"CREATE TABLE IF NOT EXISTS " + table + " (id VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, price BIGINT NOT NULL)"}
		},
		Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			for _, e := range events {
				p := applyProduct(product{}, e)
				var err error
				switch e.Type {
				case "ProductCreated":
					_, err = tx.ExecContext(ctx, rebind("INSERT INTO "+table+" (id, name, price) VALUES (?, ?, ?)"), p.ID, p.Name, p.Price)
				case "PriceChanged":
					_, err = tx.ExecContext(ctx, rebind("UPDATE "+table+" SET price = ? WHERE id = ?"), p.Price, strings.TrimPrefix(e.Stream, "product-"))
				}
				if err != nil {
					return fmt.Errorf("event %d: %w", e.Position, err)
				}
			}
			return nil
		},
	}
}

// cache keeps products read from the read model for a while; concurrent
// misses of one product share one query.
type cache struct {
	db     *sql.DB
	rebind func(string) string
	ttl    time.Duration
	group  singleflight.Group
	mu     sync.Mutex
	items  map[string]cached
	loads  atomic.Int64
}

type cached struct {
	p  product
	at time.Time
}

func (c *cache) get(ctx context.Context, id string) (product, bool, error) {
	c.mu.Lock()
	item, ok := c.items[id]
	c.mu.Unlock()
	if ok && time.Since(item.at) < c.ttl {
		return item.p, true, nil
	}
	v, err, _ := c.group.Do(id, func() (any, error) {
		c.loads.Add(1)
		p := product{ID: id}
		err := c.db.QueryRowContext(ctx, c.rebind("SELECT name, price FROM catalogue WHERE id = ?"), id).Scan(&p.Name, &p.Price)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.items[id] = cached{p: p, at: time.Now()}
		c.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return product{}, false, err
	}
	return v.(product), false, nil
}

func run(ctx context.Context, cfg config, out io.Writer) (report, error) {
	var rep report
	db, dialect, closeDB, err := open(cfg)
	if err != nil {
		return rep, err
	}
	defer closeDB()
	rebind := func(q string) string { return q }
	if dialect == eventstore.Postgres {
		rebind = func(q string) string {
			var b strings.Builder
			n := 0
			for _, r := range q {
				if r == '?' {
					n++
					fmt.Fprintf(&b, "$%d", n)
					continue
				}
				b.WriteRune(r)
			}
			return b.String()
		}
	}
	store := eventstore.New(db, dialect)
	if err := store.Migrate(ctx); err != nil {
		return rep, err
	}
	pr := projection.New(store, catalogue(rebind))
	if err := pr.Migrate(ctx); err != nil {
		return rep, err
	}
	for i := range cfg.products {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return rep, err
		}
		if _, err := store.Append(ctx, tx, fmt.Sprint("product-", i), eventstore.NoStream,
			eventstore.Event{Type: "ProductCreated", Payload: fmt.Appendf(nil, "Product %d|%d", i, 1000+i)}); err != nil {
			tx.Rollback() //nolint:errcheck // the error above is the one to report
			return rep, err
		}
		if err := tx.Commit(); err != nil {
			return rep, err
		}
	}

	runCtx, stopRun := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer background.Wait()
	defer stopRun()
	background.Go(func() { pr.Run(runCtx, eventstore.WithPollInterval(10*time.Millisecond)) }) //nolint:errcheck // Run returns nil when stopped
	var maxLag, maxLagTime atomic.Int64
	background.Go(func() {
		for runCtx.Err() == nil {
			if states, err := projection.Status(runCtx, store); err == nil && len(states) == 1 {
				maxLag.Store(max(maxLag.Load(), states[0].Lag))
				maxLagTime.Store(max(maxLagTime.Load(), int64(states[0].LagTime)))
			}
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-runCtx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	})
	// Readers start once the read model has every product.
	for {
		states, err := projection.Status(ctx, store)
		if err != nil {
			return rep, err
		}
		if states[0].Lag == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	c := &cache{db: db, rebind: rebind, ttl: cfg.ttl, items: map[string]cached{}}
	limiter := ratelimit.NewKeyed(rate.Limit(cfg.rate), max(1, int(cfg.rate/20)))
	var (
		reads, hits, misses, limited, writes, conflicts atomic.Int64
		clients                                         sync.WaitGroup
		firstErr                                        error
		errOnce                                         sync.Once
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	start := time.Now()
	for cl := range cfg.clients {
		clients.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(cl)))
			client := fmt.Sprint("client-", cl)
			for w := cl; w < cfg.writes; w += cfg.clients {
				id := fmt.Sprint(rng.IntN(cfg.products))
				if err := changePrice(ctx, store, id, 500+rng.Int64N(5000), &conflicts); err != nil {
					fail(err)
					return
				}
				writes.Add(1)
				for range cfg.ratio {
					reads.Add(1)
					if !limiter.AllowKey(client) {
						limited.Add(1)
						continue
					}
					// Readers favour a few products: a tenth of them get
					// most reads.
					n := rng.IntN(cfg.products)
					if rng.IntN(10) < 8 {
						n = rng.IntN(max(1, cfg.products/10))
					}
					_, hit, err := c.get(ctx, fmt.Sprint(n))
					if err != nil {
						fail(err)
						return
					}
					if hit {
						hits.Add(1)
					} else {
						misses.Add(1)
					}
				}
			}
		})
	}
	clients.Wait()
	rep.elapsed = time.Since(start)
	if firstErr != nil {
		return rep, firstErr
	}
	// The read model catches up, and must then equal the streams.
	for {
		states, err := projection.Status(ctx, store)
		if err != nil {
			return rep, err
		}
		if states[0].Lag == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopRun()
	background.Wait()
	rep.matches = true
	for i := range cfg.products {
		want, _, err := eventstore.Load(ctx, store, fmt.Sprint("product-", i), applyProduct)
		if err != nil {
			return rep, err
		}
		got := product{ID: fmt.Sprint(i)}
		if err := db.QueryRowContext(ctx, rebind("SELECT name, price FROM catalogue WHERE id = ?"), got.ID).Scan(&got.Name, &got.Price); err != nil {
			return rep, err
		}
		if got != want {
			rep.matches = false
			fmt.Fprintf(out, "product %s: read model %+v, stream %+v\n", got.ID, got, want)
		}
	}
	rep.reads, rep.hits, rep.misses, rep.limited = reads.Load(), hits.Load(), misses.Load(), limited.Load()
	rep.loads, rep.writes, rep.conflicts = c.loads.Load(), writes.Load(), conflicts.Load()
	rep.maxLag, rep.maxLagTime = maxLag.Load(), time.Duration(maxLagTime.Load())

	secs := rep.elapsed.Seconds()
	served := rep.hits + rep.misses
	fmt.Fprintf(out, "catalogue of %d products on %s, %d clients, %d reads per write\n", cfg.products, dialect.Database(), cfg.clients, cfg.ratio)
	fmt.Fprintf(out, "writes: %d price changes (%.0f/s), %d appends lost a race and were tried again\n", rep.writes, float64(rep.writes)/secs, rep.conflicts)
	fmt.Fprintf(out, "reads: %d calls (%.0f/s), %d served, %d limited by the per-client rate\n", rep.reads, float64(rep.reads)/secs, served, rep.limited)
	fmt.Fprintf(out, "cache: %.1f%% hits, %d misses answered by %d queries of the read model (singleflight)\n",
		100*float64(rep.hits)/float64(max(served, 1)), rep.misses, rep.loads)
	fmt.Fprintf(out, "projection lag: at most %d events, %v; none at the end\n", rep.maxLag, rep.maxLagTime.Round(time.Millisecond))
	if rep.matches {
		fmt.Fprintf(out, "read model matches the event streams: %d products\n", cfg.products)
	}
	return rep, nil
}

// changePrice loads a product, and appends its new price at the version it
// loaded; it tries again when another writer got there first.
func changePrice(ctx context.Context, store *eventstore.Store, id string, price int64, conflicts *atomic.Int64) error {
	stream := "product-" + id
	for {
		p, version, err := eventstore.Load(ctx, store, stream, applyProduct)
		if err != nil {
			return err
		}
		if p.Price == price {
			price++ // a change, every time
		}
		tx, err := store.DB().BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		_, err = store.Append(ctx, tx, stream, version, eventstore.Event{Type: "PriceChanged", Payload: strconv.AppendInt(nil, price, 10)})
		if errors.Is(err, eventstore.ErrVersionConflict) {
			conflicts.Add(1)
			if err := tx.Rollback(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			tx.Rollback() //nolint:errcheck // the error above is the one to report
			return err
		}
		return tx.Commit()
	}
}
