package resiliencehttp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/resiliencehttp"
)

func TestStandardPanics(t *testing.T) {
	tests := []struct {
		want string
		opts []resiliencehttp.StandardOption
	}{
		{"resiliencehttp: Standard: the attempt timeout 30s is not below the total timeout 30s",
			[]resiliencehttp.StandardOption{resiliencehttp.WithAttemptTimeout(30 * time.Second)}},
		{"resiliencehttp: Standard: the attempt timeout 10s is not below the total timeout 5s",
			[]resiliencehttp.StandardOption{resiliencehttp.WithTotalTimeout(5 * time.Second)}},
		{"resiliencehttp: Standard: the breaker's window 15s is shorter than twice the attempt timeout 10s",
			[]resiliencehttp.StandardOption{resiliencehttp.WithBreaker(15*time.Second, nil)}},
		{"resiliencehttp: Standard: the breaker's window 30s is shorter than twice the attempt timeout 20s",
			[]resiliencehttp.StandardOption{resiliencehttp.WithAttemptTimeout(20 * time.Second)}},
		{"resiliencehttp: Standard: the default breaker's window 500µs is shorter than a millisecond",
			[]resiliencehttp.StandardOption{resiliencehttp.WithAttemptTimeout(100 * time.Microsecond),
				resiliencehttp.WithTotalTimeout(time.Millisecond), resiliencehttp.WithBreaker(500*time.Microsecond, nil)}},
		{"resiliencehttp: Standard: nil StandardOption", []resiliencehttp.StandardOption{nil}},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, func() { resiliencehttp.Standard(tt.opts...) })
	}
	assert.PanicsWithValue(t, "resiliencehttp: WithTotalTimeout(0s): want d > 0", func() { resiliencehttp.WithTotalTimeout(0) })
	assert.PanicsWithValue(t, "resiliencehttp: WithAttemptTimeout(-1s): want d > 0", func() { resiliencehttp.WithAttemptTimeout(-time.Second) })
	assert.PanicsWithValue(t, "resiliencehttp: WithBreaker(0s, ...): want window > 0", func() { resiliencehttp.WithBreaker(0, nil) })
	assert.PanicsWithValue(t, "resiliencehttp: WithLimiter: nil Policy", func() { resiliencehttp.WithLimiter(nil) })
	assert.PanicsWithValue(t, "resiliencehttp: WithRetry: nil Policy", func() { resiliencehttp.WithRetry(nil) })
	assert.NotPanics(t, func() {
		resiliencehttp.Standard(resiliencehttp.WithAttemptTimeout(time.Second), resiliencehttp.WithTotalTimeout(3*time.Second),
			resiliencehttp.WithBreaker(2*time.Second, nil))
	}, "a window of exactly twice the attempt timeout")
}

// The Transport's default policy is Standard: a failing status is retried,
// a POST is not.
func TestStandardIsTheDefault(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, statuses(503, 200, 503, 200))
	tr := resiliencehttp.NewTransport(base(t, s))
	status, body := get(t, tr, s.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "hit 2", body)

	req, err := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("order"))
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, int64(3), s.hits.Load())
}

// Each part is replaced by its option: here a bulkhead of one slot and a
// breaker that opens at the first failure.
func TestStandardParts(t *testing.T) {
	noLeaks(t)
	release := make(chan struct{})
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, hit int64) {
		if r.URL.Path == "/slow" {
			<-release
		}
		statuses(503)(w, r, hit)
	})
	tr := resiliencehttp.NewTransport(base(t, s), resiliencehttp.WithPolicy(resiliencehttp.Standard(
		resiliencehttp.WithLimiter(bulkhead.New(1)),
		resiliencehttp.WithTotalTimeout(2*time.Second),
		resiliencehttp.WithAttemptTimeout(time.Second),
		resiliencehttp.WithBreaker(2*time.Second, func(host string) resilience.Policy {
			return circuitbreaker.New(circuitbreaker.WithName(host), circuitbreaker.WithConsecutiveFailures(1))
		}),
	)))

	slow := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/slow", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		slow <- err
	}()
	require.Eventually(t, func() bool { return s.hits.Load() == 1 }, 5*time.Second, time.Millisecond)
	req, err := http.NewRequest(http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	_, err = tr.RoundTrip(req)
	assert.ErrorIs(t, err, bulkhead.ErrFull, "the one slot is taken")
	close(release)
	err = <-slow
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen, "the 503 opened the host's breaker, whose 5s break passes the 2s total")
	var se *resiliencehttp.StatusError
	assert.ErrorAs(t, err, &se)
	assert.Equal(t, int64(1), s.hits.Load())
}

// The total timeout bounds every attempt and wait together.
func TestStandardTotalTimeout(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, func(w http.ResponseWriter, r *http.Request, _ int64) { <-r.Context().Done() })
	tr := resiliencehttp.NewTransport(base(t, s), resiliencehttp.WithPolicy(resiliencehttp.Standard(
		resiliencehttp.WithTotalTimeout(300*time.Millisecond),
		resiliencehttp.WithAttemptTimeout(100*time.Millisecond),
		resiliencehttp.WithBreaker(time.Second, nil))))
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.LessOrEqual(t, s.hits.Load(), int64(3))
}

// Once its breaker opens, a call through Standard fails at once with the
// refusal: it does not wait out the break to try the server again.
func TestStandardFailsFastWhenTheBreakerOpens(t *testing.T) {
	noLeaks(t)
	s := newServer(t, false, statuses(503))
	tr := resiliencehttp.NewTransport(base(t, s), resiliencehttp.WithPolicy(resiliencehttp.Standard(
		resiliencehttp.WithTotalTimeout(5*time.Second),
		resiliencehttp.WithAttemptTimeout(time.Second),
		resiliencehttp.WithBreaker(2*time.Second, func(host string) resilience.Policy {
			return circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1),
				// Longer than any wait of the retry (2s at most), shorter
				// than the total timeout: a retry that waited out the break
				// would reach the server again within the call.
				circuitbreaker.WithBreakDuration(3*time.Second, 3*time.Second))
		}),
	)))
	req, err := http.NewRequest(http.MethodGet, s.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	// The first attempt's 503 opened the breaker, and its refusal of the
	// second attempt ended the call: the server saw one request, not a
	// probe after the break.
	require.ErrorIs(t, err, resilience.ErrRejected)
	var se *resiliencehttp.StatusError
	require.ErrorAs(t, err, &se, "the refusal carries the 503 it followed")
	assert.Equal(t, http.StatusServiceUnavailable, se.StatusCode)
	assert.Equal(t, int64(1), s.hits.Load())
}
