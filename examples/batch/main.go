// Command batch imports records into a database through a flaky
// enrichment service: a bulkhead bounds the calls to the service at once,
// a retry with a shared budget tries each call again, and a timeout bounds
// each attempt. Records that still fail go to a dead-letter table with
// their error. A rerun resumes where the last run stopped, even one that
// was killed: a record's key is the primary key of both tables, each
// batch of results is written in one transaction, and a run skips the
// keys already in either table.
//
// It imports 100,000 generated records, or those of a CSV file with the
// header key,name,value, into SQLite (the file batch.db by default) or
// PostgreSQL:
//
//	go run ./examples/batch
//	go run ./examples/batch -in records.csv -db /tmp/import.db
//	go run ./examples/batch -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./examples/batch -reset   # empty the tables and import all again
//
// # The service
//
// The enrichment service runs in the process. A call takes half to one and
// a half times -latency (2ms); -fail (5%) of calls fail with a 503,
// -slow (0.5%) take 250ms, longer than the -timeout (50ms) of an attempt,
// and -invalid (0.1%) of records are refused with a 422 whatever the
// attempt, which is not retried. Which calls fail is drawn from -seed,
// each record's key and the attempt's number, so runs repeat each other's
// draws whatever the order of the calls.
//
// # The policies
//
//	resilience.Chain(
//		retry.New(retry.WithMaxAttempts(4), retry.WithBudget(retry.NewBudget(0.2, 10)), ...),
//		bulkhead.New(32, bulkhead.WithMaxWait(time.Minute)),
//		timeout.New(50*time.Millisecond),
//	)
//
// in the canonical order: the timeout bounds one attempt, the bulkhead
// admits -concurrency (32) of the -workers (64) goroutines' calls at once,
// and the wait for a slot is not charged to the attempt; the retry makes
// up to -attempts (4) attempts, 5-100ms apart with full jitter, drawing
// from a budget that lets retries add a fifth to the calls.
//
// # The output
//
// On a terminal a progress bar shows the records done, the rate, the time
// left and the retries and dead letters so far; otherwise (output to a
// file or a pipe, or -lines) a line a second says the same. The summary
// says what the run imported and dead-lettered, the dead letters by error,
// and what the tables hold:
//
//	$ go run ./examples/batch | cat
//	Importing 100000 records into SQLite batch.db (tables batch_records, batch_dead_letters): 0 done before, 100000 to do.
//	progress: 10019/100000 records (10.0%), 10006 records/s, ETA 9s, retried 565, failed 13
//	progress: 17905/100000 records (17.9%), 8945 records/s, ETA 9s, retried 1065, failed 17
//	...
//	progress: 98622/100000 records (98.6%), 8965 records/s, ETA 0s, retried 5797, failed 102
//	progress: 100000/100000 records (100.0%), 8972 records/s, ETA 0s, retried 5853, failed 103
//	Imported 99897 and dead-lettered 103 records in 11.146s (8972 records/s), with 5853 retries.
//	Dead letters of this run, by error:
//	     101  enrich: 422 invalid record
//	       2  retry: gave up after 4 attempts (max attempts): enrich: 503 service unavailable
//	SQLite batch.db holds 99897 records and 103 dead letters: 100000 of the 100000 records.
//
// Killed midway (kill -9) and run again, it goes on from what was written:
//
//	Importing 100000 records into SQLite batch.db (tables batch_records, batch_dead_letters): 5893 done before, 94107 to do.
//
// Interrupted (Ctrl-C), it writes what it has processed and stops; a rerun
// resumes from there.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// config describes one run.
type config struct {
	n           int    // records to generate, without -in
	in          string // CSV file to import instead
	db          string // SQLite file
	dsn         string // PostgreSQL instead
	prefix      string // of the tables' names
	reset       bool   // empty the tables first
	workers     int
	concurrency int // calls to the service at once: the bulkhead's slots
	attempts    int
	timeout     time.Duration // of an attempt
	service     enricher
	lines       bool // plain lines even on a terminal
	tty         bool // stdout is a terminal
}

// usageError is an error in the command line.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg, err := parse(os.Args[1:], os.Stderr)
	if err == nil {
		cfg.tty = isTerminal(os.Stdout) && !cfg.lines
		_, err = run(ctx, cfg, os.Stdout)
	}
	stop()
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		os.Exit(2) // the flag package, or parse, has said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "batch:", err)
		os.Exit(1)
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// parse reads the command line.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{service: enricher{slowFor: 250 * time.Millisecond}}
	fs.IntVar(&cfg.n, "n", 100_000, "records to generate, without -in")
	fs.StringVar(&cfg.in, "in", "", "import this CSV file (header key,name,value) instead")
	fs.StringVar(&cfg.db, "db", "batch.db", "SQLite file to import into")
	fs.StringVar(&cfg.dsn, "dsn", "", "import into this PostgreSQL database instead")
	fs.StringVar(&cfg.prefix, "prefix", "batch_", "prefix of the tables' names: <prefix>records, <prefix>dead_letters")
	fs.BoolVar(&cfg.reset, "reset", false, "empty the tables first, and import everything again")
	fs.IntVar(&cfg.workers, "workers", 64, "records processed at once")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "calls to the enrichment service at once (the bulkhead)")
	fs.IntVar(&cfg.attempts, "attempts", 4, "attempts per record, the first included")
	fs.DurationVar(&cfg.timeout, "timeout", 50*time.Millisecond, "time allowed an attempt")
	fs.DurationVar(&cfg.service.latency, "latency", 2*time.Millisecond, "the service's mean latency")
	fs.Float64Var(&cfg.service.fail, "fail", 0.05, "share of calls that fail with a 503")
	fs.Float64Var(&cfg.service.slow, "slow", 0.005, "share of calls that take 250ms")
	fs.Float64Var(&cfg.service.invalid, "invalid", 0.001, "share of records refused with a 422")
	fs.Uint64Var(&cfg.service.seed, "seed", 1, "seed of the records and of the service's failures")
	fs.BoolVar(&cfg.lines, "lines", false, "print progress lines even on a terminal")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: batch [-n records | -in file.csv] [-db file | -dsn postgres-dsn] [flags]")
		fmt.Fprintln(fs.Output(), "Imports records through a flaky service with a bulkhead, retries and timeouts; see go doc.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	bad := func(format string, a ...any) (config, error) {
		fmt.Fprintf(fs.Output(), format+"\n", a...)
		return cfg, usageError{fmt.Errorf(format, a...)}
	}
	share := func(v float64) bool { return v >= 0 && v <= 1 }
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case cfg.n < 0:
		return bad("-n %d: want 0 or more records", cfg.n)
	case !prefixPattern.MatchString(cfg.prefix):
		return bad("-prefix %q: want letters, digits and underscores, not starting with a digit", cfg.prefix)
	case cfg.workers < 1:
		return bad("-workers %d: want at least 1", cfg.workers)
	case cfg.concurrency < 1:
		return bad("-concurrency %d: want at least 1", cfg.concurrency)
	case cfg.attempts < 1:
		return bad("-attempts %d: want at least 1", cfg.attempts)
	case cfg.timeout <= 0:
		return bad("-timeout %v: want a positive duration", cfg.timeout)
	case cfg.service.latency < 0:
		return bad("-latency %v: want 0 or more", cfg.service.latency)
	case !share(cfg.service.fail):
		return bad("-fail %v: want a share from 0 to 1", cfg.service.fail)
	case !share(cfg.service.slow):
		return bad("-slow %v: want a share from 0 to 1", cfg.service.slow)
	case !share(cfg.service.invalid):
		return bad("-invalid %v: want a share from 0 to 1", cfg.service.invalid)
	}
	return cfg, nil
}

// report is what a run did.
type report struct {
	total, before      int // records in the input; done by earlier runs
	imported, failed   int // by this run
	retried            int
	dups               int            // keys repeated in the CSV, skipped
	byError            map[string]int // dead letters of this run by error
	records, deadLetts int            // in the tables at the end
}

// run imports the records cfg names into its database, printing the
// progress and a summary to stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) (*report, error) {
	var (
		recs []record
		rep  = &report{byError: map[string]int{}}
	)
	if cfg.in != "" {
		f, err := os.Open(cfg.in)
		if err != nil {
			return nil, err
		}
		recs, rep.dups, err = readCSV(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.in, err)
		}
	} else {
		recs = generate(cfg.n, cfg.service.seed)
	}
	rep.total = len(recs)

	var (
		st  *store
		err error
	)
	if cfg.dsn != "" {
		st, err = openPostgres(cfg.dsn, cfg.prefix)
	} else {
		st, err = openSQLite(cfg.db, cfg.prefix)
	}
	if err != nil {
		return nil, err
	}
	defer st.close()
	if cfg.reset {
		if err := st.reset(ctx); err != nil {
			return nil, err
		}
	}
	done, err := st.done(ctx)
	if err != nil {
		return nil, err
	}
	var todo []record
	for _, r := range recs {
		if done[r.key] {
			rep.before++
		} else {
			todo = append(todo, r)
		}
	}
	fmt.Fprintf(stdout, "Importing %d records into %s (tables %s, %s): %d done before, %d to do.\n",
		rep.total, st.name, st.records, st.deadLetters, rep.before, len(todo))
	if rep.dups > 0 {
		fmt.Fprintf(stdout, "Skipped %d lines of %s whose key came before.\n", rep.dups, cfg.in)
	}

	p := &progress{out: stdout, tty: cfg.tty, total: rep.total, before: rep.before, start: time.Now()}
	errs, err := importAll(ctx, cfg, st, todo, p)
	rep.imported = int(p.done.Load() - p.failed.Load())
	rep.failed = int(p.failed.Load())
	rep.retried = int(p.retried.Load())
	for _, e := range errs {
		rep.byError[e]++
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "Interrupted after writing %d records; run again to resume.\n", rep.imported+rep.failed)
		}
		return rep, err
	}
	return rep, summarize(ctx, st, rep, time.Since(p.start), stdout)
}

// importAll imports todo into st, showing p, and returns the errors of the
// records it dead-lettered. It returns when every record is written, or
// with the first error writing them, or with ctx's error once ctx is done
// and the records already processed are written.
func importAll(ctx context.Context, cfg config, st *store, todo []record, p *progress) ([]string, error) {
	budget := retry.NewBudget(0.2, 10)
	policy := resilience.Chain(
		retry.New(retry.WithMaxAttempts(cfg.attempts), retry.WithBudget(budget),
			retry.WithBackoff(retry.FullJitter(5*time.Millisecond, 100*time.Millisecond)),
			retry.WithOnRetry(func(retry.Event) { p.retried.Add(1) })),
		bulkhead.New(cfg.concurrency, bulkhead.WithMaxWait(time.Minute)),
		timeout.New(cfg.timeout),
	)

	g, gctx := errgroup.WithContext(ctx)
	records := make(chan record)
	results := make(chan result, cfg.workers)
	g.Go(func() error {
		defer close(records)
		for _, r := range todo {
			select {
			case records <- r:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	var workers sync.WaitGroup
	for range cfg.workers {
		workers.Go(func() {
			for r := range records {
				res := process(gctx, policy, &cfg.service, r)
				if gctx.Err() != nil {
					continue // cut short: the next run does it again
				}
				results <- res
			}
		})
	}
	go func() {
		workers.Wait()
		close(results)
	}()
	var errs []string
	g.Go(func() error {
		var err error
		errs, err = write(st, results, p)
		return err
	})

	tick := time.NewTicker(p.every())
	defer tick.Stop()
	wait := make(chan error, 1)
	go func() { wait <- g.Wait() }()
	for {
		select {
		case <-tick.C:
			p.show(time.Now())
		case err := <-wait:
			p.finish(time.Now())
			if err == nil {
				err = ctx.Err()
			}
			return errs, err
		}
	}
}

// process enriches one record through the policy.
func process(ctx context.Context, policy resilience.Policy, service *enricher, r record) result {
	res := result{record: r}
	res.err = policy.Do(ctx, func(ctx context.Context) error {
		res.attempts++
		var err error
		res.score, err = service.enrich(ctx, r, res.attempts)
		return err
	})
	return res
}

// Results are written in batches of up to batchSize, or every
// batchEvery, whichever comes first.
const (
	batchSize  = 500
	batchEvery = 100 * time.Millisecond
)

// write writes the results as they come, a batch a transaction, until
// results is closed, and returns the errors of those dead-lettered. It
// writes with a ctx of its own, so that what was processed before an
// interrupt is kept.
func write(st *store, results <-chan result, p *progress) ([]string, error) {
	var (
		batch []result
		errs  []string
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.write(context.Background(), batch); err != nil {
			return err
		}
		var failed int64
		for _, r := range batch {
			if r.err != nil {
				failed++
				errs = append(errs, r.err.Error())
			}
		}
		p.failed.Add(failed)
		p.done.Add(int64(len(batch)))
		batch = batch[:0]
		return nil
	}
	tick := time.NewTicker(batchEvery)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-results:
			if !ok {
				return errs, flush()
			}
			batch = append(batch, r)
			if len(batch) < batchSize {
				continue
			}
		case <-tick.C:
		}
		if err := flush(); err != nil {
			for range results { // let the workers finish
			}
			return errs, err
		}
	}
}

// summarize prints what the run did and what the tables hold.
func summarize(ctx context.Context, st *store, rep *report, took time.Duration, w io.Writer) error {
	n := rep.imported + rep.failed
	fmt.Fprintf(w, "Imported %d and dead-lettered %d records in %v (%.0f records/s), with %d retries.\n",
		rep.imported, rep.failed, took.Round(time.Millisecond), float64(n)/max(took.Seconds(), 1e-9), rep.retried)
	if len(rep.byError) > 0 {
		fmt.Fprintln(w, "Dead letters of this run, by error:")
		errs := slices.SortedFunc(maps.Keys(rep.byError), func(a, b string) int {
			return cmp.Or(rep.byError[b]-rep.byError[a], cmp.Compare(a, b))
		})
		for _, e := range errs {
			fmt.Fprintf(w, "%8d  %s\n", rep.byError[e], e)
		}
	}
	for _, c := range []struct {
		table string
		n     *int
	}{{st.records, &rep.records}, {st.deadLetters, &rep.deadLetts}} {
		if err := st.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+c.table).Scan(c.n); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	fmt.Fprintf(w, "%s holds %d records and %d dead letters: %d of the %d records.\n",
		st.name, rep.records, rep.deadLetts, rep.records+rep.deadLetts, rep.total)
	return nil
}
