package retry_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/retry"
)

type strategy struct {
	name string
	make func(base, maxDelay time.Duration) retry.Backoff
}

var strategies = []strategy{
	{"Exponential", retry.Exponential},
	{"FullJitter", retry.FullJitter},
	{"EqualJitter", retry.EqualJitter},
	{"DecorrelatedJitter", retry.DecorrelatedJitter},
}

// Every strategy's wait is within [0, maxDelay] (and at least base for the
// decorrelated one), at any attempt, with any previous wait.
func TestDelaysStayWithinBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.SampledFrom(strategies).Draw(t, "strategy")
		base := time.Duration(rapid.Int64Range(1, math.MaxInt64).Draw(t, "base"))
		maxDelay := time.Duration(rapid.Int64Range(int64(base), math.MaxInt64).Draw(t, "maxDelay"))
		attempt := rapid.IntRange(1, math.MaxInt).Draw(t, "attempt")
		prev := time.Duration(rapid.Int64Range(0, math.MaxInt64).Draw(t, "prev"))
		d := s.make(base, maxDelay).Delay(attempt, prev)
		if d < 0 || d > maxDelay {
			t.Fatalf("%s(%v, %v).Delay(%d, %v) = %v: outside [0, %v]", s.name, base, maxDelay, attempt, prev, d, maxDelay)
		}
		if s.name == "DecorrelatedJitter" && d < base {
			t.Fatalf("DecorrelatedJitter(%v, %v).Delay(%d, %v) = %v: below base", base, maxDelay, attempt, prev, d)
		}
		if c := retry.Constant(base).Delay(attempt, prev); c != base {
			t.Fatalf("Constant(%v).Delay = %v", base, c)
		}
	})
}

// Exponential waits never shrink with the attempt number, and double until
// they reach the ceiling.
func TestExponentialIsMonotone(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := time.Duration(rapid.Int64Range(1, int64(time.Hour)).Draw(t, "base"))
		maxDelay := time.Duration(rapid.Int64Range(int64(base), math.MaxInt64).Draw(t, "maxDelay"))
		b := retry.Exponential(base, maxDelay)
		prev := time.Duration(0)
		for n := 1; n <= 70; n++ {
			d := b.Delay(n, 0)
			if d < prev {
				t.Fatalf("Delay(%d) = %v < Delay(%d) = %v", n, d, n-1, prev)
			}
			if prev > 0 && d != maxDelay && d != 2*prev {
				t.Fatalf("Delay(%d) = %v, want twice %v or the ceiling %v", n, d, prev, maxDelay)
			}
			prev = d
		}
		if prev != maxDelay {
			t.Fatalf("Delay(70) = %v, want the ceiling %v", prev, maxDelay)
		}
	})
}

// The jittered strategies grow in expectation: the mean wait of 2000 draws
// rises with the attempt number until the ceiling, where it levels off.
func TestJitteredWaitsGrowInExpectation(t *testing.T) {
	mean := func(b retry.Backoff, attempt int) time.Duration {
		var sum time.Duration
		for range 2000 {
			sum += b.Delay(attempt, 0)
		}
		return sum / 2000
	}
	for _, s := range []strategy{strategies[1], strategies[2]} {
		b := s.make(100*time.Millisecond, 10*time.Second)
		last := time.Duration(0)
		for n := 1; n <= 7; n++ { // 100ms·2^6 = 6.4s: below the ceiling
			m := mean(b, n)
			assert.Greater(t, m, last, "%s: mean wait of attempt %d", s.name, n)
			last = m
		}
		atCeiling := mean(b, 20)
		assert.InDelta(t, float64(mean(b, 40)), float64(atCeiling), float64(atCeiling)/10, "%s levels off at the ceiling", s.name)
	}
	// Decorrelated jitter: each draw grows from the last one. Over 2000
	// sequences, the mean of the first draw is below that of the fifth.
	b := retry.DecorrelatedJitter(100*time.Millisecond, 10*time.Second)
	var first, fifth time.Duration
	for range 2000 {
		var prev time.Duration
		for i := 1; i <= 5; i++ {
			prev = b.Delay(i, prev)
			switch i {
			case 1:
				first += prev
			case 5:
				fifth += prev
			}
		}
	}
	assert.Greater(t, fifth/2000, first/2000, "decorrelated waits climb from base in expectation")
}

func TestBackOffAdapter(t *testing.T) {
	bo := retry.Exponential(time.Second, 5*time.Second).BackOff()
	var got []time.Duration
	for range 5 {
		got = append(got, bo.NextBackOff())
	}
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}, got)
	bo.Reset()
	assert.Equal(t, time.Second, bo.NextBackOff(), "after Reset")

	dj := retry.DecorrelatedJitter(time.Second, time.Minute).BackOff()
	for range 50 {
		d := dj.NextBackOff()
		assert.GreaterOrEqual(t, d, time.Second)
		assert.LessOrEqual(t, d, time.Minute)
	}
}

func TestZeroBackoffWaitsNothing(t *testing.T) {
	var b retry.Backoff
	assert.Zero(t, b.Delay(5, time.Second))
}
