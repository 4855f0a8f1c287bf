package resilience_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
)

// counted returns a ctx that cancel ends, and the number of calls to cancel.
func counted(parent context.Context) (context.Context, context.CancelFunc, *atomic.Int32) {
	ctx, cancel := context.WithCancel(parent)
	var n atomic.Int32
	return ctx, func() { n.Add(1); cancel() }, &n
}

func TestKeepWithNothingToKeep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, c := range []context.Context{context.Background(), ctx} {
		release, ok := resilience.Keep(c)
		assert.False(t, ok, "no policy made %v keepable", c)
		require.NotNil(t, release)
		release()
		release()
	}
}

func TestKeepableNotKept(t *testing.T) {
	ctx, cancel, n := counted(context.Background())
	kctx, end := resilience.Keepable(ctx, cancel)
	assert.NoError(t, kctx.Err())
	end()
	assert.ErrorIs(t, kctx.Err(), context.Canceled, "end cancels a ctx nobody kept, at once")
	end()
	assert.Equal(t, int32(1), n.Load(), "cancel called once")
	_, ok := resilience.Keep(kctx)
	assert.False(t, ok, "too late to keep: the op has returned")
}

func TestKeepableKept(t *testing.T) {
	ctx, cancel, n := counted(context.Background())
	kctx, end := resilience.Keepable(ctx, cancel)
	release, ok := resilience.Keep(kctx)
	require.True(t, ok)
	end()
	assert.NoError(t, kctx.Err(), "kept: end leaves it to release")
	assert.Zero(t, n.Load())
	release()
	assert.ErrorIs(t, kctx.Err(), context.Canceled, "released after the op returned: cancelled at once")
	release()
	end()
	assert.Equal(t, int32(1), n.Load(), "release and end are idempotent")
}

func TestKeepReleasedBeforeTheOpReturns(t *testing.T) {
	ctx, cancel, n := counted(context.Background())
	kctx, end := resilience.Keepable(ctx, cancel)
	release, ok := resilience.Keep(kctx)
	require.True(t, ok)
	release()
	assert.NoError(t, kctx.Err(), "the op is still running")
	end()
	assert.ErrorIs(t, kctx.Err(), context.Canceled, "nothing holds it when the op returns")
	assert.Equal(t, int32(1), n.Load())
}

// Each Keep takes a hold of its own: the ctx ends at the last release.
func TestKeepTwice(t *testing.T) {
	ctx, cancel, n := counted(context.Background())
	kctx, end := resilience.Keepable(ctx, cancel)
	first, ok1 := resilience.Keep(kctx)
	second, ok2 := resilience.Keep(kctx)
	require.True(t, ok1 && ok2)
	end()
	first()
	first()
	assert.NoError(t, kctx.Err(), "the second hold is not given back by calling the first release twice")
	second()
	assert.ErrorIs(t, kctx.Err(), context.Canceled)
	assert.Equal(t, int32(1), n.Load())
}

// A Keep inside nested keepable ctxs holds every one of them: the outer
// policy's end would otherwise cancel the inner ctx with its own.
func TestKeepHoldsEveryKeepableAround(t *testing.T) {
	octx, ocancel, on := counted(context.Background())
	outer, endOuter := resilience.Keepable(octx, ocancel)
	ictx, icancel, in := counted(outer)
	inner, endInner := resilience.Keepable(ictx, icancel)

	// A first attempt that keeps nothing ends alone.
	first, endFirst := resilience.Keepable(context.WithCancel(outer))
	endFirst()
	assert.Error(t, first.Err())

	release, ok := resilience.Keep(inner)
	require.True(t, ok)
	endInner()
	endOuter()
	assert.NoError(t, inner.Err(), "neither end cancels")
	assert.NoError(t, outer.Err())
	release()
	assert.ErrorIs(t, inner.Err(), context.Canceled)
	assert.ErrorIs(t, outer.Err(), context.Canceled)
	assert.Equal(t, int32(1), in.Load())
	assert.Equal(t, int32(1), on.Load())
}

// A Keep that finds an outer ctx whose op has returned holds nothing, so
// that the inner one still ends with its op.
func TestKeepHoldsAllOrNothing(t *testing.T) {
	octx, ocancel, _ := counted(context.Background())
	outer, endOuter := resilience.Keepable(octx, ocancel)
	ictx, icancel, in := counted(context.WithoutCancel(outer))
	inner, endInner := resilience.Keepable(ictx, icancel)
	endOuter()
	release, ok := resilience.Keep(inner)
	assert.False(t, ok)
	release()
	endInner()
	assert.ErrorIs(t, inner.Err(), context.Canceled, "the inner hold was given back")
	assert.Equal(t, int32(1), in.Load())
}

// The ctx that Keepable returns is the ctx it was given in every respect:
// deadline, values, error and cause, and the children that package context
// makes of it cost no goroutine.
func TestKeepableIsItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cause := errors.New("too slow")
		base := context.WithValue(context.Background(), ctxKey{}, "v")
		ctx, cancel := context.WithTimeoutCause(base, time.Second, cause)
		kctx, end := resilience.Keepable(ctx, cancel)
		dl, ok := kctx.Deadline()
		assert.True(t, ok)
		assert.Equal(t, time.Now().Add(time.Second), dl)
		assert.Equal(t, "v", kctx.Value(ctxKey{}))
		assert.Contains(t, kctx.(interface{ String() string }).String(), "WithDeadline")

		goroutines := runtime.NumGoroutine()
		child, cancelChild := context.WithCancel(kctx)
		defer cancelChild()
		stop := context.AfterFunc(child, func() {})
		defer stop()
		assert.Equal(t, goroutines, runtime.NumGoroutine(), "a child of a Keepable needs no goroutine to follow it")

		release, kept := resilience.Keep(child)
		require.True(t, kept, "Keep finds the Keepable through a child")
		end()
		time.Sleep(time.Second)
		<-child.Done()
		assert.ErrorIs(t, kctx.Err(), context.DeadlineExceeded, "a kept ctx still ends at its deadline")
		assert.Equal(t, cause, context.Cause(kctx))
		assert.Equal(t, cause, context.Cause(child))
		release() // after the deadline: nothing left to do, and no harm
	})
}

// Releases from many goroutines, racing with end, cancel exactly once.
func TestKeepConcurrentReleases(t *testing.T) {
	for range 100 {
		ctx, cancel, n := counted(context.Background())
		kctx, end := resilience.Keepable(ctx, cancel)
		releases := make([]func(), 8)
		for i := range releases {
			var ok bool
			releases[i], ok = resilience.Keep(kctx)
			require.True(t, ok)
		}
		var wg sync.WaitGroup
		for _, release := range releases {
			wg.Go(func() { release(); release() })
		}
		end()
		wg.Wait()
		assert.ErrorIs(t, kctx.Err(), context.Canceled)
		assert.Equal(t, int32(1), n.Load())
	}
}

func TestKeepablePanicsOnNil(t *testing.T) {
	//lint:ignore SA1012 a nil ctx is what is tested
	assert.PanicsWithValue(t, "resilience: Keepable: nil ctx", func() { resilience.Keepable(nil, func() {}) })
	assert.PanicsWithValue(t, "resilience: Keepable: nil cancel", func() { resilience.Keepable(context.Background(), nil) })
}
