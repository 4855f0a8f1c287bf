package timeout

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/hist"
)

// timeoutModel is what an AdaptiveTimeout should answer, worked out the
// slow way: every latency kept with the slot it fell in, sorted for each
// reading.
type timeoutModel struct {
	q, mult    float64
	min, max   time.Duration
	minSamples int
	width      int64 // nanoseconds per slot
	epoch      int64 // the current slot
	samples    []sample
	pending    int
	cur        time.Duration
}

type sample struct {
	slot int64
	d    time.Duration
}

func newTimeoutModel(a *AdaptiveTimeout) *timeoutModel {
	return &timeoutModel{q: a.q, mult: a.mult, min: a.min, max: a.max, minSamples: int(a.minSamples),
		width: int64(a.window) / windowSlots, cur: a.max}
}

// rotate moves to the slot of now, forgets the samples that aged out, and
// reports whether a slot began.
func (m *timeoutModel) rotate(now int64) bool {
	e := now / m.width
	if e <= m.epoch {
		return false
	}
	m.epoch = e
	m.samples = slices.DeleteFunc(m.samples, func(s sample) bool { return s.slot <= e-windowSlots })
	return true
}

// value is the timeout the samples make.
func (m *timeoutModel) value() time.Duration {
	if len(m.samples) < m.minSamples {
		return m.max
	}
	ds := make([]time.Duration, len(m.samples))
	for i, s := range m.samples {
		ds[i] = s.d
	}
	slices.Sort(ds)
	rank := max(int(math.Ceil(m.q*float64(len(ds)))), 1)
	q := hist.Upper(hist.Bucket(ds[rank-1])) // the bucket's bound, as documented
	return min(max(time.Duration(float64(q)*m.mult), m.min), m.max)
}

func (m *timeoutModel) timeout(now int64) time.Duration {
	if m.rotate(now) {
		m.pending = 0
		m.cur = m.value()
	}
	return m.cur
}

func (m *timeoutModel) record(now int64, d time.Duration, timedOut bool) {
	rotated := m.rotate(now)
	m.samples = append(m.samples, sample{slot: m.epoch, d: d})
	m.pending++
	if rotated || timedOut || m.pending >= recalcEvery || len(m.samples) <= m.minSamples {
		m.pending = 0
		m.cur = m.value()
	}
}

// timeoutHarness runs an AdaptiveTimeout's core and its model side by
// side, on a clock of its own.
type timeoutHarness struct {
	a   *AdaptiveTimeout
	m   *timeoutModel
	now int64
}

// step does one thing to both, by op and arg, and says how they differ.
func (h *timeoutHarness) step(op byte, arg uint16) error {
	switch op % 3 {
	case 0: // time passes, up to 65s
		h.now += int64(arg) * int64(time.Millisecond)
	case 1: // a call succeeds after up to 6.5s
		d := time.Duration(arg) * 100 * time.Microsecond
		h.a.record(h.now, d, false)
		h.m.record(h.now, d, false)
	case 2: // a call times out at the current timeout
		d := h.m.timeout(h.now)
		h.a.record(h.now, h.a.timeout(h.now), true)
		h.m.record(h.now, d, true)
	}
	got, want := h.a.timeout(h.now), h.m.timeout(h.now)
	if got != want {
		return fmt.Errorf("at %v: timeout %v, model %v (%d samples)", time.Duration(h.now), got, want, len(h.m.samples))
	}
	if got < h.a.min || got > h.a.max {
		return fmt.Errorf("at %v: timeout %v out of [%v, %v]", time.Duration(h.now), got, h.a.min, h.a.max)
	}
	return nil
}

func newTimeoutHarness(opts ...AdaptiveOption) *timeoutHarness {
	a := Adaptive(opts...)
	return &timeoutHarness{a: a, m: newTimeoutModel(a), now: 0}
}

// The timeout agrees with the model over random latencies, timed-out
// calls and passing time, for random settings.
func TestAdaptiveModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		lo := time.Duration(rapid.IntRange(1, 100).Draw(rt, "minMs")) * time.Millisecond
		hi := lo + time.Duration(rapid.IntRange(0, 20000).Draw(rt, "spanMs"))*time.Millisecond
		h := newTimeoutHarness(
			WithQuantile(rapid.SampledFrom([]float64{0.5, 0.9, 0.99, 0.999, 1}).Draw(rt, "q")),
			WithMultiplier(rapid.Float64Range(1, 4).Draw(rt, "mult")),
			WithBounds(lo, hi),
			WithWindow(time.Duration(rapid.IntRange(1, 60).Draw(rt, "windowSeconds"))*time.Second),
			WithMinSamples(rapid.IntRange(1, 40).Draw(rt, "minSamples")))
		rt.Repeat(map[string]func(*rapid.T){
			"sleep": func(rt *rapid.T) {
				if err := h.step(0, uint16(rapid.IntRange(0, 20000).Draw(rt, "ms"))); err != nil {
					rt.Fatal(err)
				}
			},
			"success": func(rt *rapid.T) {
				if err := h.step(1, uint16(rapid.IntRange(0, 65535).Draw(rt, "latency100us"))); err != nil {
					rt.Fatal(err)
				}
			},
			"burst": func(rt *rapid.T) {
				base := rapid.IntRange(0, 60000).Draw(rt, "base100us")
				for i := range rapid.IntRange(1, 200).Draw(rt, "n") {
					if err := h.step(1, uint16(base+i%5000)); err != nil {
						rt.Fatal(err)
					}
				}
			},
			"timedOut": func(rt *rapid.T) {
				if err := h.step(2, 0); err != nil {
					rt.Fatal(err)
				}
			},
		})
	})
}

// FuzzAdaptiveTimeout drives the timeout and its model with the latencies,
// timeouts and passing time the input spells out, three bytes a step, and
// checks that they agree and the timeout stays in its bounds.
func FuzzAdaptiveTimeout(f *testing.F) {
	f.Add([]byte{1, 100, 0, 1, 100, 0, 2, 0, 0, 0, 0, 40})
	f.Add([]byte{1, 1, 0, 1, 2, 0, 1, 3, 0, 2, 0, 0, 2, 0, 0, 0, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newTimeoutHarness(WithMinSamples(3), WithBounds(time.Millisecond, 5*time.Second), WithWindow(12*time.Second))
		for i := 0; i+2 < len(data); i += 3 {
			if err := h.step(data[i], uint16(data[i+1])<<8|uint16(data[i+2])); err != nil {
				t.Fatal(err)
			}
		}
	})
}
