package resiliencehttp_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// benchPolicy is retry, a breaker per host and an attempt timeout.
func benchPolicy() resilience.Policy {
	return resilience.Chain(
		retry.New(),
		resiliencehttp.PerHost(func(string) resilience.Policy { return circuitbreaker.New() }),
		timeout.New(10*time.Second),
	)
}

// loopback starts a server that answers "ok", and returns it with a
// transport for it.
func loopback(tb testing.TB) (*httptest.Server, *http.Transport) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	tb.Cleanup(s.Close)
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tb.Cleanup(tr.CloseIdleConnections)
	return s, tr
}

func send(tb testing.TB, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// compared is next alone (bare), and a Transport with benchPolicy around
// next (transport).
func compared(next http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", next},
		{"transport", resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(benchPolicy()))},
	}
}

// BenchmarkRoundTrip is a GET to a loopback server through net/http's
// Transport alone (bare), and through a Transport with retry, a breaker
// per host and a timeout around it: the difference is the overhead.
func BenchmarkRoundTrip(b *testing.B) {
	s, base := loopback(b)
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	for _, rt := range compared(base) {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				send(b, rt.rt, req)
			}
		})
	}
}

// A loopback request through a Transport with retry, a breaker per host
// and a timeout makes at most 8 allocations more than through net/http's
// Transport alone: 4 for the timeout's ctx, 3 that net/http adds for a
// request whose ctx can end, 1 for the call, which also holds the first
// attempt's request. The server's allocations count on both sides, and
// the least of 5 rounds of each is kept: anything else running adds, never
// takes away.
func TestLoopbackAllocations(t *testing.T) {
	if policytest.RaceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	s, base := loopback(t)
	req, err := http.NewRequest(http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	tr := resiliencehttp.NewTransport(base, resiliencehttp.WithPolicy(benchPolicy()))
	bare, ours := math.Inf(1), math.Inf(1)
	for range 5 {
		bare = min(bare, mallocsPerRequest(t, base, req))
		ours = min(ours, mallocsPerRequest(t, tr, req))
	}
	t.Logf("allocations per loopback request: %.2f bare, %.2f through the Transport", bare, ours)
	assert.LessOrEqual(t, ours-bare, 8.5)
}

// mallocsPerRequest is the mean number of heap allocations per request
// sent through rt, the server's included.
func mallocsPerRequest(t *testing.T, rt http.RoundTripper, req *http.Request) float64 {
	const n = 1000
	send(t, rt, req)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		send(t, rt, req)
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / n
}

// BenchmarkRoundTripParallel is BenchmarkRoundTrip from every P at once.
func BenchmarkRoundTripParallel(b *testing.B) {
	s, base := loopback(b)
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	for _, rt := range compared(base) {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					send(b, rt.rt, req)
				}
			})
		})
	}
}

// BenchmarkOverhead is the Transport around a next RoundTripper that
// answers from memory, beside that RoundTripper alone: the overhead
// without the network's noise. The timeout's ctx makes 3 allocations
// fewer here than over the network, where net/http asks for its Done
// channel and registers a ctx of its own under it.
func BenchmarkOverhead(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}
	var next http.RoundTripper = roundTripper(func(*http.Request) (*http.Response, error) {
		resp.Body = io.NopCloser(eof{})
		return resp, nil
	})
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	for _, rt := range compared(next) {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				send(b, rt.rt, req)
			}
		})
	}
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// BenchmarkRejected is a call refused by an open breaker: no round trip.
func BenchmarkRejected(b *testing.B) {
	brk := circuitbreaker.New()
	brk.ForceOpen()
	tr := resiliencehttp.NewTransport(http.DefaultTransport, resiliencehttp.WithPolicy(brk))
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(req); err == nil {
			b.Fatal("not refused")
		}
	}
}
