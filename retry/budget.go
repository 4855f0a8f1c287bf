package retry

import (
	"fmt"
	"sync"
	"time"

	"github.com/resilience-go/resilience/internal/stripe"
)

// micro is one retry token in the budget's fixed-point units.
const micro = 1_000_000

// Budget bounds retries to a share of requests, so that when a dependency
// fails for everyone the retries cannot multiply its load. Every call to a
// retrier's Do deposits ratio of a token; every retry takes one whole token.
// A floor of minPerSecond tokens a second lets quiet clients retry too.
//
// Share one Budget between every retrier that calls the same dependency. It
// is safe for concurrent use; the zero value is not usable: make one with
// [NewBudget], as [WithBudget] requires. Depositing is a
// striped atomic add that reads no clock; only a retry takes a lock and
// reads the clock.
//
// Tokens saved while the dependency was healthy are capped at ten seconds'
// worth of the floor, and at least 10, so that a long quiet spell cannot
// fund a storm of retries when the dependency then fails.
type Budget struct {
	ratio    int64 // deposited per request, in micro-tokens
	perSec   float64
	capacity int64          // the most the ratio pool holds, in micro-tokens
	deposits stripe.Counter // micro-tokens deposited by requests

	mu      sync.Mutex
	spent   int64     // micro-tokens taken from the ratio pool, or forgotten past capacity
	floor   float64   // tokens in the floor's bucket
	last    time.Time // when floor was last refilled
	retries int64     // retries allowed, less those refunded
	refused int64     // retries refused
}

// BudgetMetrics is a snapshot of a [Budget]; see [Budget.Metrics].
type BudgetMetrics struct {
	// Available is how many retries the budget would allow now, in
	// tokens: those deposited by calls and not spent, and those of the
	// floor.
	Available float64
	// Retries counts the retries the budget allowed since it was made,
	// and Refused those it refused.
	Retries, Refused int64
}

// Metrics returns the budget's tokens and counts. It takes the budget's
// lock, as a retry does.
func (b *Budget) Metrics() BudgetMetrics {
	if b.deposits == nil {
		panic("retry: zero Budget; use NewBudget")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	balance := min(b.deposits.Sum()-b.spent, b.capacity)
	floor := b.floorAt(time.Now())
	return BudgetMetrics{Available: float64(balance)/micro + floor, Retries: b.retries, Refused: b.refused}
}

// NewBudget returns a Budget that allows retries up to ratio of the calls
// made, plus minPerSecond retries a second. A new Budget allows
// minPerSecond retries at once. A retrier made without [WithBudget] has a
// budget of its own of NewBudget(0.2, 10). ratio must be 0 or in [1e-6,
// 1000], minPerSecond in [0, 1000000], and they must not both be 0.
func NewBudget(ratio float64, minPerSecond int) *Budget {
	if !(ratio == 0 || ratio >= 1e-6 && ratio <= 1000) || minPerSecond < 0 || minPerSecond > 1_000_000 ||
		ratio == 0 && minPerSecond == 0 {
		panic(fmt.Sprintf("retry: NewBudget(%v, %d): want ratio 0 or in [1e-6, 1000], minPerSecond in [0, 1e6], not both 0",
			ratio, minPerSecond))
	}
	return &Budget{
		ratio:    int64(ratio * micro),
		perSec:   float64(minPerSecond),
		capacity: max(10, 10*int64(minPerSecond)) * micro,
		deposits: stripe.NewCounter(),
		floor:    float64(minPerSecond),
		last:     time.Now(),
	}
}

// deposit records a call.
func (b *Budget) deposit() { b.deposits.Add(b.ratio) }

// withdraw takes a token for a retry, from the ratio pool or else from the
// floor, and reports whether there was one.
func (b *Budget) withdraw() bool { return b.withdrawAt(time.Now) }

// withdrawAt is withdraw on the clock now, which it reads only when the
// ratio pool is empty.
func (b *Budget) withdrawAt(clock func() time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	balance := b.deposits.Sum() - b.spent
	if balance > b.capacity {
		b.spent += balance - b.capacity
		balance = b.capacity
	}
	if balance >= micro {
		b.spent += micro
		b.retries++
		return true
	}
	now := clock()
	b.floor = b.floorAt(now)
	b.last = now
	if b.floor >= 1 {
		b.floor--
		b.retries++
		return true
	}
	b.refused++
	return false
}

// floorAt returns the tokens the floor's bucket holds at now, refilled
// since it was last, up to a second's worth. b.mu must be held.
func (b *Budget) floorAt(now time.Time) float64 {
	return min(b.perSec, b.floor+max(now.Sub(b.last).Seconds(), 0)*b.perSec)
}

// refund gives back a token taken for a retry that did not happen.
func (b *Budget) refund() {
	b.mu.Lock()
	b.spent -= micro
	b.retries--
	b.mu.Unlock()
}
