// Command gateway runs a small API gateway twice, side by side, in front of
// backends that run in the same process, and drives both with the same
// clients: a bare httputil.ReverseProxy, and one protected by package
// resiliencehttp. Every second it prints what each gateway answered, and at
// the end what each client got.
//
// # The backends
//
// Each gateway has two backends of its own, on loopback ports, which answer
// GET /users/<id> and GET /orders/<id> with a small JSON document in 1-3ms.
// The users backend stays healthy. The orders backend goes through a wave
// every 5 seconds, counted from the start of the run: from 1s to 3s it
// fails, 40% of its requests taking 300-600ms (longer than the protected
// gateway's attempt timeout), 30% answered 503 and 15% 500; until 4s it
// recovers, answering in 20-80ms with 10% of 503s; the rest of the time it
// answers 1% of its requests with a 503. Its draws, and the clients', come
// from generators seeded by -seed: a seed fixes the draws, not the timing,
// so the numbers vary a little from run to run.
//
// # The gateways
//
// Both route /users/ and /orders/ to their backends through an
// httputil.ReverseProxy each, over a transport like http.DefaultTransport.
// The bare gateway passes every answer on as it comes, a 5xx included, and
// waits as long as the backend takes. The protected gateway puts
//
//	resiliencehttp.NewTransport(base, resiliencehttp.WithFailOn500(),
//		resiliencehttp.WithPolicy(resilience.Chain(
//			retry.New(...),              // 3 attempts of a GET, 10-50ms apart
//			resiliencehttp.PerHost(...), // a circuit breaker per backend
//			timeout.New(100*time.Millisecond),
//		)))
//
// under its proxies, and
//
//	resiliencehttp.Handler(mux,
//		resiliencehttp.WithKey(clientKey),                // the X-Api-Key header
//		resiliencehttp.WithRateLimit(40, 20),             // per client: 40/s, bursts of 20
//		resiliencehttp.WithLoadShedding(bulkhead.New(6)), // 6 requests at once
//		resiliencehttp.WithRequestTimeout(250*time.Millisecond),
//		resiliencehttp.WithGateway(),
//		resiliencehttp.WithFallback(refused),
//	)
//
// in front of them. A breaker opens when half of at least 10 attempts in 2
// seconds failed, for 500ms, doubled up to 1s while its probes fail; the
// retry does not wait for the end of a break. A GET that its backend did not
// answer gets the last good body of its path, with X-Gateway-Fallback:
// cached and an Age, or, when there is none, a default JSON document with
// X-Gateway-Fallback: default; X-Gateway-Fallback-Cause says why: the
// breaker refused the request (the proxy's ErrorHandler gets an error that
// matches resilience.ErrRejected, which would otherwise be a 502), its
// attempts failed, the backend answered a 5xx (which ModifyResponse turns
// into an error), or the request timed out (the Handler's fallback). A
// rate-limited client gets a 429, and a shed request a 503 with
// X-Gateway-Overloaded: true, both with Retry-After.
//
// # The clients
//
// alice, bob and carol send 20 GETs a second each, within their limit;
// greedy sends 150. Each sends at its rate whatever the answers, for
// -duration (10s), to paths drawn from /users/1-8 and /orders/1-8, and
// sends each request to both gateways at once.
//
// # The tables
//
// A row of the first table counts the answers each gateway gave in one
// second (the last row also those to the requests still pending at the
// end); a row of the second, those each client got in all:
//
//   - admitted: answered by the backend;
//   - limited: refused with a 429, the client being over its rate limit;
//   - shed: refused with a 503, the gateway serving too many requests;
//   - fallback: answered by the fallback;
//   - 5xx: any other 5xx, which reached the client;
//   - p50, p99: percentiles of the time the gateway took to answer.
//
// Below them: the requests that reached the orders backends, retries
// included; the times the protected gateway's breakers opened; the causes
// of its fallbacks.
//
// During a wave, the bare gateway passes each 503 and 500 on to its
// clients, and makes them wait for each slow request, up to 600ms. The
// protected one passes none on: it retries, and answers what still fails
// from the cache. At the onset of a wave, while the slow requests pile up,
// its load shedder refuses a few requests, to either backend; once the
// breaker opens, the fallback answers at once, and the orders backend is
// spared the requests: it gets far fewer from the protected gateway than
// from the bare one. Its greedy client gets 40 answers a second and 429s
// for the rest, while the bare gateway serves it all 150; the protected
// gateway's p50 over all clients is that of those 429s, which take
// microseconds.
//
//	$ go run ./examples/gateway
//	Clients alice 20/s, bob 20/s, carol 20/s and greedy 150/s send GETs for 10s, each to both gateways.
//	Each gateway has backends of its own; orders is slow and failing from 1s to 3s of every 5s, and recovers by 4s.
//
//	          | bare: ReverseProxy alone                            | protected: resiliencehttp Handler and Transport
//	   second | admitted limited  shed fallback   5xx    p50    p99 | admitted limited  shed fallback   5xx    p50    p99
//	        1 |      206       0     0        0     0  2.8ms  6.2ms |      116      91     0        0     0  1.9ms  6.3ms
//	        2 |      145       0     0        0    46  2.5ms  548ms |       58     109    21       18     0 0.01ms  251ms
//	        3 |      158       0     0        0    48  2.7ms  565ms |       53     110     0       50     0 0.02ms  105ms
//	        4 |      222       0     0        0     8  4.3ms  581ms |       79     110     1       19     0 0.02ms   72ms
//	        5 |      210       0     0        0     3  2.9ms   53ms |      101     110     0        0     0 0.07ms  4.9ms
//	        6 |      203       0     0        0     1  2.8ms   14ms |      100     104     0        0     0 0.06ms   13ms
//	        7 |      142       0     0        0    43  2.7ms  548ms |       62     110    10       28     0 0.02ms  215ms
//	        8 |      166       0     0        0    51  3.0ms  581ms |       50     110     0       50     0 0.02ms  8.3ms
//	        9 |      203       0     0        0     8  4.2ms  512ms |       58      96     0       42     0 0.02ms   53ms
//	       10 |      188       0     0        0     3  3.0ms   53ms |       80      85     3       20     0 0.03ms   14ms
//
//	          | bare: ReverseProxy alone                            | protected: resiliencehttp Handler and Transport
//	   client | admitted limited  shed fallback   5xx    p50    p99 | admitted limited  shed fallback   5xx    p50    p99
//	    alice |      182       0     0        0    18  3.1ms  512ms |      157       0     7       36     0  3.0ms  210ms
//	      bob |      181       0     0        0    19  3.2ms  581ms |      145       0     9       46     0  2.8ms  215ms
//	    carol |      179       0     0        0    21  3.0ms  487ms |      145       0    12       43     0  2.7ms  111ms
//	   greedy |     1301       0     0        0   153  2.8ms  565ms |      310    1035     7      102     0 0.02ms  113ms
//	      all |     1843       0     0        0   211  3.0ms  565ms |      757    1035    35      227     0 0.02ms  125ms
//
//	Requests that reached an orders backend, retries included: 1025 from the bare gateway, 416 from the protected gateway.
//	Times the protected gateway's breakers opened: orders 5, users 0.
//	Its fallbacks, by cause: circuit open 191, upstream 503 12, upstream 500 10, attempt timeout 9, request timeout 5.
//
// # Serving
//
// With -listen, the program serves the protected gateway, and its
// backends, on that address until interrupted, and prints a row for each
// second that had traffic, then the summary. The X-Api-Key header names the
// client; without it, the client is its address.
//
//	go run ./examples/gateway -listen :8080
//	curl -i -H 'X-Api-Key: alice' localhost:8080/orders/1
//	wrk -c 20 -d 10s -H 'X-Api-Key: alice' http://localhost:8080/orders/1
//
// # The dashboard
//
// With -http, in either mode, the program also serves the page of package
// dashboard at /resilience/ on that address while it runs, and prints its
// URL above the tables: the protected gateway's two breakers, users and
// orders, its load shedder, gateway, and the events of the breakers, the
// retrier and the load shedder, which a dashboard.Events keeps.
//
//	go run ./examples/gateway -duration 60s -http localhost:8081
//	open http://localhost:8081/resilience/
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/resilience-go/resilience/dashboard"
)

// config describes one run.
type config struct {
	duration time.Duration // how long the clients send requests
	seed     uint64        // of the clients' and the backends' choices
	listen   string        // serve the protected gateway here instead
	http     string        // serve a dashboard of the protected gateway here
}

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
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// usageError is an error in the command line.
type usageError struct{ error }

// run parses args and runs: both gateways under the clients' load for the
// duration, or the protected one on the -listen address until ctx is done.
// It prints the tables to stdout, and to stderr what the servers log.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long the clients send requests")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the clients' and the backends' choices")
	fs.StringVar(&cfg.listen, "listen", "", "serve the protected gateway on this address, such as :8080, until interrupted")
	fs.StringVar(&cfg.http, "http", "", "serve a dashboard of the protected gateway at /resilience/ on this address, such as :8081")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gateway [-duration d] [-seed n] [-listen addr] [-http addr]")
		fmt.Fprintln(fs.Output(), "Runs a bare and a protected API gateway under load and prints what each answered; see go doc.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if cfg.duration <= 0 {
		fmt.Fprintf(fs.Output(), "-duration %v: want a positive duration\n", cfg.duration)
		return usageError{fmt.Errorf("-duration %v: want a positive duration", cfg.duration)}
	}

	l := &lab{errLog: log.New(stderr, "gateway: ", 0)}
	defer l.close()
	start := time.Now() // of the orders backends' waves
	if cfg.listen != "" {
		return listen(ctx, cfg, l, start, stdout)
	}
	return drive(ctx, cfg, l, start, stdout)
}

// drive runs the clients against both gateways for cfg.duration and
// prints a row a second, then the summary.
func drive(ctx context.Context, cfg config, l *lab, start time.Time, stdout io.Writer) error {
	bare, err := l.site("bare", false, start, cfg.seed, "127.0.0.1:0")
	if err != nil {
		return err
	}
	protected, err := l.site("protected", true, start, cfg.seed, "127.0.0.1:0")
	if err != nil {
		return err
	}
	if cfg.http != "" {
		stop, err := serveDashboard(cfg.http, protected.gateway, stdout)
		if err != nil {
			return err
		}
		defer stop()
	}

	fmt.Fprintf(stdout, "%s for %v, each to both gateways.\n", describeClients(), cfg.duration)
	fmt.Fprintf(stdout, "Each gateway has backends of its own; orders is slow and failing from %v to %v of every %v, "+
		"and recovers by %v.\n\n", waveStart, waveEnd, wavePeriod, recovered)
	t := &table{out: stdout, sites: []*site{bare, protected}}
	t.header("second")

	hc := &http.Client{Transport: l.transport(), Timeout: 5 * time.Second}
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.duration)
	defer stopLoad()
	var unanswered int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		unanswered = load(loadCtx, ctx, hc, []string{bare.url, protected.url}, cfg.seed)
	}()
	rows := int((cfg.duration + time.Second - 1) / time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	second := 0
	for waiting := true; waiting; {
		select {
		case <-tick.C:
			if second+1 < rows {
				second++
				t.row(second)
			}
		case <-done:
			waiting = false
		}
	}
	second++
	t.row(second) // with the answers to the requests still pending at the end
	fmt.Fprintln(stdout)
	t.summary()
	if unanswered > 0 {
		fmt.Fprintf(stdout, "Requests that got no answer: %d.\n", unanswered)
	}
	return nil
}

// listen serves the protected gateway on cfg.listen until ctx is done, and
// prints a row for each second that had traffic, then the summary.
func listen(ctx context.Context, cfg config, l *lab, start time.Time, stdout io.Writer) error {
	protected, err := l.site("protected", true, start, cfg.seed, cfg.listen)
	if err != nil {
		return err
	}
	if cfg.http != "" {
		stop, err := serveDashboard(cfg.http, protected.gateway, stdout)
		if err != nil {
			return err
		}
		defer stop()
	}

	fmt.Fprintf(stdout, "The protected gateway listens on %s: GET /users/<id> and /orders/<id>; X-Api-Key names a client.\n",
		strings.TrimPrefix(protected.url, "http://"))
	fmt.Fprintf(stdout, "The orders backend is slow and failing from %v to %v of every %v, and recovers by %v. "+
		"Interrupt to stop.\n\n", waveStart, waveEnd, wavePeriod, recovered)
	t := &table{out: stdout, sites: []*site{protected}}
	t.header("second")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	second := 0
	for serving := true; serving; {
		select {
		case <-tick.C:
			second++
			t.rowIfAny(second)
		case <-ctx.Done():
			serving = false
		}
	}
	l.close() // waits for the requests in flight
	t.rowIfAny(second + 1)
	fmt.Fprintln(stdout)
	t.summary()
	return nil
}

// serveDashboard serves a dashboard of g's breakers, load shedder and
// events at /resilience/ on addr, prints its URL to out, and returns the
// func that stops it.
func serveDashboard(addr string, g *protected, out io.Writer) (stop func(), err error) {
	opts := []dashboard.Option{dashboard.WithEvents(g.events), dashboard.WithBulkhead("gateway", g.shedder)}
	for _, b := range g.breakers {
		opts = append(opts, dashboard.WithBreaker(b))
	}
	d := dashboard.New(opts...)
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

// describeClients says who sends what.
func describeClients() string {
	var b strings.Builder
	b.WriteString("Clients")
	for i, c := range clients {
		switch {
		case i == 0:
		case i == len(clients)-1:
			b.WriteString(" and")
		default:
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %v/s", c.name, c.rate)
	}
	b.WriteString(" send GETs")
	return b.String()
}

// A site is a gateway and the two backends behind it.
type site struct {
	name    string
	url     string // of the gateway
	meter   *meter
	orders  *backend
	gateway *protected // nil for the bare gateway
}

// lab holds the servers and transports of a run, to stop them at its end.
type lab struct {
	errLog *log.Logger

	servers    []*http.Server
	serving    sync.WaitGroup
	transports []*http.Transport
	closed     sync.Once
}

// site starts a users and an orders backend on loopback ports, and a
// gateway in front of them on addr, measured, bare or protected.
func (l *lab) site(name string, protect bool, start time.Time, seed uint64, addr string) (*site, error) {
	users, orders := newBackend("users", false, start, seed), newBackend("orders", true, start, seed)
	usersURL, err := l.serve("127.0.0.1:0", users)
	if err != nil {
		return nil, err
	}
	ordersURL, err := l.serve("127.0.0.1:0", orders)
	if err != nil {
		return nil, err
	}
	s := &site{name: name, meter: newMeter(), orders: orders}
	var gateway http.Handler
	if protect {
		s.gateway = newProtected(usersURL, ordersURL, l.transport(), l.errLog)
		gateway = s.gateway
	} else {
		gateway = newBare(usersURL, ordersURL, l.transport())
	}
	u, err := l.serve(addr, s.meter.wrap(gateway))
	if err != nil {
		return nil, err
	}
	s.url = u.String()
	return s, nil
}

// serve serves h on addr and returns its URL.
func (l *lab) serve(addr string, h http.Handler) (*url.URL, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: l.errLog}
	l.servers = append(l.servers, srv)
	l.serving.Go(func() { srv.Serve(ln) }) //nolint:errcheck // ends with Shutdown
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, nil
}

// transport returns a new transport like http.DefaultTransport, but with
// room for 100 idle connections to each host rather than 2.
func (l *lab) transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	l.transports = append(l.transports, t)
	return t
}

// close stops the servers, gateways first, each once the requests it is
// serving are answered. Before each, it closes the transports' idle
// connections: Shutdown waits up to 5 seconds for a connection that has
// not carried a request yet, such as one a transport dialed for a request
// that another connection then took.
func (l *lab) close() {
	l.closed.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := len(l.servers) - 1; i >= 0; i-- {
			for _, t := range l.transports {
				t.CloseIdleConnections()
			}
			l.servers[i].Shutdown(ctx) //nolint:errcheck // best effort at exit
		}
		l.serving.Wait()
		for _, t := range l.transports {
			t.CloseIdleConnections()
		}
	})
}

// table prints rows of what each site's gateway answered, side by side.
type table struct {
	out   io.Writer
	sites []*site
}

// The widths of a table's columns: the first, and a site's.
const (
	labelWidth = 9
	sideWidth  = 51
	sideFormat = " | %8v %7v %5v %8v %5v %6v %6v"
)

func (t *table) header(label string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%*s", labelWidth, "")
	for _, s := range t.sites {
		title := s.name + ": ReverseProxy alone"
		if s.gateway != nil {
			title = s.name + ": resiliencehttp Handler and Transport"
		}
		fmt.Fprintf(&b, " | %-*s", sideWidth, title)
	}
	t.line(&b)
	fmt.Fprintf(&b, "%*s", labelWidth, label)
	for range t.sites {
		fmt.Fprintf(&b, sideFormat, "admitted", "limited", "shed", "fallback", "5xx", "p50", "p99")
	}
	t.line(&b)
}

// row prints the second that ended, for each site.
func (t *table) row(second int) {
	row := make([]stats, len(t.sites))
	for i, s := range t.sites {
		row[i] = s.meter.takeSecond()
	}
	t.print(fmt.Sprint(second), row)
}

// rowIfAny prints the second that ended, if any site answered requests in
// it.
func (t *table) rowIfAny(second int) {
	row := make([]stats, len(t.sites))
	answered := false
	for i, s := range t.sites {
		row[i] = s.meter.takeSecond()
		answered = answered || row[i].latency.n > 0
	}
	if answered {
		t.print(fmt.Sprint(second), row)
	}
}

// summary prints a row per client and one for all of them, then what the
// protected gateway did.
func (t *table) summary() {
	t.header("client")
	perClient := make([]map[string]stats, len(t.sites))
	all := make([]stats, len(t.sites))
	var names []string
	for i, s := range t.sites {
		perClient[i], all[i] = s.meter.summary()
		for name := range perClient[i] {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	for _, name := range names {
		row := make([]stats, len(t.sites))
		for i := range t.sites {
			row[i] = perClient[i][name]
		}
		t.print(name, row)
	}
	t.print("all", all)
	fmt.Fprintln(t.out)

	var reached []string
	for _, s := range t.sites {
		reached = append(reached, fmt.Sprintf("%d from the %s gateway", s.orders.requests.Load(), s.name))
	}
	fmt.Fprintf(t.out, "Requests that reached an orders backend, retries included: %s.\n", strings.Join(reached, ", "))
	for _, s := range t.sites {
		if s.gateway == nil {
			continue
		}
		fmt.Fprintf(t.out, "Times the %s gateway's breakers opened: orders %d, users %d.\n",
			s.name, s.gateway.timesOpened("orders"), s.gateway.timesOpened("users"))
		causes := s.meter.fallbackCauses()
		if len(causes) == 0 {
			continue
		}
		keys := slices.Collect(maps.Keys(causes))
		slices.SortFunc(keys, func(a, b string) int { // most frequent first
			return cmp.Or(cmp.Compare(causes[b], causes[a]), strings.Compare(a, b))
		})
		parts := make([]string, len(keys))
		for i, c := range keys {
			parts[i] = fmt.Sprintf("%s %d", c, causes[c])
		}
		fmt.Fprintf(t.out, "Its fallbacks, by cause: %s.\n", strings.Join(parts, ", "))
	}
}

func (t *table) print(label string, row []stats) {
	var b strings.Builder
	if len(label) > labelWidth {
		label = label[:labelWidth-1] + "~"
	}
	fmt.Fprintf(&b, "%*s", labelWidth, label)
	for _, s := range row {
		fmt.Fprintf(&b, sideFormat, s.n[admitted], s.n[limited], s.n[shed], s.n[fellBack], s.n[failed],
			latency(s.latency.percentile(0.50)), latency(s.latency.percentile(0.99)))
	}
	t.line(&b)
}

// line prints b without trailing blanks, and resets it.
func (t *table) line(b *strings.Builder) {
	fmt.Fprintln(t.out, strings.TrimRight(b.String(), " "))
	b.Reset()
}

// latency formats d in 6 columns at most: "0.35ms", "2.1ms", "301ms", "1.2s";
// "-" for none.
func latency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%ds", int64(d.Seconds()))
}
