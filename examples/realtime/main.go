// Command realtime runs a price ticker that fans quotes out to subscribers
// over NATS core pub/sub or MQTT, where each subscriber enriches each quote
// with a call to a downstream service, guarded by a circuit breaker, with a
// fallback that serves the last known enrichment, marked stale. The
// downstream service hangs for a while in the middle of the run; the
// breaker opens, so that the subscribers shed the calls at once instead of
// backing up the stream, probes the service while it is half-open, and
// closes once it answers again. Every second the program prints what the
// subscribers received and served, how long a quote took from the ticker
// to a subscriber's answer, and the breaker's states.
//
// # The ticker
//
// The ticker publishes -rate (200) quotes a second, round 8 symbols, each
// as JSON on a topic of its own: <topic>.<symbol> on NATS, <topic>/<symbol>
// on MQTT, where <topic> is -topic, by default "ticker." and 8 random hex
// digits, new for each run. -subscribers (3) subscribers listen on
// <topic>.> (<topic>/# on MQTT), each on a connection of its own, and each
// gets every quote. Both brokers deliver at most once (MQTT at QoS 0).
//
// # The subscribers
//
// A subscriber serves the quotes it gets one at a time, in order. For each
// it calls the enrichment service, for the symbol's name and previous
// close, through
//
//	fallback.Do(ctx, resilience.Chain(
//		breaker,               // shared by the subscribers
//		timeout.New(50*time.Millisecond),
//	), lookup, lastKnown)
//
// The breaker opens after 5 failures in a row, or when half of at least 10
// calls in the last second failed, for 250ms, doubled up to 1s while its
// probes fail; half-open, it lets 3 probes through and closes when they
// succeed. The fallback answers with the last enrichment the subscriber got
// for the symbol, and the subscriber serves the quote with it, marked stale;
// when it has none yet, it serves the quote raw, without enrichment.
//
// The enrichment service answers in 0.5-1.5ms, except from a third of
// -duration to two thirds (rounded to 100ms), when it hangs: each call waits
// for its 50ms timeout. Without the breaker a subscriber would serve 20
// quotes a second while the ticker sends it 200. With it, once the breaker
// opens, the calls are refused at once and answered from the fallback in
// microseconds.
//
// # The table
//
// A row counts what happened in one second (the last row also what the
// subscribers served after the ticker stopped, until they had served every
// quote they got):
//
//   - enrichment: down when the service hung for all or part of the second;
//   - in: the quotes the subscribers got from the broker;
//   - enriched, stale, raw: those they served, by how;
//   - p50, p99: percentiles of the time from publishing a quote to serving it;
//   - breaker: the state the breaker was in, and those it went through.
//
// Below it: the quotes published and served in all, the causes of the stale
// answers, and how often the breaker changed state.
//
//	$ go run . -embedded
//	Broker: nats://127.0.0.1:37849 (embedded).
//	Ticker: 200 quotes/s of 8 symbols on ticker.1afef979.<symbol>, for 12s.
//	3 subscribers on ticker.1afef979.> enrich each quote through a circuit breaker and a 50ms timeout,
//	and serve the last known enrichment, marked stale, when the breaker refuses or the call fails.
//	The enrichment service hangs from 4s to 8s.
//
//	second  enrichment     in enriched  stale  raw     p50     p99  breaker
//	     1  up            597      597      0    0   1.4ms   5.7ms  closed
//	     2  up            600      600      0    0   1.3ms   2.8ms  closed
//	     3  up            600      600      0    0   1.3ms   3.6ms  closed
//	     4  up            600      600      0    0   1.3ms   2.4ms  closed
//	     5  down          600        0    600    0  0.16ms   113ms  closed>open>half-open>open>half-open>open
//	     6  down          600        0    600    0  0.14ms    41ms  open>half-open>open
//	     7  down          600        0    600    0  0.14ms    42ms  open>half-open>open
//	     8  down          603        0    603    0  0.20ms    41ms  open>half-open>open
//	     9  up            597      201    396    0  0.23ms   5.0ms  open>half-open>closed
//	    10  up            603      600      0    0   1.3ms   5.5ms  closed
//	    11  up            597      599      0    0   1.3ms   5.5ms  closed
//	    12  up            603      604      0    0   1.5ms    17ms  closed
//
//	Published 2400 quotes to 3 subscribers; they got 7200 of 7200 and served 7200: 4401 enriched, 2799 stale, 0 raw.
//	From publishing to serving: p50 1.3ms, p99 46ms.
//	Stale answers, by cause: breaker open 2777, timeout 22, error 0.
//	The breaker opened 6 times, went half-open 6 times and closed 1 time; the enrichment service got 4423 calls.
//
// # The broker
//
// -broker names it: nats://host:port (by default RESILIENCE_NATS_URL, or
// nats://127.0.0.1:4222) or mqtt://host:port, such as a Mosquitto. When
// none answers there, the program says which address it tried and how to
// start one. -embedded runs a NATS server in the program instead, on a free
// loopback port, so that it runs anywhere.
//
//	go run . -embedded
//	go run . -broker nats://127.0.0.1:4222
//	go run . -broker mqtt://127.0.0.1:1883
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/timeout"
)

// config describes one run.
type config struct {
	broker      string        // URL of the broker
	embedded    bool          // run a NATS server in the program instead
	duration    time.Duration // how long the ticker publishes
	rate        int           // quotes a second
	subscribers int
	topic       string // prefix of the quotes' topics
}

// natsURLVar names the environment variable of the default -broker.
const natsURLVar = "RESILIENCE_NATS_URL"

// drainTimeout bounds the wait, once the ticker stopped, for the
// subscribers to get and serve every quote.
const drainTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		os.Exit(2) // the flag package has said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "realtime:", err)
		os.Exit(1)
	}
}

// usageError is an error in the command line.
type usageError struct{ error }

// topicRE matches a topic prefix that NATS and MQTT both take as it is.
var topicRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// parse reads the command line into a config; its errors are usageErrors,
// which it has printed, with the usage, to stderr.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("realtime", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	defBroker := "nats://127.0.0.1:4222"
	if u := os.Getenv(natsURLVar); u != "" {
		defBroker = u
	}
	fs.StringVar(&cfg.broker, "broker", defBroker,
		"the broker: nats://host:port or mqtt://host:port (default from "+natsURLVar+" when set)")
	fs.BoolVar(&cfg.embedded, "embedded", false, "run a NATS server in this process instead of -broker")
	fs.DurationVar(&cfg.duration, "duration", 12*time.Second, "how long the ticker publishes")
	fs.IntVar(&cfg.rate, "rate", 200, "quotes a second, 1 to 100000")
	fs.IntVar(&cfg.subscribers, "subscribers", 3, "subscribers, 1 to 64")
	fs.StringVar(&cfg.topic, "topic", "", "prefix of the quotes' topics, such as ticker.test (default ticker. and 8 random hex digits)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: realtime [-broker url | -embedded] [-duration d] [-rate n] [-subscribers n] [-topic prefix]")
		fmt.Fprintln(fs.Output(), "Fans quotes out to subscribers that enrich them through a circuit breaker; see go doc.")
		fs.PrintDefaults()
	}
	bad := func(format string, a ...any) (config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintln(fs.Output(), err)
		fs.Usage()
		return config{}, usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, usageError{err}
	}
	brokerSet := false
	fs.Visit(func(f *flag.Flag) { brokerSet = brokerSet || f.Name == "broker" })
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case brokerSet && cfg.embedded:
		return bad("-broker %s and -embedded: want one of them", cfg.broker)
	case cfg.duration < time.Second:
		return bad("-duration %v: want at least 1s", cfg.duration)
	case cfg.rate < 1 || cfg.rate > 100_000:
		return bad("-rate %d: want 1 to 100000 quotes a second", cfg.rate)
	case cfg.subscribers < 1 || cfg.subscribers > 64:
		return bad("-subscribers %d: want 1 to 64", cfg.subscribers)
	case cfg.topic != "" && !topicRE.MatchString(cfg.topic):
		return bad("-topic %q: want words of letters, digits, _ and -, joined by dots", cfg.topic)
	}
	if cfg.topic == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.topic = "ticker." + hex.EncodeToString(b[:])
	}
	return cfg, nil
}

// run parses args, connects to the broker, or starts one, and runs the
// ticker and its subscribers for the duration, or until ctx is done. It
// prints the table and the summary to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	where := cfg.broker
	if cfg.embedded {
		srv, err := startEmbedded()
		if err != nil {
			return err
		}
		defer srv.stop()
		cfg.broker = srv.url()
		where = cfg.broker + " (embedded)"
	}
	b, err := dial(cfg.broker, cfg.topic)
	if err != nil {
		return err
	}
	defer b.close()

	m := newMeter()
	breaker := newBreaker(m)
	policy := resilience.Chain(breaker, timeout.New(callTimeout))
	down, up := (cfg.duration / 3).Round(100*time.Millisecond), (2 * cfg.duration / 3).Round(100*time.Millisecond)
	svc := newEnrichment(time.Now(), down, up) // its clock starts with the subscribers, just before the ticker
	done := make(chan struct{})
	var workers sync.WaitGroup
	defer workers.Wait()
	defer close(done)
	for range cfg.subscribers {
		s := newSubscriber(svc, policy, m)
		unsubscribe, err := b.subscribe(s.receive)
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		defer unsubscribe()
		// Once the ticker stops, the subscribers serve what they got, even
		// when interrupted.
		workers.Go(func() { s.work(context.WithoutCancel(ctx), done) })
	}

	one, all := b.topics()
	fmt.Fprintf(stdout, "Broker: %s.\n", where)
	fmt.Fprintf(stdout, "Ticker: %d quotes/s of %d symbols on %s, for %v.\n", cfg.rate, len(listings), one, cfg.duration)
	fmt.Fprintf(stdout, "%d subscribers on %s enrich each quote through a circuit breaker and a %v timeout,\n",
		cfg.subscribers, all, callTimeout)
	fmt.Fprintln(stdout, "and serve the last known enrichment, marked stale, when the breaker refuses or the call fails.")
	fmt.Fprintf(stdout, "The enrichment service hangs from %v to %v.\n\n", down, up)
	t := &table{out: stdout, svc: svc, m: m}
	t.header()

	var (
		published int64
		pubErr    error
	)
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		pubCtx, cancel := context.WithTimeout(ctx, cfg.duration)
		defer cancel()
		published, pubErr = publishQuotes(pubCtx, b, cfg.rate)
		if pubErr == nil {
			pubErr = b.flush()
		}
		drain(m, published*int64(cfg.subscribers))
	}()
	rows := int((cfg.duration + time.Second - 1) / time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-tick.C:
			if t.second+1 < rows {
				t.row()
			}
		case <-ticking:
			waiting = false
		}
	}
	t.row() // with what was served after the ticker stopped
	fmt.Fprintln(stdout)
	rep := m.report()
	rep.published, rep.subscribers, rep.calls = published, cfg.subscribers, svc.calls.Load()
	summary(stdout, rep)
	return pubErr
}

// drain waits until the subscribers got want quotes and served all they
// got, or for drainTimeout.
func drain(m *meter, want int64) {
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		if in, answered := m.counts(); in >= want && answered == in {
			return
		}
		select {
		case <-deadline.C:
			return
		case <-poll.C:
		}
	}
}

// table prints a row a second.
type table struct {
	out    io.Writer
	svc    *enrichment
	m      *meter
	second int // rows printed
}

func (t *table) header() {
	fmt.Fprintf(t.out, "%6s  %-10s %6s %8s %6s %4s %7s %7s  %s\n",
		"second", "enrichment", "in", "enriched", "stale", "raw", "p50", "p99", "breaker")
}

func (t *table) row() {
	t.second++
	s, states := t.m.takeSecond()
	from, to := time.Duration(t.second-1)*time.Second, time.Duration(t.second)*time.Second
	service := "up"
	if from < t.svc.up && to > t.svc.down {
		service = "down"
	}
	fmt.Fprintf(t.out, "%6d  %-10s %6d %8d %6d %4d %7s %7s  %s\n", t.second, service, s.in,
		s.served[enriched], s.served[stale], s.served[raw],
		formatLatency(percentile(s.latency, 0.5)), formatLatency(percentile(s.latency, 0.99)), formatStates(states))
}

// summary prints the run's totals.
func summary(out io.Writer, r report) {
	want := r.published * int64(r.subscribers)
	fmt.Fprintf(out, "Published %d quotes to %d subscribers; they got %d of %d and served %d: "+
		"%d enriched, %d stale, %d raw.\n", r.published, r.subscribers, r.total.in, want, r.total.answered(),
		r.total.served[enriched], r.total.served[stale], r.total.served[raw])
	if lost := want - r.total.in; lost > 0 {
		fmt.Fprintf(out, "Quotes the broker did not deliver: %d.\n", lost)
	}
	if left := r.total.in - r.total.answered() - r.bad; left > 0 {
		fmt.Fprintf(out, "Quotes the subscribers got but had not served %v after the ticker stopped: %d.\n", drainTimeout, left)
	}
	if r.bad > 0 {
		fmt.Fprintf(out, "Quotes that were not JSON: %d.\n", r.bad)
	}
	fmt.Fprintf(out, "From publishing to serving: p50 %s, p99 %s.\n",
		formatLatency(percentile(r.total.latency, 0.5)), formatLatency(percentile(r.total.latency, 0.99)))
	fmt.Fprintf(out, "Stale answers, by cause: breaker open %d, timeout %d, error %d.\n",
		r.causes["breaker open"], r.causes["timeout"], r.causes["error"])
	fmt.Fprintf(out, "The breaker opened %s, went half-open %s and closed %s; the enrichment service got %d calls.\n",
		times(r.changes[circuitbreaker.Open]), times(r.changes[circuitbreaker.HalfOpen]),
		times(r.changes[circuitbreaker.Closed]), r.calls)
}

// times writes "1 time" or "n times".
func times(n int64) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}

// formatLatency writes d in milliseconds, to two significant digits.
func formatLatency(d time.Duration) string {
	ms := d.Seconds() * 1000
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}
