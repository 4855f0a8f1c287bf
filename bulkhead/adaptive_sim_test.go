package bulkhead

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// server is a simulated dependency with a knee: up to capacity calls at
// once each take base (lognormal, σ 0.1); past it they contend, so each
// takes base·(n/capacity)^1.5 for n calls in flight, and the server does
// less the more calls it is given. A call that would take longer than
// deadline is dropped at the deadline, its work wasted.
type server struct {
	base, deadline time.Duration
	capacity       func(now time.Duration) float64
}

// limiter is what the simulation drives: the adaptive bulkhead's core, or
// a fixed limit.
type limiter interface {
	acquire() bool
	complete(now int64, lat time.Duration, o outcome)
	current() int64
}

func (a *AdaptiveBulkhead) current() int64 { return a.limit.Load() }

// static is a fixed limit.
type static struct{ limit, inflight int64 }

func (s *static) acquire() bool {
	if s.inflight >= s.limit {
		return false
	}
	s.inflight++
	return true
}
func (s *static) complete(int64, time.Duration, outcome) { s.inflight-- }
func (s *static) current() int64                         { return s.limit }

type completion struct {
	at, took time.Duration
	dropped  bool
}

// completions is a min-heap of completions by time.
type completions []completion

func (c *completions) push(x completion) {
	h := append(*c, x)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	*c = h
}

func (c *completions) pop() completion {
	h := *c
	x := h[0]
	h[0] = h[len(h)-1]
	h = h[:len(h)-1]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && h[l].at < h[m].at {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].at < h[m].at {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*c = h
	return x
}

// run is one simulation's record: goodput (calls done within the
// deadline) per tick, and the limit at each tick's end.
type run struct {
	tick   time.Duration
	good   []int
	limits []int64
}

// goodput returns the calls done within the deadline per second from from
// to to.
func (r *run) goodput(from, to time.Duration) float64 {
	n := 0
	for i := int(from / r.tick); i < int(to/r.tick) && i < len(r.good); i++ {
		n += r.good[i]
	}
	return float64(n) / (to - from).Seconds()
}

// limitsBetween returns the lowest and highest limit from from to to.
func (r *run) limitsBetween(from, to time.Duration) (lo, hi int64) {
	lo = math.MaxInt64
	for i := int(from / r.tick); i < int(to/r.tick) && i < len(r.limits); i++ {
		lo, hi = min(lo, r.limits[i]), max(hi, r.limits[i])
	}
	return lo, hi
}

// settled returns how long after from the limit entered [lo, hi] to stay
// there until to.
func (r *run) settled(from, to time.Duration, lo, hi float64) time.Duration {
	last := from
	for i := int(from / r.tick); i < int(to/r.tick) && i < len(r.limits); i++ {
		if l := float64(r.limits[i]); l < lo || l > hi {
			last = time.Duration(i+1) * r.tick
		}
	}
	return last - from
}

// simulate sends calls to s through l for length of simulated time, as a
// Poisson stream of rate calls a second, seeded.
func simulate(l limiter, s server, rate float64, length time.Duration, seed uint64) *run {
	rng := rand.New(rand.NewPCG(seed, 1))
	r := &run{tick: 100 * time.Millisecond}
	r.good = make([]int, length/r.tick+1)
	r.limits = make([]int64, length/r.tick+1)
	var pending completions
	var inflight int
	next := time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
	for now := time.Duration(0); now < length; {
		if len(pending) > 0 && pending[0].at <= next {
			c := pending.pop()
			now = c.at
			inflight--
			o := success
			if c.dropped {
				o = dropped
			} else {
				r.good[now/r.tick]++
			}
			l.complete(int64(now), c.took, o)
		} else {
			now = next
			next += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
			if l.acquire() {
				inflight++
				took := time.Duration(float64(s.base) * math.Exp(0.1*rng.NormFloat64()) *
					math.Pow(max(1, float64(inflight)/s.capacity(now)), 1.5))
				c := completion{at: now + took, took: took}
				if took > s.deadline {
					c = completion{at: now + s.deadline, took: s.deadline, dropped: true}
				}
				pending.push(c)
			}
		}
		r.limits[now/r.tick] = l.current()
	}
	return r
}

// bestStatic returns the goodput of the best of fixed limits from 5 to
// 200 over 6 seconds of the same traffic, the first left out.
func bestStatic(s server, rate float64) (best float64, at int64) {
	for _, limit := range []int64{5, 10, 20, 30, 40, 50, 60, 70, 80, 100, 150, 200} {
		if g := simulate(&static{limit: limit}, s, rate, 6*time.Second, 1).goodput(time.Second, 6*time.Second); g > best {
			best, at = g, limit
		}
	}
	return best, at
}

// An overloaded server with a knee at 50 calls: the limit converges near
// the knee within seconds, stays there, and the goodput is at least 90 %
// of the best fixed limit's.
func TestAdaptiveConvergesToTheKnee(t *testing.T) {
	s := server{base: 10 * time.Millisecond, deadline: 40 * time.Millisecond,
		capacity: func(time.Duration) float64 { return 50 }}
	const rate = 2 * 50 / 0.010 // twice what the server can do
	const length = 30 * time.Second
	a := Adaptive()
	r := simulate(a, s, rate, length, 1)
	lo, hi := r.limitsBetween(5*time.Second, length)
	t.Logf("limit from 5s on: %d to %d; baseline %v", lo, hi, a.v.baseline)
	assert.GreaterOrEqual(t, lo, int64(45), "limit near the knee of 50")
	assert.LessOrEqual(t, hi, int64(70), "limit near the knee of 50")
	best, at := bestStatic(s, rate)
	got := r.goodput(5*time.Second, length)
	t.Logf("goodput %.0f/s; best fixed limit %d: %.0f/s", got, at, best)
	assert.GreaterOrEqual(t, got, 0.9*best, "goodput against the best fixed limit, %d", at)
}

// The server's capacity halves for a while, then comes back: the limit
// follows it down and up, and the goodput of each stretch is at least
// 90 % of the best fixed limit's for it.
func TestAdaptiveFollowsCapacity(t *testing.T) {
	capacity := func(now time.Duration) float64 {
		if now >= 20*time.Second && now < 40*time.Second {
			return 30
		}
		return 60
	}
	s := server{base: 10 * time.Millisecond, deadline: 40 * time.Millisecond, capacity: capacity}
	const rate = 2 * 60 / 0.010
	const length = 60 * time.Second
	a := Adaptive()
	r := simulate(a, s, rate, length, 2)
	for _, tt := range []struct {
		from, to time.Duration
		knee     int64
	}{
		{5 * time.Second, 20 * time.Second, 60},
		{25 * time.Second, 40 * time.Second, 30},
		{45 * time.Second, 60 * time.Second, 60},
	} {
		took := r.settled(tt.from-5*time.Second, tt.to, 0.9*float64(tt.knee), 1.4*float64(tt.knee))
		t.Logf("%v to %v: the limit settled within [0.9, 1.4] × the knee %v after the change", tt.from-5*time.Second, tt.to, took)
		assert.LessOrEqual(t, took, 5*time.Second, "the limit follows a change of capacity within seconds")
		lo, hi := r.limitsBetween(tt.from, tt.to)
		t.Logf("%v to %v: limit %d to %d, knee %d", tt.from, tt.to, lo, hi, tt.knee)
		assert.GreaterOrEqual(t, float64(lo), 0.9*float64(tt.knee), "%v to %v", tt.from, tt.to)
		assert.LessOrEqual(t, float64(hi), 1.4*float64(tt.knee), "%v to %v", tt.from, tt.to)
		got := r.goodput(tt.from, tt.to)
		best, at := bestStatic(server{base: s.base, deadline: s.deadline,
			capacity: func(time.Duration) float64 { return float64(tt.knee) }}, rate)
		t.Logf("%v to %v: goodput %.0f/s; best fixed limit %d: %.0f/s", tt.from, tt.to, got, at, best)
		assert.GreaterOrEqual(t, got, 0.9*best, "%v to %v", tt.from, tt.to)
	}
}

// Two minutes of overload at three times the server's capacity: the limit
// stays near the knee and does not creep upward, and the baseline stays
// the latency without load (a baseline that followed the latency would
// take the overload for normal, and let the limit rise).
func TestAdaptiveSustainedOverloadDoesNotDrift(t *testing.T) {
	s := server{base: 10 * time.Millisecond, deadline: 40 * time.Millisecond,
		capacity: func(time.Duration) float64 { return 40 }}
	const length = 120 * time.Second
	a := Adaptive()
	r := simulate(a, s, 3*40/0.010, length, 3)
	lo, hi := r.limitsBetween(5*time.Second, length)
	_, early := r.limitsBetween(5*time.Second, 15*time.Second)
	_, late := r.limitsBetween(length-10*time.Second, length)
	noLoad := time.Duration(float64(s.base) * math.Exp(0.1*1.2816)) // p90 of the lognormal
	t.Logf("limit %d to %d over %v, %d early, %d late; baseline %v, p90 without load %v", lo, hi, length, early, late, a.v.baseline, noLoad)
	assert.LessOrEqual(t, float64(hi), 1.4*40, "limit during %v of overload, knee 40", length)
	assert.LessOrEqual(t, late, early, "limit at the end against early on")
	assert.InDelta(t, float64(noLoad), float64(a.v.baseline), 0.1*float64(noLoad), "baseline after %v of overload", length)
}
