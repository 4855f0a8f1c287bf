package resiliencehttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
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
func loopback(b *testing.B) (*httptest.Server, *http.Transport) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	b.Cleanup(s.Close)
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	b.Cleanup(tr.CloseIdleConnections)
	return s, tr
}

func send(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkRoundTrip is a GET to a loopback server through net/http's
// Transport alone (bare), and through a Transport with retry, a breaker
// per host and a timeout around it: the difference is the overhead.
func BenchmarkRoundTrip(b *testing.B) {
	s, base := loopback(b)
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"transport", resiliencehttp.NewTransport(base, resiliencehttp.WithPolicy(benchPolicy()))},
	} {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				send(b, rt.rt, req)
			}
		})
	}
}

// BenchmarkRoundTripParallel is BenchmarkRoundTrip from every P at once.
func BenchmarkRoundTripParallel(b *testing.B) {
	s, base := loopback(b)
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"transport", resiliencehttp.NewTransport(base, resiliencehttp.WithPolicy(benchPolicy()))},
	} {
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
// without the network's noise. The timeout's ctx makes one allocation
// fewer here than over the network, where net/http asks for its Done
// channel.
func BenchmarkOverhead(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}
	var next http.RoundTripper = roundTripper(func(*http.Request) (*http.Response, error) {
		resp.Body = io.NopCloser(eof{})
		return resp, nil
	})
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", next},
		{"transport", resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(benchPolicy()))},
	} {
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
