package hedge

import (
	"sync"

	"github.com/resilience-go/resilience/internal/stripe"
)

// micro is one hedge in the load cap's fixed-point units.
const micro = 1_000_000

// saved is how many hedges the load cap lets calls save up.
const saved = 10

// loadCap bounds hedges to a ratio of calls: each call deposits ratio of a
// token, each hedge takes one, and at most saved tokens are kept.
// Depositing is a striped atomic add; a hedge takes a lock.
type loadCap struct {
	ratio    int64 // per call, in micro-tokens
	deposits stripe.Counter

	mu    sync.Mutex
	spent int64 // micro-tokens taken, or forgotten past the cap
}

func newLoadCap(ratio float64) *loadCap {
	return &loadCap{ratio: int64(ratio * micro), deposits: stripe.NewCounter()}
}

func (l *loadCap) deposit() { l.deposits.Add(l.ratio) }

// withdraw takes a token for a hedge and reports whether there was one.
func (l *loadCap) withdraw() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	balance := l.deposits.Sum() - l.spent
	if balance > saved*micro {
		l.spent += balance - saved*micro
		balance = saved * micro
	}
	if balance < micro {
		return false
	}
	l.spent += micro
	return true
}

// refund gives back a token taken for a hedge that did not start.
func (l *loadCap) refund() {
	l.mu.Lock()
	l.spent -= micro
	l.mu.Unlock()
}
