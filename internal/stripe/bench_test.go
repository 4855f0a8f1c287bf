package stripe_test

import (
	"testing"

	"github.com/resilience-go/resilience/internal/stripe"
)

func BenchmarkAdd(b *testing.B) {
	c := stripe.NewCounter()
	for b.Loop() {
		c.Add(1)
	}
}

func BenchmarkAddParallel(b *testing.B) {
	c := stripe.NewCounter()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(1)
		}
	})
}
