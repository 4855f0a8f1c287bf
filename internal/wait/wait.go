// Package wait holds the one way the policies and stores wait: for a
// duration, or until a ctx is done, whichever comes first; and how a
// store's writers wake its readers ([Wakeups], [Idle], [Forward]).
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, and reports whether the wait ran its
// course. A d of zero or less does not wait, and reports true.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
