package hedge

import (
	"math"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/hist"
)

// The hedger's latencies and a plain model, the list of every latency with
// its time, agree on the quantile over random sequences of latencies and
// clock advances: the hedger's is the upper bound of the bucket that holds
// the model's exact quantile, at most 6.25% above it, and unknown while the
// window holds fewer than 100 latencies or all have aged out.
func TestLatenciesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		q := rapid.SampledFrom([]float64{0.5, 0.9, 0.95, 0.99, 0.9999}).Draw(rt, "q")
		const window = 4 * time.Second
		width := window / parts
		l := newLatencies(q, window)
		type rec struct {
			part int64
			d    time.Duration
		}
		var recs []rec
		var now time.Duration
		for range rapid.IntRange(1, 400).Draw(rt, "steps") + 100 {
			if rapid.IntRange(0, 29).Draw(rt, "advance") == 0 {
				now += time.Duration(rapid.Int64Range(0, int64(3*time.Second)).Draw(rt, "by"))
			}
			d := time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(rt, "latency"))
			if rapid.Bool().Draw(rt, "short") {
				d %= 100 * time.Millisecond
			}
			l.record(now, d)
			recs = append(recs, rec{int64(now / width), d})
		}
		l.mu.Lock()
		l.compute()
		l.mu.Unlock()
		inWindow := func(now time.Duration) []time.Duration {
			var in []time.Duration
			for _, r := range recs {
				if r.part > int64(now/width)-parts {
					in = append(in, r.d)
				}
			}
			return in
		}
		in := inWindow(now)
		got, ok := l.quantile(now)
		if len(in) < minCount {
			if ok {
				rt.Fatalf("quantile %v known with %d latencies in the window", got, len(in))
			}
		} else {
			slices.Sort(in)
			exact := in[int(math.Ceil(q*float64(len(in))))-1]
			want := hist.Upper(hist.Bucket(exact))
			if !ok || got != want {
				rt.Fatalf("quantile %v (known %v), want %v, the bucket of the exact %v", got, ok, want, exact)
			}
			if float64(got) > float64(exact)*1.0625+16 {
				rt.Fatalf("quantile %v more than 6.25%% above the exact %v", got, exact)
			}
		}

		// Idle: the quantile stays until every latency has aged out.
		idle := now + time.Duration(rapid.Int64Range(0, int64(2*window)).Draw(rt, "idle"))
		later, okLater := l.quantile(idle)
		switch {
		case len(inWindow(idle)) == 0 && okLater:
			rt.Fatalf("quantile %v known %v after the last latency, with none left in the window", later, idle-now)
		case len(inWindow(idle)) > 0 && (okLater != ok || later != got):
			rt.Fatalf("quantile %v (known %v) %v later, was %v (known %v)", later, okLater, idle-now, got, ok)
		}
	})
}
