package retry_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/retry"
)

// A budget used by a loop of one's own follows the clock it is given, not
// the real one: its floor refills with the time between withdrawals on that
// clock, and its pool fills with the calls deposited.
func TestBudgetOnAClockOfItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // the real clock stands still
		b := retry.NewBudget(0.5, 2)
		start := time.Now()
		assert.True(t, b.Withdraw(start), "a new budget's floor: first token")
		assert.True(t, b.Withdraw(start), "a new budget's floor: second token")
		assert.False(t, b.Withdraw(start), "the floor is empty and no call was made")

		at := start.Add(500 * time.Millisecond)
		assert.True(t, b.Withdraw(at), "half a second on the given clock refills one token")
		assert.False(t, b.Withdraw(at))

		for range 4 {
			b.Deposit()
		}
		assert.True(t, b.Withdraw(at), "four calls at half a token each: first token")
		assert.True(t, b.Withdraw(at), "four calls at half a token each: second token")
		assert.False(t, b.Withdraw(at))

		m := b.Metrics()
		assert.Equal(t, int64(5), m.Retries)
		assert.Equal(t, int64(3), m.Refused)
	})
}

func TestBudgetLoopPanicsOnZeroBudget(t *testing.T) {
	var b retry.Budget
	assert.PanicsWithValue(t, "retry: zero Budget; use NewBudget", func() { b.Deposit() })
	assert.PanicsWithValue(t, "retry: zero Budget; use NewBudget", func() { b.Withdraw(time.Now()) })
}

// A retry loop on a simulated clock: the waits come from a Backoff, the
// permission to retry from a Budget, and no time really passes.
func ExampleBudget_Withdraw() {
	budget := retry.NewBudget(0.2, 1) // a fifth of the calls, and one retry a second
	wait := retry.Exponential(100*time.Millisecond, time.Second)
	now := time.Now() // the simulated clock starts when the budget is made

	for call := 1; call <= 3; call++ {
		budget.Deposit()
		var waited time.Duration
		attempt := 1
		for ; attempt < 5; attempt++ { // every attempt fails
			if !budget.Withdraw(now) {
				break
			}
			d := wait.Delay(attempt, 0)
			now = now.Add(d)
			waited += d
		}
		fmt.Printf("call %d: %d attempts, waited %v\n", call, attempt, waited)
	}
	// Output:
	// call 1: 2 attempts, waited 100ms
	// call 2: 1 attempts, waited 0s
	// call 3: 1 attempts, waited 0s
}

// DelayRand draws what Delay would, from the source it is given: the same
// seed gives the same waits, within the bounds of each strategy.
func TestDelayRandRepeats(t *testing.T) {
	tests := []struct {
		name string
		b    retry.Backoff
	}{
		{"Constant", retry.Constant(5 * time.Millisecond)},
		{"Exponential", retry.Exponential(5*time.Millisecond, time.Second)},
		{"FullJitter", retry.FullJitter(5*time.Millisecond, time.Second)},
		{"EqualJitter", retry.EqualJitter(5*time.Millisecond, time.Second)},
		{"DecorrelatedJitter", retry.DecorrelatedJitter(5*time.Millisecond, time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			draw := func(seed uint64) []time.Duration {
				r := rand.New(rand.NewPCG(seed, 0))
				var waits []time.Duration
				var prev time.Duration
				for attempt := 1; attempt <= 12; attempt++ {
					prev = tt.b.DelayRand(attempt, prev, r)
					waits = append(waits, prev)
				}
				return waits
			}
			a := draw(1)
			assert.Equal(t, a, draw(1), "the same seed")
			var prev time.Duration
			for i, d := range a {
				assert.GreaterOrEqual(t, d, time.Duration(0), "wait %d", i+1)
				assert.LessOrEqual(t, d, time.Second, "wait %d", i+1)
				if tt.name == "Exponential" || tt.name == "Constant" {
					assert.Equal(t, tt.b.Delay(i+1, prev), d, "wait %d has no jitter", i+1)
				}
				prev = d
			}
			if tt.name != "Exponential" && tt.name != "Constant" {
				assert.NotEqual(t, a, draw(2), "another seed, other waits")
			}
		})
	}
	assert.Panics(t, func() { retry.FullJitter(time.Millisecond, time.Second).DelayRand(1, 0, nil) })
}
