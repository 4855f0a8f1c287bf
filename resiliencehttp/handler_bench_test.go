package resiliencehttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/resiliencehttp"
)

// discardResponseWriter is a ResponseWriter that keeps the status and the count of
// bytes written, and can be reused: unlike httptest.ResponseRecorder, it
// allocates nothing once its header has room.
type discardResponseWriter struct {
	header http.Header
	status int
	n      int
}

func newDiscardResponseWriter() *discardResponseWriter {
	return &discardResponseWriter{header: make(http.Header)}
}

func (w *discardResponseWriter) Header() http.Header { return w.header }

func (w *discardResponseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardResponseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *discardResponseWriter) reset() {
	clear(w.header)
	w.status, w.n = 0, 0
}

// okNext answers 200 with no body.
var okNext = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
})

// newServerRequest returns a GET from 192.0.2.1:1234, as a server would see it.
func newServerRequest() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }

// heldBulkhead returns a bulkhead of one slot, held until the benchmark
// ends.
func heldBulkhead(b *testing.B) *bulkhead.Bulkhead {
	bh := bulkhead.New(1)
	hold, held := make(chan struct{}), make(chan struct{})
	go func() {
		_ = bh.Do(context.Background(), func(context.Context) error { close(held); <-hold; return nil })
	}()
	<-held
	b.Cleanup(func() { close(hold) })
	return bh
}

// benchHandler serves one request again and again, after a first one that
// may take a rate limit's only token, and checks the status of the second.
func benchHandler(b *testing.B, h http.Handler, want int) {
	w, r := newDiscardResponseWriter(), newServerRequest()
	h.ServeHTTP(w, r)
	w.reset()
	h.ServeHTTP(w, r)
	if w.status != want {
		b.Fatalf("status %d, want %d", w.status, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
}

// admitAllRate and admitAllBurst admit every request of a benchmark, and the
// bucket of a key used more often than once a second is never full, so the
// limiter keeps it.
const admitAllRate, admitAllBurst = 1, 1e9

// BenchmarkHandlerBare is next alone, for scale.
func BenchmarkHandlerBare(b *testing.B) {
	benchHandler(b, okNext, http.StatusOK)
}

// BenchmarkHandlerAdmit is a request admitted by the rate limit of its
// client address, with no request timeout.
func BenchmarkHandlerAdmit(b *testing.B) {
	benchHandler(b, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst)), http.StatusOK)
}

// BenchmarkHandlerAdmitShed is BenchmarkHandlerAdmit under a bulkhead too.
func BenchmarkHandlerAdmitShed(b *testing.B) {
	h := resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst),
		resiliencehttp.WithLoadShedding(bulkhead.New(100)))
	benchHandler(b, h, http.StatusOK)
}

// BenchmarkHandlerAdmitTimeout is BenchmarkHandlerAdmit with a request
// timeout, which costs a timer and a ResponseWriter.
func BenchmarkHandlerAdmitTimeout(b *testing.B) {
	h := resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst),
		resiliencehttp.WithRequestTimeout(time.Minute))
	benchHandler(b, h, http.StatusOK)
}

// BenchmarkHandlerAdmitParallel is BenchmarkHandlerAdmit from every P at
// once, each with a client address of its own.
func BenchmarkHandlerAdmitParallel(b *testing.B) {
	h := resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(admitAllRate, admitAllBurst))
	var clients atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w, r := newDiscardResponseWriter(), newServerRequest()
		r.RemoteAddr = fmt.Sprintf("198.51.100.%d:1234", clients.Add(1))
		for pb.Next() {
			w.reset()
			h.ServeHTTP(w, r)
		}
	})
}

// BenchmarkHandlerRateLimited is a request refused by the rate limit: 429
// and its headers. (A key of one token a second gets one more each second.)
func BenchmarkHandlerRateLimited(b *testing.B) {
	benchHandler(b, resiliencehttp.Handler(okNext, resiliencehttp.WithRateLimit(1, 1)), http.StatusTooManyRequests)
}

// BenchmarkHandlerShed is a request refused by a full bulkhead: 503.
func BenchmarkHandlerShed(b *testing.B) {
	h := resiliencehttp.Handler(okNext, resiliencehttp.WithLoadShedding(heldBulkhead(b)))
	benchHandler(b, h, http.StatusServiceUnavailable)
}
