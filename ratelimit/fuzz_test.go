package ratelimit

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// bucketModel is a token bucket as the textbook states it, in integers: its
// credit, in nanoseconds of refill, grows with time up to limit (burst
// intervals: a full bucket), and a token costs interval of it. A token
// reserved ahead of time takes the credit below zero; it is due when the
// credit is back at zero. A token given back returns its interval of
// credit, up to a full bucket.
type bucketModel struct {
	interval, limit int64
	credit          int64
	at              int64 // when credit was last brought up to date
}

func newBucketModel(interval int64, burst int) *bucketModel {
	limit := int64(math.MaxInt64) // burst·interval past int64: no limit
	if int64(burst) <= math.MaxInt64/interval {
		limit = int64(burst) * interval
	}
	return &bucketModel{interval: interval, limit: limit, credit: limit}
}

// creditAt returns the credit at t, at or after the last update.
func (m *bucketModel) creditAt(t int64) int64 {
	if dt := t - m.at; dt < m.limit-m.credit {
		return m.credit + dt
	}
	return m.limit
}

func (m *bucketModel) advance(t int64) { m.credit, m.at = m.creditAt(t), t }

// take takes a token at t, or reserves one due within maxWait, and returns
// how long from t until it is due; when none is due within maxWait it takes
// nothing and returns the wait with false.
func (m *bucketModel) take(t, maxWait int64) (int64, bool) {
	m.advance(t)
	wait := m.interval - m.credit
	if wait > maxWait {
		return wait, false
	}
	m.credit -= m.interval
	return max(wait, 0), true
}

func (m *bucketModel) giveBack(t int64) {
	m.advance(t)
	if m.credit > m.limit-m.interval {
		m.credit = m.limit
	} else {
		m.credit += m.interval
	}
}

func (m *bucketModel) wait(t int64) int64 { return max(m.interval-m.creditAt(t), 0) }

func (m *bucketModel) full(t int64) bool { return m.creditAt(t) == m.limit }

// checkDue fails t if some interval between two due times holds more than
// length/interval + burst of them, as no interval may.
func checkDue(t interface{ Fatalf(string, ...any) }, due []int64, interval int64, burst int) {
	if burst >= len(due) {
		return
	}
	due = slices.Clone(due)
	slices.Sort(due)
	for i := range due {
		for j := i + burst; j < len(due); j++ {
			if n := int64(j - i + 1); (n-int64(burst))*interval > due[j]-due[i] {
				t.Fatalf("%d tokens due between %dns and %dns: more than %d plus one every %dns", n, due[i], due[j], burst, interval)
			}
		}
	}
}

// FuzzGCRA drives a bucket with the takes, waits, give-backs, concurrent
// takes and clock advances the input spells out, and checks each result
// against bucketModel: the same wait and verdict for every take, the same
// wait and fullness at every query.
//
// A token is given back only when it is the latest taken and not yet due;
// the model says which, and the bucket must agree. Over the whole run, no
// interval of length T holds more than T/interval + burst of the tokens
// taken and not given back, counted at their due times.
func FuzzGCRA(f *testing.F) {
	f.Add([]byte{3, 2, 1, 0, 1, 0, 1, 0, 9, 1, 2, 0, 1, 4, 0, 3, 3, 0})
	f.Add([]byte{2, 4, 4, 3, 12, 9, 12, 9, 2, 1, 0, 1, 3, 5, 9, 20})
	f.Add([]byte{6, 250, 1, 0, 1, 0, 8, 255, 3, 0})
	f.Add([]byte{0, 0, 1, 0, 1, 7, 1, 7, 2, 0, 8, 3, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		synctest.Test(t, func(t *testing.T) { fuzzGCRA(t, data) })
	})
}

func fuzzGCRA(t *testing.T, data []byte) {
	interval := []int64{1, 7, 1000, 250_000_000, 333_333_333, 1_000_000_000, 1_000_000_000_000}[int(data[0])%7] *
		int64(data[0]/7%4+1)
	burst := int(data[1]%16) + 1
	if data[1] >= 0xF0 {
		burst = math.MaxInt // burst·interval at or past the range of int64
	}
	data = data[2:]
	var g gcra
	g.init(time.Duration(interval), burst)
	m := newBucketModel(interval, burst)
	start := time.Now()

	var (
		due  []int64 // of the tokens taken and not given back, in the order taken
		next []int64 // the tat each of them set
	)
	// units are those of a clock advance or a maximum wait.
	units := []int64{1, max(interval/8, 1), interval, int64(time.Millisecond), int64(time.Second)}

	for len(data) >= 2 {
		op, arg := data[0], data[1]
		data = data[2:]
		unit := units[int(op>>3)%len(units)]
		now := int64(time.Since(start))
		switch op % 5 {
		case 0: // time passes
			if now < 1<<61 {
				time.Sleep(time.Duration(int64(arg) * unit))
			}
		case 1: // a take
			if op&0x80 != 0 { // as Allow takes: now or never
				ok := g.takeNow(start)
				if _, wantOK := m.take(now, 0); ok != wantOK {
					t.Fatalf("takeNow at %dns: %v; model %v", now, ok, wantOK)
				}
				if ok {
					due, next = append(due, now), append(next, g.tat.Load())
				}
				continue
			}
			maxWait := int64(arg) * unit
			wait, n, ok := g.take(start, maxWait)
			wantWait, wantOK := m.take(now, maxWait)
			if wait != wantWait || ok != wantOK {
				t.Fatalf("take at %dns within %dns: %d, %v; model %d, %v", now, maxWait, wait, ok, wantWait, wantOK)
			}
			if ok {
				due, next = append(due, now+wait), append(next, n)
			}
		case 2: // a token given back
			if len(due) == 0 {
				continue
			}
			k := len(due) - 1 - int(arg)%len(due)
			want := k == len(due)-1 && due[k] > now
			if got := g.cancel(now, next[k]); got != want {
				t.Fatalf("cancel at %dns of token %d of %d, due at %dns: %v, want %v", now, k, len(due), due[k], got, want)
			}
			if want {
				due, next = due[:k], next[:k]
				m.giveBack(now)
			}
		case 3: // the wait and fullness, now or later
			at := now + int64(arg)*unit
			if got, want := g.wait(at), m.wait(at); got != want {
				t.Fatalf("wait at %dns (now %dns): %d, model %d", at, now, got, want)
			}
			if got, want := g.full(at), m.full(at); got != want {
				t.Fatalf("full at %dns (now %dns): %v, model %v", at, now, got, want)
			}
		case 4: // concurrent takes, all within the same maxWait
			n := int(arg%4) + 2
			maxWait := int64(arg>>2) * unit
			type result struct {
				wait, next int64
				ok         bool
			}
			got, want := make([]result, n), make([]result, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					w, n, ok := g.take(start, maxWait)
					got[i] = result{w, n, ok}
				})
			}
			wg.Wait()
			for i := range n {
				w, ok := m.take(now, maxWait)
				want[i] = result{wait: w, ok: ok}
			}
			// Identical takes at the same time: whatever their order, the
			// same results.
			order := func(a, b result) int {
				if a.ok != b.ok {
					return cmp.Compare(btoi(a.ok), btoi(b.ok))
				}
				return cmp.Compare(a.wait, b.wait)
			}
			slices.SortFunc(got, order)
			slices.SortFunc(want, order)
			same := len(got) == len(want)
			for i := range got {
				same = same && got[i].wait == want[i].wait && got[i].ok == want[i].ok
			}
			if !same {
				t.Fatalf("%d concurrent takes at %dns within %dns: %v; model %v", n, now, maxWait, got, want)
			}
			for _, r := range got { // in the order taken: the later, the longer the wait
				if r.ok {
					due, next = append(due, now+r.wait), append(next, r.next)
				}
			}
		}
	}
	checkDue(t, due, interval, burst)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
