package retry

import (
	"math/rand/v2"
	"time"
)

// DelayRand is [Backoff.Delay] with its random draws taken from r, for a
// loop that must repeat itself, such as a seeded simulation: the same
// seed gives the same waits. r must not be nil; a *rand.Rand is not safe
// for concurrent use, so give each goroutine its own.
func (b Backoff) DelayRand(attempt int, prev time.Duration, r *rand.Rand) time.Duration {
	if r == nil {
		panic("retry: Backoff.DelayRand: nil r")
	}
	return b.delay(attempt, prev, r)
}

// Deposit counts a call in the budget, as [Retrier.Do] does at the start of
// each call, for a retry loop of one's own: one that waits with
// [Backoff.Delay], or a simulation that runs on a clock of its own. Call it
// once per call, not per attempt, and [Budget.Withdraw] before each retry.
// Deposit panics on a zero Budget.
func (b *Budget) Deposit() {
	if b.deposits == nil {
		panic("retry: zero Budget; use NewBudget")
	}
	b.deposit()
}

// Withdraw takes a token for a retry about to be made at now, as a Retrier
// does before each retry, and reports whether the budget had one; when it
// did not, give up rather than retry. now is time.Now() for a loop that
// really waits, or the time of a simulated clock that starts at the
// Budget's making (the floor refills with the time between withdrawals,
// counted from [NewBudget]'s call to time.Now) and never goes back. One
// Budget follows one clock. Withdraw panics on a zero Budget.
func (b *Budget) Withdraw(now time.Time) bool {
	if b.deposits == nil {
		panic("retry: zero Budget; use NewBudget")
	}
	return b.withdrawAt(func() time.Time { return now })
}
