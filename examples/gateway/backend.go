package main

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The orders backend's waves: every wavePeriod, counted from the start of
// the run, it is slow and failing from waveStart to waveEnd, recovering
// until recovered, and normal the rest of the time.
const (
	wavePeriod = 5 * time.Second
	waveStart  = 1 * time.Second
	waveEnd    = 3 * time.Second
	recovered  = 4 * time.Second
)

// phase is the state of a backend at a moment of its wave.
type phase int

const (
	normal     phase = iota // answers in 1-3ms; the flaky backend fails 1% with 503
	failing                 // 40% take 300-600ms, 30% get a 503, 15% a 500
	recovering              // answers in 20-80ms; 10% get a 503
)

// phaseAt returns the phase of the wave at d since its start.
func phaseAt(d time.Duration) phase {
	switch t := d % wavePeriod; {
	case t >= waveStart && t < waveEnd:
		return failing
	case t >= waveEnd && t < recovered:
		return recovering
	}
	return normal
}

// backend is an embedded service that answers GET /<name>/<id> with a
// small JSON document. A healthy one is always in the normal phase; a flaky
// one goes through the waves. Its choices come from a generator seeded by
// the run's seed and its name, so that a run with the same seed sees the
// same mix.
type backend struct {
	name     string
	flaky    bool
	start    time.Time // of the waves
	requests atomic.Int64

	mu  sync.Mutex
	rng *rand.Rand
}

func newBackend(name string, flaky bool, start time.Time, seed uint64) *backend {
	return &backend{name: name, flaky: flaky, start: start, rng: rand.New(rand.NewPCG(seed, hashOf(name)))}
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	ph := normal
	if b.flaky {
		ph = phaseAt(time.Since(b.start))
	}
	b.mu.Lock()
	x, y := b.rng.Float64(), b.rng.Float64()
	b.mu.Unlock()

	status, delay := http.StatusOK, millis(1+2*y)
	switch ph {
	case normal:
		if b.flaky && x < 0.01 {
			status = http.StatusServiceUnavailable
		}
	case failing:
		switch {
		case x < 0.40:
			delay = millis(300 + 300*y)
		case x < 0.70:
			status = http.StatusServiceUnavailable
		case x < 0.85:
			status = http.StatusInternalServerError
		}
	case recovering:
		delay = millis(20 + 60*y)
		if x < 0.10 {
			status = http.StatusServiceUnavailable
		}
	}
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if !sleep(r.Context(), delay) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct { //nolint:errcheck // the client may have gone
		ID      string `json:"id"`
		Backend string `json:"backend"`
	}{strings.TrimPrefix(r.URL.Path, "/"+b.name+"/"), b.name})
}

// sleep waits for d, and reports whether it did before ctx was done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func millis(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// hashOf returns a seed for the generator of s.
func hashOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s)) //nolint:errcheck // a hash.Hash never fails
	return h.Sum64()
}
