package retry

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// FuzzBudget drives a Budget with the calls, retries, refunds, bursts of
// concurrent calls and clock advances the input spells out, of any length
// to the nanosecond, and checks after each: the retries that happened never
// pass ratio·calls + minPerSecond·(1 + seconds elapsed); the pool and the
// floor are never negative, and never more than their caps, refunds
// included; no more than the cap and the floor's minPerSecond are allowed at
// once; and each step does what budgetModel does from the same state, up to
// the floor's rounding.
func FuzzBudget(f *testing.F) {
	f.Add([]byte{4, 2, 0, 3, 1, 0, 1, 0, 1, 0, 2, 0, 1, 0, 3, 5, 1, 0})
	f.Add([]byte{7, 0, 0, 15, 0, 15, 5, 31, 2, 0, 2, 0, 5, 31})
	f.Add([]byte{1, 6, 5, 200, 27, 3, 5, 200, 4, 7, 19, 255, 1, 0})
	f.Add([]byte{3, 3, 4, 7, 4, 7, 35, 1, 4, 7, 2, 0, 5, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		synctest.Test(t, func(t *testing.T) { fuzzBudget(t, data) })
	})
}

// fuzzUnits are the units of a fuzzed clock advance.
var fuzzUnits = []time.Duration{1, time.Microsecond, time.Millisecond, time.Second / 512, time.Second / 3, time.Second, time.Minute}

func fuzzBudget(t *testing.T, data []byte) {
	ratio := []float64{0, 1e-6, 0.000249, 0.1, 0.2, 1.0 / 3, 1, 2.5, 1000}[int(data[0])%9]
	minPerSecond := []int{0, 1, 2, 3, 10, 100, 1_000_000}[int(data[1])%7]
	if ratio == 0 && minPerSecond == 0 {
		minPerSecond = 1
	}
	data = data[2:]
	start := time.Now()
	b := NewBudget(ratio, minPerSecond)
	// The model deposits what the budget does: ratio in whole micro-tokens,
	// rounded down. The bound below uses ratio itself.
	m := newBudgetModel(ratio, minPerSecond)
	m.ratio = b.ratio
	if want := math.Round(ratio * micro); float64(m.ratio) > want || float64(m.ratio) < want-1 {
		t.Fatalf("NewBudget(%v, %d) deposits %d µtokens a call", ratio, minPerSecond, m.ratio)
	}
	if b.capacity != m.capacity {
		t.Fatalf("NewBudget(%v, %d) saves up to %d µtokens, want %d", ratio, minPerSecond, b.capacity, m.capacity)
	}

	var (
		calls, allowed, refunded int64
		atOnce                   int64 // retries allowed since the last deposit, refund or clock advance
	)
	capTokens := m.capacity/micro + int64(minPerSecond)
	// tol is the floor's rounding, in nano-tokens: a float64 of at most
	// minPerSecond, refilled and spent one step at a time.
	tol := 2 + float64(minPerSecond)/1e5

	// resync makes the model's floor the budget's, as the budget holds it
	// at now, to the nano-token.
	resync := func() {
		_, floor := budgetState(b, time.Now())
		m.floor, m.at = int64(math.Round(floor*nano)), time.Since(start)
	}
	check := func(step string) {
		t.Helper()
		now := time.Since(start)
		pool, floor := budgetState(b, time.Now())
		m.refill(now)
		if pool < 0 || floor < 0 {
			t.Fatalf("%s: pool %d µtokens, floor %v tokens: negative", step, pool, floor)
		}
		if balance := b.deposits.Sum() - b.spent; balance < 0 {
			t.Fatalf("%s: deposits less spent %d µtokens: negative", step, balance)
		}
		if floor > float64(minPerSecond) {
			t.Fatalf("%s: floor %v tokens, more than %d", step, floor, minPerSecond)
		}
		if pool != m.pool {
			t.Fatalf("%s: pool %d µtokens, model %d", step, pool, m.pool)
		}
		if d := math.Abs(floor*nano - float64(m.floor)); d > tol {
			t.Fatalf("%s: floor %v tokens, model %v", step, floor, float64(m.floor)/nano)
		}
		bound := ratio*float64(calls) + float64(minPerSecond)*(1+now.Seconds())
		if retries := allowed - refunded; float64(retries) > bound*(1+1e-9)+1e-6 {
			t.Fatalf("%s: %d retries of %d calls in %v: more than %v", step, retries, calls, now, bound)
		}
		if atOnce > capTokens {
			t.Fatalf("%s: %d retries allowed at once, more than the cap of %d and the floor", step, atOnce, capTokens)
		}
		resync()
	}
	withdraw := func() {
		t.Helper()
		m.refill(time.Since(start))
		pool, floor := m.pool, float64(m.floor)
		want := m.withdraw(time.Since(start))
		got := b.withdraw()
		if got != want {
			// Only the floor's rounding may tell them apart, on the edge of
			// a whole token; the pool is exact.
			if pool >= micro || math.Abs(floor-nano) > tol {
				t.Fatalf("withdraw: %v, model %v (pool %d µtokens, floor %v tokens)", got, want, pool, floor/nano)
			}
			resync()
		}
		if got {
			allowed++
			atOnce++
		}
	}

	for len(data) >= 2 {
		op, arg := data[0], data[1]
		data = data[2:]
		switch op % 6 {
		case 0: // calls
			for range int(arg%16) + 1 {
				b.deposit()
				m.deposit()
				calls++
			}
			atOnce = 0
		case 1: // a retry
			withdraw()
		case 2: // a refund of a retry that did not happen
			if allowed == refunded {
				continue
			}
			b.refund()
			m.refund()
			refunded++
			atOnce = 0
		case 3: // time passes
			if d := time.Duration(arg) * fuzzUnits[int(op>>3)%len(fuzzUnits)]; d > 0 {
				time.Sleep(d)
				atOnce = 0
			}
		case 4: // concurrent calls, each retrying once
			n := int64(arg%8) + 2
			pool, floor := m.pool, m.floor
			var got atomic.Int64
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					b.deposit()
					if b.withdraw() {
						got.Add(1)
					}
				})
			}
			wg.Wait()
			calls += n
			allowed += got.Load()
			atOnce = 0 // the calls deposited
			// No more than the tokens there were and the calls deposited, and
			// no fewer than those there were, unless every call retried.
			most := (pool + n*m.ratio) / micro
			if m.perSec > 0 {
				most += int64((float64(floor) + tol) / nano)
			}
			least := min(n, pool/micro+int64(max(float64(floor)-tol, 0)/nano))
			if g := got.Load(); g > most || g < least {
				t.Fatalf("%d concurrent calls: %d retries allowed, want [%d, %d]", n, g, least, most)
			}
			after, floorAfter := budgetState(b, time.Now())
			if pool+n*m.ratio <= m.capacity { // nothing was forgotten past the cap
				fromPool := pool + n*m.ratio - after
				fromFloor := math.Round((float64(floor) - floorAfter*nano) / nano)
				if fromPool%micro != 0 || fromPool/micro+int64(fromFloor) != got.Load() {
					t.Fatalf("%d concurrent calls: %d retries allowed, but %d µtokens left the pool and %v tokens the floor",
						n, got.Load(), fromPool, fromFloor)
				}
			}
			m.pool = after
			resync()
		case 5: // a burst of retries
			for range int(arg%32) + 1 {
				withdraw()
			}
		}
		check([]string{"calls", "retry", "refund", "sleep", "concurrent calls", "retries"}[op%6])
	}
}
