package saga_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/saga"
)

func TestBarrier(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, s *store) {
		ctx := context.Background()
		p := newParticipant(s)
		key := func(id string, phase saga.Phase) saga.Key { return saga.Key{SagaID: id, Step: "debit", Phase: phase} }

		// Each call takes effect once, however often it comes.
		for range 3 {
			require.NoError(t, p.apply(ctx, key("dup", saga.Try), nil))
			require.NoError(t, p.apply(ctx, key("dup", saga.Confirm), nil))
		}
		assert.Equal(t, map[string]int{"debit/try": 1, "debit/confirm": 1}, effects(t, s.DB.DB, s.Dialect, "dup"))

		// A cancel before its try does nothing, and the try, late, is not
		// run: nothing is left hanging.
		require.NoError(t, p.apply(ctx, key("early", saga.Cancel), nil))
		require.NoError(t, p.apply(ctx, key("early", saga.Try), nil))
		assert.Empty(t, effects(t, s.DB.DB, s.Dialect, "early"))

		// A compensation after its action undoes it, once.
		require.NoError(t, p.apply(ctx, key("undo", saga.Action), nil))
		require.NoError(t, p.apply(ctx, key("undo", saga.Compensate), nil))
		require.NoError(t, p.apply(ctx, key("undo", saga.Compensate), nil))
		assert.Equal(t, map[string]int{"debit/action": 1, "debit/compensate": 1}, effects(t, s.DB.DB, s.Dialect, "undo"))

		// A call that fails rolls back with its record, so it runs again.
		boom := errors.New("boom")
		require.ErrorIs(t, p.apply(ctx, key("retry", saga.Action), boom), boom)
		require.NoError(t, p.apply(ctx, key("retry", saga.Action), nil))
		assert.Equal(t, map[string]int{"debit/action": 1}, effects(t, s.DB.DB, s.Dialect, "retry"))

		// A try and its cancel at once: either the try took effect and the
		// cancel undid it, or neither did.
		for i := range 20 {
			id := "race-" + string(rune('a'+i))
			var wg sync.WaitGroup
			var errs [2]error
			wg.Go(func() { errs[0] = p.apply(ctx, key(id, saga.Try), nil) })
			wg.Go(func() { errs[1] = p.apply(ctx, key(id, saga.Cancel), nil) })
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				// Two writers on one SQLite file, or a serialization
				// failure: the participant's caller retries.
				t.Logf("%s: %v", id, errors.Join(errs[:]...))
				require.NoError(t, p.apply(ctx, key(id, saga.Cancel), nil))
			}
			got := effects(t, s.DB.DB, s.Dialect, id)
			assert.Equal(t, got["debit/try"], got["debit/cancel"], "%s: %v", id, got)
		}

		// An incomplete key is refused.
		tx, err := s.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck // the test only reads
		err = p.barrier.Call(ctx, tx, saga.Key{SagaID: "x"}, func(context.Context) error { return nil })
		assert.EqualError(t, err, `saga: barrier: incomplete key "x//Phase(0)"`)
		require.NoError(t, tx.Rollback())

		// Sweep deletes old records only.
		n, err := p.barrier.Sweep(ctx, s.DB.DB, time.Hour)
		require.NoError(t, err)
		assert.Zero(t, n)
		time.Sleep(2 * time.Millisecond)
		n, err = p.barrier.Sweep(ctx, s.DB.DB, time.Millisecond)
		require.NoError(t, err)
		assert.Positive(t, n)
	})
}
