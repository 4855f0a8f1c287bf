package keep_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/keep"
)

// spare is a ctx with a spare Keeper, handed out once.
type spare struct {
	context.Context
	k    keep.Keeper
	once sync.Once
}

func (s *spare) SpareKeeper() (k *keep.Keeper) {
	s.once.Do(func() { k = &s.k })
	return k
}

func TestForTakesTheSpareOnce(t *testing.T) {
	parent := &spare{Context: context.Background()}
	ctx, cancel := context.WithCancel(parent)
	first := keep.For(parent, ctx, cancel)
	assert.Same(t, &parent.k, first, "the first Keeper is the spare")
	assert.Same(t, first, keep.Find(first))

	ctx2, cancel2 := context.WithCancel(parent)
	second := keep.For(parent, ctx2, cancel2)
	assert.NotSame(t, &parent.k, second, "the spare is handed out once")

	first.End()
	assert.Error(t, ctx.Err(), "End cancels the spare's ctx")
	assert.NoError(t, ctx2.Err(), "and only that one")
	second.End()
	assert.Error(t, ctx2.Err())
}

func TestForWithoutSpare(t *testing.T) {
	parent := context.Background()
	ctx, cancel := context.WithCancel(parent)
	k := keep.For(parent, ctx, cancel)
	assert.True(t, k.Keep(), "a new Keeper can be kept")
	k.End()
	assert.NoError(t, ctx.Err(), "a kept Keeper outlives End")
	k.Release()
	assert.Error(t, ctx.Err(), "until its Release")
}

// Concurrent ops under one parent share out the spare to exactly one.
func TestForSpareRace(t *testing.T) {
	parent := &spare{Context: context.Background()}
	var wg sync.WaitGroup
	got := make([]*keep.Keeper, 8)
	for i := range got {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(parent)
			got[i] = keep.For(parent, ctx, cancel)
			got[i].End()
		})
	}
	wg.Wait()
	n := 0
	for _, k := range got {
		if k == &parent.k {
			n++
		}
	}
	assert.Equal(t, 1, n)
}
