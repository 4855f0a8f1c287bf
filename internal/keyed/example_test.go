package keyed_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
)

// A Map with room for two keys, called on three: the third passes the cap
// and a sweep drops one of the others, never the third.
func ExampleMap() {
	made := 0
	m := keyed.New("example: PerKey", func(key string) resilience.Policy {
		made++
		return resilience.Chain()
	}, 2, time.Minute)
	for _, key := range []string{"a", "a", "b", "c", "c"} {
		_ = m.Policy(key).Do(context.Background(), func(context.Context) error { return nil })
	}
	fmt.Println("policies made:", made)
	fmt.Println("keys kept:", m.Len())
	fmt.Println("c kept:", slices.Contains(m.Keys(), "c"))
	// Output:
	// policies made: 3
	// keys kept: 2
	// c kept: true
}
