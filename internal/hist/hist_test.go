package hist

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"
)

// Every duration falls in a bucket whose upper bound is at least the
// duration and at most 1/16 above it, and buckets are in order.
func TestBucketBounds(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		d := time.Duration(rapid.Int64Range(0, 1<<topBits-1).Draw(rt, "d"))
		b := Bucket(d)
		if b < 0 || b >= Buckets {
			rt.Fatalf("Bucket(%d) = %d, out of [0, %d)", d, b, Buckets)
		}
		u := Upper(b)
		if u < d || float64(u) > float64(d)*17/16+1 {
			rt.Fatalf("Upper(Bucket(%d)) = %d", d, u)
		}
		if b > 0 && Upper(b-1) >= d {
			rt.Fatalf("%d also fits bucket %d, below %d", d, b-1, b)
		}
	})
	assert.Equal(t, Buckets-1, Bucket(time.Hour), "longer than the last bound")
	assert.Equal(t, 0, Bucket(-time.Second), "negative counts as 0")
}

// Quantile answers the bucket of the exact quantile of the durations added.
func TestQuantileMatchesSortedSamples(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ds := rapid.SliceOfN(rapid.Int64Range(0, int64(time.Minute)), 1, 300).Draw(rt, "ds")
		q := rapid.Float64Range(0, 1).Draw(rt, "q")
		var h Hist
		for _, d := range ds {
			h.Add(time.Duration(d))
		}
		slices.Sort(ds)
		rank := max(int(math.Ceil(q*float64(len(ds)))), 1)
		want := Upper(Bucket(time.Duration(ds[rank-1])))
		if got := h.Quantile(q); got != want {
			rt.Fatalf("Quantile(%v) of %d samples = %v, want %v (sample %v)", q, len(ds), got, want, time.Duration(ds[rank-1]))
		}
	})
	var h Hist
	assert.Zero(t, h.Quantile(0.5), "empty")
}

// A window counts what was added in its span, drops slots as they age, and
// a merge and a sub undo each other.
func TestWindowAges(t *testing.T) {
	w := NewWindow(4*time.Second, 4)
	sec := int64(time.Second)
	w.Add(0, time.Millisecond)
	w.Add(sec, 2*time.Millisecond)
	w.Add(3*sec, 3*time.Millisecond)
	assert.Equal(t, uint64(3), w.Count())
	assert.Equal(t, Upper(Bucket(3*time.Millisecond)), w.Quantile(1))
	assert.False(t, w.Rotate(3*sec+1))
	assert.True(t, w.Rotate(4*sec), "slot 0 ages out")
	assert.Equal(t, uint64(2), w.Count())
	assert.Equal(t, 5*sec, w.Next())
	w.Rotate(6 * sec)
	assert.Equal(t, uint64(1), w.Count(), "slots 0 to 2 aged out")
	w.Rotate(100 * sec)
	assert.Zero(t, w.Count(), "everything aged out")
	assert.Zero(t, w.Quantile(0.5))

	var a, b Hist
	a.Add(time.Second)
	b.Add(time.Millisecond)
	a.Merge(&b)
	assert.Equal(t, uint64(2), a.Count())
	a.Sub(&b)
	assert.Equal(t, uint64(1), a.Count())
	assert.Equal(t, Upper(Bucket(time.Second)), a.Quantile(0))
}

func BenchmarkAdd(b *testing.B) {
	var h Hist
	b.ReportAllocs()
	for b.Loop() {
		h.Add(12 * time.Millisecond)
	}
}

func BenchmarkQuantile(b *testing.B) {
	var h Hist
	for i := range 10000 {
		h.Add(time.Duration(i) * time.Microsecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Quantile(0.999)
	}
}

// A total ahead of the buckets, as an Add under way leaves it, reads as the
// lowest duration counted, or 0 for none.
func TestQuantileOfAnAddUnderWay(t *testing.T) {
	var h Hist
	h.n.Store(3)
	assert.Zero(t, h.Quantile(0.5), "no bucket counted yet")
	h.counts[Bucket(time.Second)].Store(1)
	assert.Equal(t, Upper(Bucket(time.Second)), h.Quantile(0.5))
}
