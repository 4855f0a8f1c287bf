package resiliencehttp_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/resiliencehttp"
)

func TestPerHostContract(t *testing.T) {
	policytest.Run(t, func() resilience.Policy {
		return resiliencehttp.PerHost(func(string) resilience.Policy {
			// Room for the suite's 100 panics (failures) in a row.
			return circuitbreaker.New(circuitbreaker.WithCountWindow(200), circuitbreaker.WithFailureRate(1, 200))
		}, resiliencehttp.WithMaxHosts(1))
	})
}

// Each host has its own breaker: one that fails opens its own, and the
// other is still called.
func TestPerHostBreakers(t *testing.T) {
	noLeaks(t)
	failing, healthy := newServer(t, false, statuses(503)), newServer(t, false, statuses(200))
	var (
		mu    sync.Mutex
		hosts []string
	)
	policy := resiliencehttp.PerHost(func(host string) resilience.Policy {
		mu.Lock()
		hosts = append(hosts, host)
		mu.Unlock()
		return circuitbreaker.New(circuitbreaker.WithName(host), circuitbreaker.WithConsecutiveFailures(2))
	})
	client := &http.Client{Transport: resiliencehttp.NewTransport(base(t, failing), resiliencehttp.WithPolicy(policy))}
	for range 2 {
		resp, err := client.Get(failing.URL)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	}
	_, err := client.Get(failing.URL + "/other/path")
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen, "the failing host's breaker is open")
	assert.ErrorIs(t, err, resilience.ErrRejected)
	assert.Equal(t, int64(2), failing.hits.Load())

	client.Transport = resiliencehttp.NewTransport(base(t, healthy), resiliencehttp.WithPolicy(policy))
	resp, err := client.Get(healthy.URL)
	require.NoError(t, err, "the other host's breaker is closed")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	f, _ := url.Parse(failing.URL)
	h, _ := url.Parse(healthy.URL)
	assert.Equal(t, []string{f.Host, h.Host}, hosts, "one breaker per URL.Host, named after it")
}

// Outside a Transport, every call is on host "".
func TestPerHostOutsideATransport(t *testing.T) {
	var hosts []string
	p := resiliencehttp.PerHost(func(host string) resilience.Policy { hosts = append(hosts, host); return resilience.Chain() })
	for range 3 {
		require.NoError(t, p.Do(context.Background(), func(context.Context) error { return nil }))
	}
	assert.Equal(t, []string{""}, hosts)
}

func TestPerHostPanics(t *testing.T) {
	newPolicy := func(string) resilience.Policy { return resilience.Chain() }
	assert.PanicsWithValue(t, "resiliencehttp: PerHost: nil newPolicy", func() { resiliencehttp.PerHost(nil) })
	assert.PanicsWithValue(t, "resiliencehttp: PerHost: nil HostOption", func() { resiliencehttp.PerHost(newPolicy, nil) })
	assert.PanicsWithValue(t, "resiliencehttp: WithMaxHosts(0): want 1 <= n <= 16777216", func() { resiliencehttp.WithMaxHosts(0) })
	assert.PanicsWithValue(t, "resiliencehttp: WithHostIdleTimeout(0s): want d > 0", func() { resiliencehttp.WithHostIdleTimeout(0) })
	p := resiliencehttp.PerHost(func(string) resilience.Policy { return nil })
	assert.PanicsWithValue(t, `resiliencehttp: PerHost: newPolicy("") returned nil`, func() {
		_ = p.Do(context.Background(), func(context.Context) error { return nil })
	})
	var nilBreaker *circuitbreaker.Breaker
	p = resiliencehttp.PerHost(func(string) resilience.Policy { return nilBreaker })
	assert.Panics(t, func() { _ = p.Do(context.Background(), func(context.Context) error { return nil }) },
		"a nil pointer in the interface is nil too")
}
