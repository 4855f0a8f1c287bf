package race_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/race"
)

// An attempt won only if it won its race and every attempt around it won
// theirs; a value of one that lost goes to the innermost race it lost.
func TestNestedRaces(t *testing.T) {
	var outerLost, innerLost []any
	outer := &race.Race{Discard: func(v any) { outerLost = append(outerLost, v) }}
	o1, o2 := &race.Attempt{Race: outer}, &race.Attempt{Race: outer}
	inner := &race.Race{Discard: func(v any) { innerLost = append(innerLost, v) }}
	i1, i2 := &race.Attempt{Race: inner, Outer: o1}, &race.Attempt{Race: inner, Outer: o1}

	outer.Winner, inner.Winner = o1, i2
	assert.True(t, i2.Won(), "the inner winner of the outer winner")
	assert.False(t, i1.Won(), "the inner loser")
	assert.False(t, o2.Won(), "the outer loser")
	i1.Lost("i1")
	o2.Lost("o2")
	assert.Equal(t, []any{"i1"}, innerLost)
	assert.Equal(t, []any{"o2"}, outerLost)

	outer.Winner = o2
	assert.False(t, i2.Won(), "the inner winner of an outer loser")
	i2.Lost("i2")
	assert.Equal(t, []any{"o2", "i2"}, outerLost, "a value lost by the attempt around it")

	noHook := &race.Race{}
	(&race.Attempt{Race: noHook}).Lost("dropped") // no discard hook: nothing to call
}

func TestFrom(t *testing.T) {
	assert.Nil(t, race.From(context.Background()))
	a := &race.Attempt{Race: &race.Race{}}
	ctx := context.WithValue(context.Background(), race.Key{}, a)
	assert.Same(t, a, race.From(context.WithValue(ctx, otherKey{}, 1)))
}

type otherKey struct{}
