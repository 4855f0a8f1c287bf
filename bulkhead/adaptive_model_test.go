package bulkhead

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/hist"
)

// limitModel is the adaptive limit as its documentation states it, kept
// the slow way: every latency of the window, sorted for its p90.
type limitModel struct {
	min, max, lim      float64
	maxHealthy         time.Duration
	window             time.Duration
	minSamples         int
	baseline, p90      time.Duration
	inflight, peak     int
	drops              int
	samples            []time.Duration
	windowEnd          time.Duration
	windows, withDrops int // windows ended, for the record
}

func (m *limitModel) acquire() bool {
	if m.inflight >= int(m.lim) {
		return false
	}
	m.inflight++
	m.peak = max(m.peak, m.inflight)
	return true
}

func (m *limitModel) complete(now, lat time.Duration, o outcome) {
	switch o {
	case success:
		m.samples = append(m.samples, lat)
	case dropped:
		m.drops++
	}
	m.inflight--
	if now < m.windowEnd || (len(m.samples) < m.minSamples && m.drops == 0) {
		return
	}
	m.windows++
	enough := len(m.samples) >= m.minSamples
	if len(m.samples) > 0 {
		s := slices.Sorted(slices.Values(m.samples))
		m.p90 = hist.Upper(hist.Bucket(s[int(math.Ceil(0.9*float64(len(s))))-1]))
	}
	log := max(1, math.Log10(m.lim))
	used := float64(2*m.peak) >= m.lim
	if enough {
		if m.baseline == 0 || m.p90 < m.baseline {
			m.baseline = m.p90
		} else if !used {
			m.baseline += (m.p90 - m.baseline) / 5
		}
	}
	next := m.lim
	switch {
	case m.drops > 0:
		m.withDrops++
		next = m.lim * 0.9
	case !enough || !used:
	case m.maxHealthy > 0 && m.p90 > m.maxHealthy:
		next = m.lim - log
	default:
		queue := 0.0
		if m.p90 > 0 {
			queue = math.Ceil(m.lim * (1 - float64(m.baseline)/float64(m.p90)))
		}
		if queue <= log {
			next = m.lim + 6*log
		} else if queue < 3*log {
			next = m.lim + log
		} else if queue > 6*log {
			next = m.lim - log
		}
	}
	next = min(next, max(5*float64(m.peak), m.min))
	m.lim = min(max(next, m.min), m.max)
	m.samples, m.drops, m.peak = m.samples[:0], 0, m.inflight
	m.windowEnd = now + m.window
}

// limitHarness runs an AdaptiveBulkhead's core and its model side by side
// on a clock of its own, with the start of each call in flight.
type limitHarness struct {
	a      *AdaptiveBulkhead
	m      *limitModel
	now    time.Duration
	starts []time.Duration
}

func newLimitHarness(opts ...AdaptiveOption) *limitHarness {
	a := Adaptive(opts...)
	m := &limitModel{min: a.v.min, max: a.v.max, lim: a.v.lim, maxHealthy: a.v.maxHealthy, window: a.window,
		minSamples: int(a.minSamples), windowEnd: a.window}
	return &limitHarness{a: a, m: m}
}

// step does one thing to both, by op and arg, and says how they differ.
func (h *limitHarness) step(op byte, arg uint16) error {
	switch op % 4 {
	case 0: // time passes, up to 65ms
		h.now += time.Duration(arg) * time.Microsecond
	case 1: // a call arrives
		got, want := h.a.acquire(), h.m.acquire()
		if got != want {
			return fmt.Errorf("at %v: admitted %v, model %v (limit %d, %d in flight)", h.now, got, want, h.a.limit.Load(), h.m.inflight)
		}
		if got {
			h.starts = append(h.starts, h.now)
		}
	case 2, 3: // the call in flight at arg%n ends, as a success, drop or failure
		if len(h.starts) == 0 {
			return nil
		}
		i := int(arg) % len(h.starts)
		o := outcome(arg>>8) % 3
		if op%4 == 3 {
			o = success
		}
		lat := h.now - h.starts[i]
		h.starts = slices.Delete(h.starts, i, i+1)
		h.a.complete(int64(h.now), lat, o)
		h.m.complete(h.now, lat, o)
	}
	if got, want := h.a.limit.Load(), int64(h.m.lim); got != want {
		return fmt.Errorf("at %v: limit %d, model %d (%v)", h.now, got, want, h.m.lim)
	}
	if got, want := h.a.inflight.Load(), int64(h.m.inflight); got != want {
		return fmt.Errorf("at %v: %d in flight, model %d", h.now, got, want)
	}
	if h.a.v.baseline != h.m.baseline {
		return fmt.Errorf("at %v: baseline %v, model %v", h.now, h.a.v.baseline, h.m.baseline)
	}
	if l := h.a.v.lim; l < h.a.v.min || l > h.a.v.max {
		return fmt.Errorf("at %v: limit %v out of [%v, %v]", h.now, l, h.a.v.min, h.a.v.max)
	}
	return nil
}

// The adaptive limit agrees with its model over random arrivals,
// successes, drops, failures and passing time, for random settings.
func TestAdaptiveModel(t *testing.T) {
	var windows, withDrops atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		lo := rapid.IntRange(1, 10).Draw(rt, "min")
		initial := rapid.IntRange(lo, 40).Draw(rt, "initial")
		h := newLimitHarness(
			WithLimits(lo, initial, rapid.IntRange(initial, 60).Draw(rt, "max")),
			WithWindow(time.Duration(rapid.IntRange(1, 20).Draw(rt, "windowMs"))*time.Millisecond),
			WithAdaptiveMinSamples(rapid.IntRange(1, 10).Draw(rt, "minSamples")),
			WithMaxHealthyLatency(time.Duration(rapid.IntRange(0, 30).Draw(rt, "maxHealthyMs"))*time.Millisecond))
		do := func(rt *rapid.T, op byte, arg uint16) {
			if err := h.step(op, arg); err != nil {
				rt.Fatal(err)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"sleep": func(rt *rapid.T) { do(rt, 0, uint16(rapid.IntRange(0, 20000).Draw(rt, "us"))) },
			"arrive": func(rt *rapid.T) {
				for range rapid.IntRange(1, 30).Draw(rt, "n") {
					do(rt, 1, 0)
				}
			},
			"end": func(rt *rapid.T) {
				do(rt, 2, uint16(rapid.IntRange(0, 3<<8-1).Draw(rt, "which")))
			},
			"load": func(rt *rapid.T) { // rounds of calls that arrive, take a while, and end
				for range rapid.IntRange(1, 10).Draw(rt, "rounds") {
					n := rapid.IntRange(1, 60).Draw(rt, "n")
					lat := rapid.IntRange(0, 20000).Draw(rt, "us")
					drop := rapid.IntRange(0, 9).Draw(rt, "drop") == 0
					for range n {
						do(rt, 1, 0)
					}
					do(rt, 0, uint16(lat))
					for i := range n {
						which := uint16(i)
						if drop && i == 0 {
							which |= uint16(dropped) << 8
						}
						do(rt, 2, which)
					}
				}
			},
			"succeed": func(rt *rapid.T) {
				for range rapid.IntRange(1, 30).Draw(rt, "n") {
					do(rt, 3, uint16(rapid.IntRange(0, 1000).Draw(rt, "which")))
				}
			},
		})
		windows.Add(int64(h.m.windows))
		withDrops.Add(int64(h.m.withDrops))
	})
	t.Logf("%d windows ended, %d with drops", windows.Load(), withDrops.Load())
	assert.Positive(t, windows.Load()-withDrops.Load(), "windows that ended on latencies")
	assert.Positive(t, withDrops.Load(), "windows that ended with drops")
}

// FuzzAdaptiveBulkhead drives the adaptive limit and its model with the
// arrivals, completions and passing time the input spells out, three bytes
// a step, and checks that they agree and the limit stays in its bounds.
func FuzzAdaptiveBulkhead(f *testing.F) {
	f.Add([]byte{1, 0, 0, 1, 0, 0, 0, 10, 0, 3, 0, 0, 3, 0, 0, 0, 20, 0, 2, 1, 0})
	f.Add([]byte{1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 100, 0, 3, 0, 1, 0, 1, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newLimitHarness(WithLimits(1, 4, 30), WithWindow(5*time.Millisecond), WithAdaptiveMinSamples(2),
			WithMaxHealthyLatency(40*time.Millisecond))
		for i := 0; i+2 < len(data); i += 3 {
			if err := h.step(data[i], uint16(data[i+1])<<8|uint16(data[i+2])); err != nil {
				t.Fatal(err)
			}
		}
	})
}
