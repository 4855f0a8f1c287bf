package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/fallback"
	"github.com/resilience-go/resilience/timeout"
)

// quote is what the ticker publishes, as JSON.
type quote struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
	Seq    uint64  `json:"seq"`
	Sent   int64   `json:"sent"` // when it was published, in Unix nanoseconds
}

// info is what the enrichment service knows of a symbol.
type info struct {
	Name      string
	PrevClose float64
}

// listings are the symbols on the ticker, and their reference data.
var listings = []struct {
	symbol string
	info
}{
	{"ACME", info{"Acme Corporation", 101.20}},
	{"GLOBX", info{"Globex", 48.75}},
	{"INITE", info{"Initech", 12.30}},
	{"UMBR", info{"Umbrella Holdings", 230.10}},
	{"HOOLI", info{"Hooli", 612.00}},
	{"STARK", info{"Stark Industries", 377.45}},
	{"WAYNE", info{"Wayne Enterprises", 154.90}},
	{"TYRL", info{"Tyrell", 88.05}},
}

// publishQuotes publishes rate quotes a second, round the symbols, each
// price a small random step from the last, until ctx is done, and returns
// how many it published.
func publishQuotes(ctx context.Context, b broker, rate int) (int64, error) {
	prices := make([]float64, len(listings))
	for i, l := range listings {
		prices[i] = l.PrevClose
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return sent, nil
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				i := int(sent) % len(listings)
				prices[i] = math.Round(prices[i]*(1+0.002*(rand.Float64()-0.5))*100) / 100
				data, err := json.Marshal(quote{Symbol: listings[i].symbol, Price: prices[i], Seq: uint64(sent + 1),
					Sent: time.Now().UnixNano()})
				if err == nil {
					err = b.publish(listings[i].symbol, data)
				}
				if err != nil {
					return sent, fmt.Errorf("publish: %w", err)
				}
			}
		}
	}
}

// enrichment is the downstream service the subscribers call: it answers
// in 0.5-1.5ms, except from down to up after start, when it hangs.
type enrichment struct {
	start    time.Time
	down, up time.Duration
	calls    atomic.Int64
	ref      map[string]info
}

func newEnrichment(start time.Time, down, up time.Duration) *enrichment {
	e := &enrichment{start: start, down: down, up: up, ref: make(map[string]info, len(listings))}
	for _, l := range listings {
		e.ref[l.symbol] = l.info
	}
	return e
}

// hanging reports whether the service hangs at t.
func (e *enrichment) hanging(t time.Time) bool {
	d := t.Sub(e.start)
	return d >= e.down && d < e.up
}

// lookup returns the reference data of symbol, or ctx's error if ctx ends
// first.
func (e *enrichment) lookup(ctx context.Context, symbol string) (info, error) {
	e.calls.Add(1)
	wait := 500*time.Microsecond + rand.N(time.Millisecond)
	if e.hanging(time.Now()) {
		wait = time.Minute
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return info{}, ctx.Err()
	case <-t.C:
	}
	i, ok := e.ref[symbol]
	if !ok {
		return info{}, fmt.Errorf("enrichment: unknown symbol %q", symbol)
	}
	return i, nil
}

// callTimeout bounds each call to the enrichment service.
const callTimeout = 50 * time.Millisecond

// newBreaker returns the breaker of the subscribers' calls to the
// enrichment service: it opens after 5 failures in a row, or when half of
// at least 10 calls in the last second failed, for 250ms, doubled up to 1s
// while its probes fail, and closes when 3 probes succeed. It tells m of
// its changes.
func newBreaker(m *meter) *circuitbreaker.Breaker {
	return circuitbreaker.New(
		circuitbreaker.WithName("enrichment"),
		circuitbreaker.WithTimeWindow(time.Second, 10),
		circuitbreaker.WithFailureRate(0.5, 10),
		circuitbreaker.WithConsecutiveFailures(5),
		circuitbreaker.WithBreakDuration(250*time.Millisecond, time.Second),
		circuitbreaker.WithHalfOpenProbes(3),
		circuitbreaker.WithOnStateChange(func(tr circuitbreaker.Transition) { m.changed(tr.To) }),
	)
}

// An answer is how a subscriber served a quote.
type answer int

const (
	enriched answer = iota // with the enrichment service's answer
	stale                  // with the last answer it had for the symbol
	raw                    // without enrichment: none had come yet
	answers
)

// view is what a subscriber serves for a quote.
type view struct {
	quote
	info
	Change float64 // since the previous close, in percent
	Stale  bool    // info is the last known one, not a fresh answer
}

// subscriber serves the quotes it gets, one at a time, each enriched with
// a call through policy, or, when the call fails, with the last answer it
// had for the symbol.
type subscriber struct {
	svc    *enrichment
	policy resilience.Policy
	m      *meter
	queue  chan []byte
	last   map[string]info // of the worker goroutine
	screen map[string]view // of the worker goroutine: what it serves
}

func newSubscriber(svc *enrichment, policy resilience.Policy, m *meter) *subscriber {
	return &subscriber{svc: svc, policy: policy, m: m, queue: make(chan []byte, queueSize),
		last: make(map[string]info), screen: make(map[string]view)}
}

// queueSize is how many quotes a subscriber holds that it has not served.
const queueSize = 4096

// receive takes a quote from the broker; it blocks only when the
// subscriber is queueSize quotes behind. NATS then holds the quotes, up to
// its limit for a slow consumer, beyond which it drops them; MQTT stops
// reading from the broker.
func (s *subscriber) receive(data []byte) {
	s.m.received()
	s.queue <- data
}

// work serves the quotes received until done is closed.
func (s *subscriber) work(ctx context.Context, done <-chan struct{}) {
	for {
		select {
		case data := <-s.queue:
			s.serve(ctx, data)
		case <-done:
			return
		}
	}
}

func (s *subscriber) serve(ctx context.Context, data []byte) {
	var q quote
	if err := json.Unmarshal(data, &q); err != nil {
		s.m.malformed()
		return
	}
	var cause error // of a stale answer
	inf, err := fallback.Do(ctx, s.policy,
		func(ctx context.Context) (info, error) { return s.svc.lookup(ctx, q.Symbol) },
		func(_ context.Context, err error) (info, error) {
			last, ok := s.last[q.Symbol]
			if !ok {
				return info{}, err
			}
			cause = err
			return last, nil
		})
	a := enriched
	switch {
	case err != nil:
		a = raw
	case cause != nil:
		a = stale
	default:
		s.last[q.Symbol] = inf
	}
	v := view{quote: q, info: inf, Stale: a == stale}
	if inf.PrevClose > 0 {
		v.Change = (q.Price/inf.PrevClose - 1) * 100
	}
	s.screen[q.Symbol] = v
	s.m.served(a, staleCause(cause), time.Since(time.Unix(0, q.Sent)))
}

// staleCause names why a call failed, for the count of stale answers.
func staleCause(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, circuitbreaker.ErrOpen):
		return "breaker open"
	case errors.Is(err, timeout.ErrExceeded):
		return "timeout"
	}
	return "error"
}

// tally counts quotes received and served.
type tally struct {
	in      int64
	served  [answers]int64
	latency []time.Duration // from publishing to serving
}

func (t *tally) answered() int64 { return t.served[enriched] + t.served[stale] + t.served[raw] }

// meter counts what the subscribers received and served, each second and
// in all, and the breaker's changes of state. It is safe for concurrent use.
type meter struct {
	mu      sync.Mutex
	second  tally
	total   tally
	bad     int64                  // quotes that were not JSON
	causes  map[string]int64       // of stale answers
	state   circuitbreaker.State   // the breaker's, at the start of the second
	entered []circuitbreaker.State // by the breaker, in this second
	changes map[circuitbreaker.State]int64
}

func newMeter() *meter {
	return &meter{causes: make(map[string]int64), changes: make(map[circuitbreaker.State]int64)}
}

func (m *meter) received() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.second.in++
	m.total.in++
}

func (m *meter) malformed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bad++
}

func (m *meter) served(a answer, cause string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range []*tally{&m.second, &m.total} {
		t.served[a]++
		t.latency = append(t.latency, d)
	}
	if cause != "" {
		m.causes[cause]++
	}
}

func (m *meter) changed(to circuitbreaker.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entered = append(m.entered, to)
	m.changes[to]++
}

// takeSecond returns the tally since it was last called, and the states
// the breaker went through: the one it was in, and those it entered.
func (m *meter) takeSecond() (tally, []circuitbreaker.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.second
	m.second = tally{}
	states := append([]circuitbreaker.State{m.state}, m.entered...)
	m.state = states[len(states)-1]
	m.entered = nil
	return t, states
}

// counts returns how many quotes were received and answered in all.
func (m *meter) counts() (in, answered int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total.in, m.total.answered()
}

// report is the run's totals, for the summary.
type report struct {
	published   int64
	subscribers int
	total       tally
	bad         int64
	causes      map[string]int64
	changes     map[circuitbreaker.State]int64
	calls       int64 // that reached the enrichment service
}

func (m *meter) report() report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return report{total: m.total, bad: m.bad, causes: m.causes, changes: m.changes}
}

// percentile returns the p-th percentile of ds, p in (0, 1], sorting ds;
// 0 when ds is empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[max(int(math.Ceil(p*float64(len(ds))))-1, 0)]
}

// formatStates writes the states as "closed>open>half-open".
func formatStates(states []circuitbreaker.State) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = s.String()
	}
	return strings.Join(names, ">")
}
