package httpbench_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	fcircuitbreaker "github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	ftimeout "github.com/failsafe-go/failsafe-go/timeout"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// ours is a Transport with a retry of 3 attempts, a circuit breaker and a
// timeout of 10s per attempt.
func ours(next http.RoundTripper) http.RoundTripper {
	return resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain(
		retry.New(), circuitbreaker.New(), timeout.New(10*time.Second))))
}

// theirs is failsafehttp's RoundTripper with the same: a retry of 3
// attempts (2 retries) for failsafehttp's retryable responses, a circuit
// breaker and a timeout of 10s per attempt.
func theirs(next http.RoundTripper) http.RoundTripper {
	return failsafehttp.NewRoundTripper(next,
		failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(2).Build(),
		fcircuitbreaker.NewWithDefaults[*http.Response](),
		ftimeout.New[*http.Response](10*time.Second))
}

// withTimeout is net/http's Transport with a 10s timeout of the caller's
// own per request: the floor that any timeout costs.
type withTimeout struct{ next http.RoundTripper }

func (w withTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	resp, err := w.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelBody{resp.Body, cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

func loopback(tb testing.TB, h http.HandlerFunc) (*httptest.Server, *http.Transport) {
	s := httptest.NewServer(h)
	tb.Cleanup(s.Close)
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tb.Cleanup(tr.CloseIdleConnections)
	return s, tr
}

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

func send(tb testing.TB, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// compared is next alone (bare), next with a context.WithTimeout of its
// own (bare+timeout), and each library's RoundTripper with a retry, a
// breaker and a timeout around next.
func compared(next http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", next},
		{"bare+timeout", withTimeout{next}},
		{"resiliencehttp", ours(next)},
		{"failsafehttp", theirs(next)},
	}
}

// BenchmarkRoundTrip is a GET to a loopback server through net/http's
// Transport alone (bare), with a context.WithTimeout of its own
// (bare+timeout), and inside each library's RoundTripper with a retry, a
// breaker and a timeout.
func BenchmarkRoundTrip(b *testing.B) {
	s, base := loopback(b, ok)
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

// BenchmarkLoopbackOverhead measures what each wrapper adds to a loopback
// GET, in pairs: every iteration sends one request through net/http's
// Transport alone and one through the wrapper, the bare one first in every
// other iteration and second in the rest. Paired requests share the
// machine's state at the moment, which ns/op from separate runs does not:
// on loopback, those drift by more than the overhead measured. Alternating
// the order keeps whatever one request leaves behind for the next (a
// connection to put back, a timer to stop, garbage) from landing on one
// side of the pair only.
//
// Two metrics come from the differences of the pairs: overhead-ns/op is
// their mean, and overhead-median-ns/op their median, which the rare pair
// that a GC cycle or the scheduler delays by tens of microseconds does not
// move. The mean counts those delays, as a service would; the median
// varies far less from run to run.
//
// It measures two kinds of request. With ctx=background the request's ctx
// never ends: net/http has nothing to watch for the bare request, and the
// wrappers pay for watching the ctx they add. With ctx=caller the
// request's ctx can be cancelled, as the ctx of a request a server is
// handling can: net/http watches a ctx on both sides of the pair.
func BenchmarkLoopbackOverhead(b *testing.B) {
	s, base := loopback(b, ok)
	caller, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for _, kind := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"caller", caller}} {
		req, _ := http.NewRequestWithContext(kind.ctx, http.MethodGet, s.URL, nil)
		for _, rt := range compared(base) {
			b.Run("ctx="+kind.name+"/"+rt.name, func(b *testing.B) {
				var diffs []time.Duration
				for i := 0; b.Loop(); i++ {
					var first, second http.RoundTripper = base, rt.rt
					if i%2 == 1 {
						first, second = second, first
					}
					start := time.Now()
					send(b, first, req)
					mid := time.Now()
					send(b, second, req)
					d := time.Since(mid) - mid.Sub(start) // second − first
					if i%2 == 1 {
						d = -d
					}
					diffs = append(diffs, d) // wrapped − bare
				}
				var sum time.Duration
				for _, d := range diffs {
					sum += d
				}
				slices.Sort(diffs)
				b.ReportMetric(float64(sum)/float64(len(diffs)), "overhead-ns/op")
				b.ReportMetric(float64(diffs[len(diffs)/2]), "overhead-median-ns/op")
			})
		}
	}
}

// BenchmarkOverhead is the same around a next RoundTripper that answers
// from memory: the overhead without the network's noise.
func BenchmarkOverhead(b *testing.B) {
	var next http.RoundTripper = memory{}
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

// memory answers 200 with an empty body.
type memory struct{}

func (memory) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(eof{}), Request: r}, nil
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// The transports compared do the same work: a 503 is retried, and the
// second attempt's response comes back whole, its body readable after the
// round trip.
func TestTransportsBehaveAlike(t *testing.T) {
	for _, rt := range []struct {
		name string
		new  func(http.RoundTripper) http.RoundTripper
	}{{"resiliencehttp", ours}, {"failsafehttp", theirs}} {
		t.Run(rt.name, func(t *testing.T) {
			var hits atomic.Int32
			s, base := loopback(t, func(w http.ResponseWriter, _ *http.Request) {
				if hits.Add(1) == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, "ok")
			})
			req, err := http.NewRequest(http.MethodGet, s.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.new(base).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" || hits.Load() != 2 {
				t.Errorf("got %d %q, %v, after %d requests; want 200 \"ok\" after 2", resp.StatusCode, body, err, hits.Load())
			}
		})
	}
}
