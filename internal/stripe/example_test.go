package stripe_test

import (
	"fmt"
	"sync"

	"github.com/resilience-go/resilience/internal/stripe"
)

func ExampleCounter() {
	requests := stripe.NewCounter()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				requests.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println(requests.Sum())
	// Output: 800
}
