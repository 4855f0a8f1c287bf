// Package saga runs long business transactions as sagas: steps, each with a
// compensation, run in order, and when one fails the steps that started are
// undone in reverse. It also runs try-confirm-cancel (TCC) transactions on
// the same machinery, and with a store it survives crashes.
//
//	checkout := saga.Define("checkout", 1,
//		saga.Step("reserve", reserveStock, releaseStock),
//		saga.Step("charge", chargeCard, refundCard, saga.WithPolicy(retry.New())),
//		saga.Step("ship", createShipment, cancelShipment),
//	)
//	c := saga.New(saga.WithStore(db, saga.Postgres))
//	err := c.Run(ctx, checkout, order.ID, orderJSON)
//	var se *saga.Error
//	if errors.As(err, &se) {
//		// se.Step failed with se.Err; its compensations ran (se.Status).
//	}
//
// # Failure
//
// A step whose action fails (after its policy, such as a retry, gave up),
// a saga whose [Timeout] passes, and a caller that cancels all stop the
// saga going forward. Every step that started is then compensated, the
// failed one included, because a call that returned an error may still have
// taken effect: compensations must be safe to run for an action that did
// nothing (a [Barrier] makes them so). Compensations run in reverse, the
// steps of a [Parallel] group at once, under a ctx detached from the
// caller's cancellation with a deadline of its own ([WithSettleTimeout]),
// each retried with backoff ([WithAttempts]). A step's action records an
// output with [Call.SetOutput], which its compensation reads (the payment
// ID to refund).
//
// # Durability
//
// With [WithStore], the coordinator writes each step's intent before
// running it and its result after, in as few transactions as that allows:
// the intent of a step goes with the result of the one before, so a saga of
// n steps commits n+1 times. One that fails commits once more, to record the
// failure before any compensation runs, and once at the end for all the
// compensations: they need no intent, since they must be idempotent anyway
// and recovery runs again those with no recorded success. The failure is
// recorded, and the compensations run, whatever the caller's ctx does.
//
// A coordinator drives an instance under a lease, which it renews while it
// drives it, and every write carries the token of its claim of the
// instance, so that a coordinator that lost the lease (stalled past it, or
// cut off from the database) writes nothing more; it also stops calling
// steps, since the ctx of its calls is cancelled with [ErrLeaseLost]. Only
// a call already under way when the lease ran out can overlap with the new
// owner's, which is why participants guard their calls with a [Barrier].
// [Coordinator.Recover] (or [Coordinator.RunRecovery]) claims instances
// whose coordinator died, rebuilds where each stands from the log and
// finishes it: a step that started without a recorded result runs again if
// it is [Idempotent], and otherwise the saga compensates. Every call gets an
// idempotency key (saga ID, step, phase) through its ctx ([IdempotencyKey]).
// Deadlines, leases and backoffs are on the database's clock.
//
// Compensations that keep failing are retried in rounds with a persisted
// backoff; an [Alert] event fires after [WithAlertAfter] rounds, and after
// [WithStuckAfter] the instance is parked as [Stuck], never reported as
// done, for an operator ([Coordinator.ListStuck], [Coordinator.RetryStuck],
// [Coordinator.MarkResolved]). An instance of a definition version the
// coordinator does not know is left alone, not guessed.
//
// # TCC
//
// [DefineTCC] runs every participant's try, in order; if all succeed, every
// confirm, at once, and otherwise every cancel of a participant that was
// tried or may have been, in reverse. Confirms and cancels are retried until they
// succeed. A participant guards its branches with a [Barrier] in its own
// transaction, which makes each branch take effect once, turns a cancel
// that arrives before its try into a no-op, and stops a try that arrives
// after its cancel.
package saga
