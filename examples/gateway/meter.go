package main

import (
	"maps"
	"math"
	"math/bits"
	"net/http"
	"sync"
	"time"
)

// outcome is what a client got, as the table's columns count it.
type outcome int

const (
	admitted outcome = iota // an answer from a backend, or the gateway's own 404
	limited                 // 429 Too Many Requests
	shed                    // 503 from a gateway too busy (X-Gateway-Overloaded)
	fellBack                // an answer from the fallback (X-Gateway-Fallback)
	failed                  // any other 5xx
	outcomes
)

// maxClients bounds the clients a meter tells apart; the others are
// counted together, as "others".
const maxClients = 16

// stats counts outcomes and their latencies.
type stats struct {
	n       [outcomes]int64
	latency histogram
}

func (s *stats) add(o outcome, d time.Duration) {
	s.n[o]++
	s.latency.add(d)
}

// meter counts what a gateway answered, each second and per client, and
// the causes of its fallbacks. It is safe for concurrent use.
type meter struct {
	mu      sync.Mutex
	second  stats             // since the last row
	total   stats             // since the start
	clients map[string]*stats // since the start, per client
	causes  map[string]int64  // of fallbacks
}

func newMeter() *meter {
	return &meter{clients: make(map[string]*stats), causes: make(map[string]int64)}
}

// wrap returns next, measured: the time from the request's arrival to the
// return of next, and the outcome read from the status and headers of the
// answer.
func (m *meter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		// Deferred, to count too the requests whose handler panics, as the
		// proxy does to abort a response it cannot finish.
		defer func() { m.record(clientKey(r), rec, time.Since(start)) }()
		next.ServeHTTP(rec, r)
	})
}

func (m *meter) record(client string, rec *recorder, d time.Duration) {
	o := rec.outcome()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.second.add(o, d)
	m.total.add(o, d)
	c, ok := m.clients[client]
	if !ok {
		if len(m.clients) >= maxClients {
			client = "others"
		}
		if c, ok = m.clients[client]; !ok {
			c = new(stats)
			m.clients[client] = c
		}
	}
	c.add(o, d)
	if o == fellBack {
		m.causes[rec.cause]++
	}
}

// takeSecond returns the stats since it was last called.
func (m *meter) takeSecond() stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.second
	m.second = stats{}
	return s
}

// summary returns the stats of each client, by name, and of all of them.
func (m *meter) summary() (clients map[string]stats, all stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	clients = make(map[string]stats, len(m.clients))
	for name, s := range m.clients {
		clients[name] = *s
	}
	return clients, m.total
}

// fallbackCauses returns how many fallbacks each cause had.
func (m *meter) fallbackCauses() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.causes)
}

// recorder is the ResponseWriter under a meter: it notes the status and
// the gateway's headers of the answer when it is written. Its calls come
// one at a time: the Handler's timeout serializes its own answer with the
// proxy's writes.
type recorder struct {
	http.ResponseWriter
	status     int
	fallback   bool
	cause      string
	overloaded bool
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rec.status = code
		h := rec.Header()
		rec.fallback = h.Get("X-Gateway-Fallback") != ""
		rec.cause = h.Get("X-Gateway-Fallback-Cause")
		rec.overloaded = h.Get("X-Gateway-Overloaded") != ""
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	return rec.ResponseWriter.Write(p)
}

// Unwrap returns the real writer, for http.ResponseController.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *recorder) outcome() outcome {
	switch {
	case rec.status == http.StatusTooManyRequests:
		return limited
	case rec.status == http.StatusServiceUnavailable && rec.overloaded:
		return shed
	case rec.fallback:
		return fellBack
	case rec.status >= 500:
		return failed
	}
	return admitted // written, or not written at all: net/http sends a 200
}

// histogram counts durations in buckets of a microsecond below 64µs and, from
// there, 32 buckets per power of two, so that a percentile read from it is
// within about 3% of the true one, in constant memory.
type histogram struct {
	counts [32 * 37]int64 // up to 2^40µs, about 12 days
	n      int64
}

func bucketOf(d time.Duration) int {
	us := uint64(max(d/time.Microsecond, 0))
	if us < 32 {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // keep the top 6 bits: 32 to 63
	return min(32*shift+int(us>>shift), len(histogram{}.counts)-1)
}

// bucketMid returns the middle of bucket i.
func bucketMid(i int) time.Duration {
	if i < 64 {
		return time.Duration(i)*time.Microsecond + time.Microsecond/2
	}
	shift := i/32 - 1
	lo := uint64(i%32+32) << shift
	return time.Duration(lo)*time.Microsecond + time.Duration(uint64(1)<<shift)*time.Microsecond/2
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
}

// percentile returns the p-th percentile, p in (0, 1], or 0 when h is empty.
func (h *histogram) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(p*float64(h.n))), 1)
	var seen int64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return bucketMid(i)
		}
	}
	return bucketMid(len(h.counts) - 1)
}
