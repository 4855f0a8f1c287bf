package resiliencehttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/resiliencehttp"
)

// showGet sends a GET to url and prints the status, the body and the headers
// named.
func showGet(url string, headers ...string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %q\n", resp.StatusCode, body)
	for _, h := range headers {
		if v := resp.Header.Get(h); v != "" {
			fmt.Printf("  %s: %s\n", h, v)
		}
	}
}

func ExampleHandler() {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	srv := httptest.NewServer(resiliencehttp.Handler(api,
		resiliencehttp.WithRateLimit(1.0/60, 2),            // per client: bursts of two, then one a minute
		resiliencehttp.WithLoadShedding(bulkhead.New(100)), // at most 100 requests served at once
	))
	defer srv.Close()

	for range 3 {
		showGet(srv.URL, "Retry-After", "RateLimit-Policy", "RateLimit")
	}
	// Output:
	// 200 "hello\n"
	// 200 "hello\n"
	// 429 "Too Many Requests\n"
	//   Retry-After: 60
	//   RateLimit-Policy: "default";q=2;w=120
	//   RateLimit: "default";r=0;t=60
}

// A bulkhead of one slot sheds the second of two requests at once.
func ExampleWithLoadShedding() {
	inside, release := make(chan struct{}), make(chan struct{})
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inside)
		<-release // a slow request holds the only slot
		fmt.Fprintln(w, "report")
	})
	srv := httptest.NewServer(resiliencehttp.Handler(report, resiliencehttp.WithLoadShedding(bulkhead.New(1))))
	defer srv.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-inside
		showGet(srv.URL, "Retry-After")
		close(release)
	}()
	showGet(srv.URL)
	<-done
	// Output:
	// 503 "Service Unavailable\n"
	//   Retry-After: 1
	// 200 "report\n"
}

// A proxy whose upstream does not answer in time answers 504; the handler's
// ctx says why it was cancelled.
func ExampleWithRequestTimeout() {
	cause := make(chan error, 1)
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cause <- context.Cause(r.Context())
	})
	srv := httptest.NewServer(resiliencehttp.Handler(upstream,
		resiliencehttp.WithRequestTimeout(50*time.Millisecond), resiliencehttp.WithGateway()))
	defer srv.Close()

	showGet(srv.URL)
	fmt.Println(<-cause)
	// Output:
	// 504 "Gateway Timeout\n"
	// resiliencehttp: request timeout 50ms exceeded
}

// A fallback answers refusals in the API's own format.
func ExampleWithFallback() {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"hello":"world"}`)
	})
	refused := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if errors.Is(resiliencehttp.Refusal(r), ratelimit.ErrLimited) {
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintln(w, `{"error":"slow down"}`)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"error":"busy"}`)
	})
	srv := httptest.NewServer(resiliencehttp.Handler(api,
		resiliencehttp.WithRateLimit(1.0/60, 1), resiliencehttp.WithFallback(refused)))
	defer srv.Close()

	showGet(srv.URL)
	showGet(srv.URL)
	// Output:
	// 200 "{\"hello\":\"world\"}\n"
	// 429 "{\"error\":\"slow down\"}\n"
}
