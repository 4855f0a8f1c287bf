package saga

import (
	"context"
	"time"
)

// memory is the store of an in-memory coordinator, and the journal of its
// instances: it keeps and records nothing, holds nothing but the caller's
// ctx, and answers the operator's methods with ErrNotDurable.
type memory struct{}

func (memory) open(_ context.Context, in *instance, _ []write) (*instance, error) {
	in.j = memory{}
	return in, nil
}

func (memory) hold(ctx context.Context) (context.Context, context.Context, func()) {
	return ctx, context.WithoutCancel(ctx), func() {}
}
func (memory) admit(context.Context) error                                              { return nil }
func (memory) commit(context.Context, *instance, []write) error                         { return nil }
func (memory) setback(context.Context, *instance, []write, time.Duration, string) error { return nil }

func (memory) commits() int64           { return 0 }
func (memory) retention() time.Duration { return 0 }

func (memory) recover(context.Context, int) (int, error)           { return 0, ErrNotDurable }
func (memory) list(context.Context, Filter) ([]Instance, error)    { return nil, ErrNotDurable }
func (memory) purge(context.Context, time.Duration) (int64, error) { return 0, ErrNotDurable }
func (memory) listStuck(context.Context, int) ([]StuckSaga, error) { return nil, ErrNotDurable }
func (memory) retryStuck(context.Context, string) (bool, error)    { return false, ErrNotDurable }
func (memory) markResolved(context.Context, string, string) (bool, error) {
	return false, ErrNotDurable
}
func (memory) status(context.Context, string) (Status, error) { return 0, ErrNotDurable }
