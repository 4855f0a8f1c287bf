package resiliencehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
	"github.com/resilience-go/resilience/resiliencehttp"
)

// slowFirst answers the first request only once the client gives up on
// it, and tells cancelled when it does; every other request at once.
func slowFirst(cancelled chan<- struct{}) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, hit int64) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hit == 1 {
			select {
			case <-r.Context().Done():
				close(cancelled)
			case <-time.After(10 * time.Second):
			}
			return
		}
		fmt.Fprintf(w, "hit %d", hit)
	}
}

// hedging is WithHedge with a fixed delay and room for every hedge.
func hedging() resiliencehttp.Option {
	return resiliencehttp.WithHedge(hedge.WithDelay(20*time.Millisecond), hedge.WithMaxExtraLoad(4))
}

// A slow response is hedged: the hedge's response comes back, readable
// after RoundTrip returned, and the slow round trip is cancelled, over
// HTTP/1.1 and HTTP/2, alone and under the Standard policy.
func TestHedgeSlowResponse(t *testing.T) {
	noLeaks(t)
	for _, tls := range []bool{false, true} {
		for _, standard := range []bool{false, true} {
			t.Run(fmt.Sprintf("HTTP/%d standard %v", map[bool]int{false: 1, true: 2}[tls], standard), func(t *testing.T) {
				cancelled := make(chan struct{})
				s := newServer(t, tls, slowFirst(cancelled))
				next := base(t, s)
				policy := resiliencehttp.WithPolicy(resilience.Chain())
				if standard {
					policy = resiliencehttp.WithPolicy(resiliencehttp.Standard())
				}
				tr := resiliencehttp.NewTransport(next, policy, hedging())
				status, body := get(t, tr, s.URL)
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, "hit 2", body)
				select {
				case <-cancelled:
				case <-time.After(5 * time.Second):
					t.Fatal("the slow round trip was not cancelled")
				}
				assert.Equal(t, int64(2), next.trips.Load(), "round trips")
				assert.Equal(t, next.opened.Load(), next.closed.Load(), "response bodies opened and closed")
			})
		}
	}
}

// A failing status starts the next hedge at once, and its body is closed;
// when every hedge fails, the last response comes back.
func TestHedgeFailingStatus(t *testing.T) {
	noLeaks(t)
	tests := []struct {
		name  string
		codes []int
		want  int
		body  string
	}{
		{"the hedge succeeds", []int{503, 200}, 200, "hit 2"},
		{"every hedge fails", []int{503, 502}, 502, "hit 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, false, statuses(tt.codes...))
			next := base(t, s)
			tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain()),
				resiliencehttp.WithHedge(hedge.WithDelay(time.Hour), hedge.WithMaxExtraLoad(4)))
			status, body := get(t, tr, s.URL)
			assert.Equal(t, tt.want, status)
			assert.Equal(t, tt.body, body)
			assert.Equal(t, int64(2), next.trips.Load(), "round trips")
			assert.Equal(t, int64(2), next.opened.Load(), "response bodies")
			assert.Equal(t, int64(2), next.closed.Load(), "response bodies closed, the loser's by the Transport")
		})
	}
}

// A request that may not be sent twice is never hedged.
func TestHedgeNotForPost(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintf(w, "hit %d", hit)
	})
	next := base(t, s)
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain()), hedging())
	req, err := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("order"))
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, "hit 1", string(body))
	assert.Equal(t, int64(1), next.trips.Load(), "round trips of a POST")
}

// A PUT with a body is hedged with a fresh copy of the body, and the
// server sees the whole body on each round trip.
func TestHedgeReplaysTheBody(t *testing.T) {
	noLeaks(t)
	var mu sync.Mutex
	var bodies []string
	cancelled := make(chan struct{})
	slow := slowFirst(cancelled)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		slow(w, r, hit)
	})
	next := base(t, s)
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain()), hedging())
	req, err := http.NewRequest(http.MethodPut, s.URL, strings.NewReader("the document"))
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, "hit 2", string(body))
	<-cancelled
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"the document", "the document"}, bodies)
}

// Under concurrent calls where some hedges lose after they got their
// response, every response body is closed once the callers close theirs.
func TestHedgeClosesEveryLosingBody(t *testing.T) {
	noLeaks(t)
	s := newServer(t, true, func(w http.ResponseWriter, r *http.Request, hit int64) {
		// A quarter of the requests take 30ms: their hedges, sent after
		// 20ms, race them.
		if hit%4 == 1 {
			time.Sleep(30 * time.Millisecond)
		}
		fmt.Fprintf(w, "%s", strings.Repeat("x", 10<<10))
	})
	next := base(t, s)
	tr := resiliencehttp.NewTransport(next, resiliencehttp.WithPolicy(resilience.Chain()), hedging())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				status, body := get(t, tr, s.URL)
				assert.Equal(t, http.StatusOK, status)
				assert.Len(t, body, 10<<10)
			}
		})
	}
	wg.Wait()
	assert.Greater(t, next.trips.Load(), int64(80), "round trips of 80 calls, some hedged")
	assert.Equal(t, next.opened.Load(), next.closed.Load(), "response bodies opened and closed")
}

func TestWithHedgeNilOption(t *testing.T) {
	assert.PanicsWithValue(t, "resiliencehttp: WithHedge: nil hedge.Option", func() { resiliencehttp.WithHedge(nil) })
}
