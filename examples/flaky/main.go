// Command flaky calls an unreliable HTTP backend with two clients, one bare
// and one through resilience policies, and prints a table of what each got.
//
// The backend runs in the same process, on loopback. It draws each answer at
// random, from a seeded generator (-seed): a share of the requests (-fail,
// 25%) gets a 500, a share (-unavailable, 3%) a 503 with a Retry-After header
// (-retry-after, 1s), a share (-stall, 5%) stalls for -stall-for (800ms)
// before its 200, and the rest get a 200 at once.
//
// Each client makes -n calls (300), -workers (16) at a time, each call under
// a deadline of its own (-deadline, 2s). The bare client sends one request a
// call. The resilient client makes each call with
//
//	policy := resilience.Chain(retry.New(...), circuitbreaker.New(...), timeout.New(...))
//	source, err := fallback.Do(ctx, policy, fromBackend, fromCache)
//
// which applies, outermost first:
//
//   - the fallback answers whatever still fails with a value of its own
//     (from the cache, as it were), which the table counts as a fallback;
//   - the retrier makes up to 3 attempts, waiting FullJitter(10ms, 200ms)
//     between them, or as long as a 503's Retry-After says when that ends
//     before the deadline, and draws its retries from its default budget: a
//     fifth of the calls made plus 10 a second, past which a failed call
//     goes to the fallback instead of being retried, so that the retries
//     cannot drown a struggling backend;
//   - the circuit breaker, with its default rule, opens when at least half
//     of the last 100 attempts failed (once it has seen 20), and then
//     refuses attempts for 200ms, doubling on each re-open up to 1s;
//   - the timeout ends each attempt after -attempt-timeout (100ms), so that a
//     stalled request is cut short and tried again.
//
// The table has a row per client: the calls it made; how many succeeded,
// failed, or were answered by the fallback; the HTTP requests it sent
// (attempts); and the 50th and 99th percentiles of a call's latency. The bare
// client fails every call that got a 500 or a 503 and waits out every stall;
// the resilient one fails none, sends more requests than it makes calls,
// within its budget, and cuts the stalls short.
//
//	go run ./examples/flaky -n 400 -fail 0.3
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/fallback"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// config describes one run.
type config struct {
	calls       int           // calls per client
	workers     int           // calls in flight at once
	fail        float64       // share of requests answered 500
	stall       float64       // share of requests that stall
	stallFor    time.Duration // how long a stalled request takes
	unavailable float64       // share of requests answered 503 with Retry-After
	retryAfter  time.Duration // the Retry-After of a 503
	deadline    time.Duration // the caller's deadline for one call
	attempt     time.Duration // the resilient client's timeout per attempt
	seed        uint64
}

func main() {
	cfg := config{}
	flag.IntVar(&cfg.calls, "n", 300, "calls per client")
	flag.IntVar(&cfg.workers, "workers", 16, "calls in flight at once")
	flag.Float64Var(&cfg.fail, "fail", 0.25, "share of requests the backend fails with 500")
	flag.Float64Var(&cfg.stall, "stall", 0.05, "share of requests the backend stalls")
	flag.DurationVar(&cfg.stallFor, "stall-for", 800*time.Millisecond, "how long a stalled request takes")
	flag.Float64Var(&cfg.unavailable, "unavailable", 0.03, "share of requests answered 503 with Retry-After")
	flag.DurationVar(&cfg.retryAfter, "retry-after", time.Second, "the Retry-After of a 503, in whole seconds")
	flag.DurationVar(&cfg.deadline, "deadline", 2*time.Second, "the caller's deadline for one call")
	flag.DurationVar(&cfg.attempt, "attempt-timeout", 100*time.Millisecond, "the resilient client's timeout per attempt")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the backend's choices")
	flag.Parse()
	if _, err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flaky:", err)
		os.Exit(1)
	}
}

// result is what one client got.
type result struct {
	name                           string
	successes, failures, fallbacks int
	attempts                       int64 // HTTP requests sent
	latencies                      []time.Duration
}

func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// run starts the backend, runs both clients against it, and prints the
// table to out.
func run(ctx context.Context, cfg config, out io.Writer) ([]*result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: newBackend(cfg), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer func() {
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut) //nolint:errcheck // best effort at exit
	}()
	url := "http://" + ln.Addr().String() + "/"

	transport := &http.Transport{MaxIdleConnsPerHost: cfg.workers}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	bare := &result{name: "bare"}
	bare.measure(ctx, cfg, func(ctx context.Context) (bool, error) {
		atomic.AddInt64(&bare.attempts, 1)
		return false, get(ctx, client, url)
	})

	resilient := &result{name: "resilient"}
	policy := resilience.Chain(
		retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.FullJitter(10*time.Millisecond, 200*time.Millisecond))),
		circuitbreaker.New(circuitbreaker.WithName("backend"), circuitbreaker.WithBreakDuration(200*time.Millisecond, time.Second)),
		timeout.New(cfg.attempt),
	)
	fromBackend := func(ctx context.Context) (string, error) {
		atomic.AddInt64(&resilient.attempts, 1)
		return "backend", get(ctx, client, url)
	}
	fromCache := func(context.Context, error) (string, error) { return "cache", nil }
	resilient.measure(ctx, cfg, func(ctx context.Context) (bool, error) {
		source, err := fallback.Do(ctx, policy, fromBackend, fromCache)
		return source == "cache", err
	})

	results := []*result{bare, resilient}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "client\tcalls\tsuccesses\tfailures\tfallbacks\tattempts\tp50\tp99\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t\n", r.name, cfg.calls, r.successes, r.failures, r.fallbacks,
			r.attempts, r.percentile(0.50).Round(100*time.Microsecond), r.percentile(0.99).Round(100*time.Microsecond))
	}
	return results, tw.Flush()
}

// measure makes cfg.calls calls of call, cfg.workers at a time, each under
// the caller's deadline, and records their outcomes and latencies.
func (r *result) measure(ctx context.Context, cfg config, call func(context.Context) (fallback bool, err error)) {
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range cfg.workers {
		wg.Go(func() {
			for next.Add(1) <= int64(cfg.calls) {
				cctx, cancel := context.WithTimeout(ctx, cfg.deadline)
				start := time.Now()
				usedFallback, err := call(cctx)
				took := time.Since(start)
				cancel()
				mu.Lock()
				r.latencies = append(r.latencies, took)
				switch {
				case err != nil:
					r.failures++
				case usedFallback:
					r.fallbacks++
				default:
					r.successes++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// statusError is an HTTP response other than 200.
type statusError struct{ code int }

func (e *statusError) Error() string { return "backend: " + http.StatusText(e.code) }

// retryAfterError is an HTTP response with a Retry-After header. Its
// RetryAfter method is what resilience.RetryAfter finds: the retrier waits
// that long, and does not retry at all when the wait would pass the
// caller's deadline.
type retryAfterError struct {
	statusError
	after time.Duration
}

func (e *retryAfterError) RetryAfter() time.Duration { return e.after }

// get makes one request; a status other than 200 is an error.
func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained for the connection's reuse
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		return &retryAfterError{statusError{resp.StatusCode}, time.Duration(secs) * time.Second}
	}
	return &statusError{resp.StatusCode}
}

// newBackend returns the flaky handler. Its choices come from a seeded
// generator, so a run with the same seed sees the same mix.
func newBackend(cfg config) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9E3779B97F4A7C15))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		x := rng.Float64()
		mu.Unlock()
		switch {
		case x < cfg.fail:
			http.Error(w, "internal error", http.StatusInternalServerError)
		case x < cfg.fail+cfg.unavailable:
			w.Header().Set("Retry-After", strconv.Itoa(int(cfg.retryAfter/time.Second)))
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		case x < cfg.fail+cfg.unavailable+cfg.stall:
			t := time.NewTimer(cfg.stallFor)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			fmt.Fprintln(w, "ok, eventually")
		default:
			fmt.Fprintln(w, "ok")
		}
	})
}
