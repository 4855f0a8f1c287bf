package resiliencehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// flaky starts a server that answers 503 to its first two requests and
// then "ok", and counts them.
func flaky() (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	return s, &hits
}

// A client whose requests are retried, with a breaker per host and a
// timeout per attempt.
func Example() {
	s, hits := flaky()
	defer s.Close()

	client := &http.Client{Transport: resiliencehttp.NewTransport(http.DefaultTransport,
		resiliencehttp.WithPolicy(resilience.Chain(
			retry.New(),
			resiliencehttp.PerHost(func(host string) resilience.Policy {
				return circuitbreaker.New(circuitbreaker.WithName(host))
			}),
			timeout.New(2*time.Second),
		)),
	)}
	resp, err := client.Get(s.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", hits.Load(), "requests")

	// A POST without an Idempotency-Key is sent once.
	resp, err = client.Post(s.URL, "text/plain", strings.NewReader("order"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", hits.Load(), "requests")
	// Output:
	// 200 ok after 3 requests
	// 200 after 4 requests
}

// When the policy gives up on a failing status, the client gets the last
// response, as from any server.
func ExampleNewTransport() {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120") // longer than the caller will wait
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer s.Close()

	client := &http.Client{
		Transport: resiliencehttp.NewTransport(nil, resiliencehttp.WithPolicy(retry.New())),
		Timeout:   10 * time.Second,
	}
	resp, err := client.Get(s.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s: %s", resp.Status, body)
	// Output:
	// 503 Service Unavailable: down for maintenance
}

// Each host gets its own breaker: the one that fails is refused, the other
// is still called.
func ExamplePerHost() {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer down.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer up.Close()

	client := &http.Client{Transport: resiliencehttp.NewTransport(nil, resiliencehttp.WithPolicy(
		resiliencehttp.PerHost(func(string) resilience.Policy {
			return circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(3))
		}),
	))}
	for _, url := range []string{down.URL, down.URL, down.URL, down.URL, up.URL} {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Println("refused:", strings.TrimPrefix(err.Error(), `Get "`+url+`": `))
			continue
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	// Output:
	// 502 Bad Gateway
	// 502 Bad Gateway
	// 502 Bad Gateway
	// refused: circuitbreaker: open
	// 200 OK
}

func ExampleParseRetryAfter() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, h := range []http.Header{
		{"Retry-After": {"120"}},
		{"Retry-After": {"Sun, 01 Mar 2026 12:00:30 GMT"}},
		{"Retry-After": {"Sun, 01 Mar 2026 12:00:30 GMT"}, "Date": {"Sun, 01 Mar 2026 12:00:20 GMT"}},
		{"Retry-After": {"soon"}},
	} {
		d, ok := resiliencehttp.ParseRetryAfter(h, now)
		fmt.Println(d, ok)
	}
	// Output:
	// 2m0s true
	// 30s true
	// 10s true
	// 0s false
}

// The standard policy, with a shorter attempt timeout than the default.
func ExampleStandard() {
	s, hits := flaky()
	defer s.Close()

	client := &http.Client{Transport: resiliencehttp.NewTransport(nil, resiliencehttp.WithPolicy(
		resiliencehttp.Standard(resiliencehttp.WithAttemptTimeout(2*time.Second)),
	))}
	resp, err := client.Get(s.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "after", hits.Load(), "requests")
	// Output:
	// 200 OK after 3 requests
}
