package main

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/timeout"
)

// A subscriber serves a quote enriched while the service answers; stale,
// after the call's timeout, once it hangs; stale at once when the breaker
// has opened; raw when it has no enrichment of the symbol yet; and enriched
// again once the service answers and the breaker's probes close it.
func TestSubscriberServe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMeter()
		breaker := newBreaker(m)
		svc := newEnrichment(time.Now(), time.Second, 3*time.Second)
		s := newSubscriber(svc, resilience.Chain(breaker, timeout.New(callTimeout)), m)
		acme := info{"Acme Corporation", 101.20}

		// serve serves a quote of symbol at price, and returns what the
		// subscriber shows for it and how long serving it took.
		var seq uint64
		serve := func(symbol string, price float64) (view, time.Duration) {
			seq++
			q := quote{Symbol: symbol, Price: price, Seq: seq, Sent: time.Now().UnixNano()}
			data, err := json.Marshal(q)
			require.NoError(t, err)
			start := time.Now()
			s.serve(context.Background(), data)
			v, ok := s.screen[symbol]
			require.True(t, ok, "the subscriber shows %s", symbol)
			assert.Equal(t, q, v.quote, "it shows the quote as it came")
			return v, time.Since(start)
		}

		v, took := serve("ACME", 111.32)
		assert.Equal(t, acme, v.info)
		assert.False(t, v.Stale)
		assert.InDelta(t, 10.0, v.Change, 0.001, "the change since the previous close, in percent")
		assert.Less(t, took, 2*time.Millisecond, "the service answers in 0.5-1.5ms")

		time.Sleep(time.Second) // the service hangs
		for i := range 5 {
			v, took = serve("ACME", 100)
			assert.Equal(t, acme, v.info, "the last enrichment, call %d", i+1)
			assert.True(t, v.Stale, "marked stale, call %d", i+1)
			assert.InDelta(t, -1.186, v.Change, 0.001, "of the new price")
			assert.Equal(t, callTimeout, took, "each call waits for its timeout, call %d", i+1)
		}
		require.Equal(t, circuitbreaker.Open, breaker.State(), "5 failures in a row open the breaker")

		v, took = serve("ACME", 99)
		assert.True(t, v.Stale)
		assert.Equal(t, acme, v.info)
		assert.Zero(t, took, "the open breaker sheds the call at once")
		v, took = serve("GLOBX", 50)
		assert.Equal(t, info{}, v.info, "no enrichment of GLOBX yet: served raw")
		assert.False(t, v.Stale)
		assert.Zero(t, v.Change)
		assert.Zero(t, took)
		assert.Equal(t, int64(6), svc.calls.Load(), "the shed calls never reached the service")

		time.Sleep(3 * time.Second) // the service answers again, and the break is over
		for i := range 3 {
			v, _ = serve("GLOBX", 50)
			assert.Equal(t, info{"Globex", 48.75}, v.info, "probe %d", i+1)
			assert.False(t, v.Stale)
		}
		assert.Equal(t, circuitbreaker.Closed, breaker.State(), "3 probes that succeed close the breaker")

		rep := m.report()
		assert.Equal(t, [answers]int64{enriched: 4, stale: 6, raw: 1}, rep.total.served)
		assert.Equal(t, map[string]int64{"timeout": 5, "breaker open": 1}, rep.causes)
		assert.Equal(t, map[circuitbreaker.State]int64{circuitbreaker.Open: 1, circuitbreaker.HalfOpen: 1,
			circuitbreaker.Closed: 1}, rep.changes)
		_, states := m.takeSecond()
		assert.Equal(t, "closed>open>half-open>closed", formatStates(states))
		assert.Equal(t, callTimeout, percentile(rep.total.latency, 1), "the slowest waited for its timeout")
	})
}

// A quote that is not JSON is counted, not served.
func TestSubscriberMalformed(t *testing.T) {
	m := newMeter()
	s := newSubscriber(newEnrichment(time.Now(), time.Hour, time.Hour), nil, m)
	s.serve(context.Background(), []byte("ACME 101.2"))
	rep := m.report()
	assert.Equal(t, int64(1), rep.bad)
	assert.Zero(t, rep.total.answered())
	assert.Empty(t, s.screen)
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		ds := make([]time.Duration, len(ns))
		for i, n := range ns {
			ds[i] = time.Duration(n) * time.Millisecond
		}
		return ds
	}
	tests := []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.99, 4 * time.Millisecond},
		{ms(5, 1, 2, 3, 4, 6, 7, 8, 9, 10), 0.5, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, percentile(tt.ds, tt.p), "%v %v", tt.ds, tt.p)
	}
}

func TestFormatLatency(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.00ms"},
		{160 * time.Microsecond, "0.16ms"},
		{1340 * time.Microsecond, "1.3ms"},
		{113 * time.Millisecond, "113ms"},
		{2500 * time.Millisecond, "2500ms"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, formatLatency(tt.d), "%v", tt.d)
	}
}
