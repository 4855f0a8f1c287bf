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
// Each of these writes is one statement on PostgreSQL (the instance's
// update, fenced by the lease, feeds the upsert of its step rows in one
// CTE, so that no step row is written unless the fence held), and a
// transaction of those two statements on MySQL and SQLite.
//
// A coordinator drives an instance under a lease, which it renews while it
// drives it, and every write carries the token of its claim of the
// instance, so that a coordinator that lost the lease (stalled past it, or
// cut off from the database) writes nothing more. It starts a call (an
// action, a compensation, a try, a confirm or a cancel, and each attempt of
// one, those a step's policy makes included) only while it knows that it
// holds the lease, with a tenth of the lease to spare: it counts the lease
// on its own monotonic clock, from just before it sent the last statement
// that extended it. With less than half of the lease left it renews the
// lease before the call; when the renewal finds the instance taken, or
// fails with less than the tenth left, it calls and writes nothing more,
// Run returns [ErrLeaseLost], and recovery takes the instance over. The ctx
// of its calls under way is cancelled with ErrLeaseLost when the lease is
// lost. Only a call already under way when the lease ran out, or one whose
// process was frozen between that check and the call itself (a window of
// nanoseconds), can overlap with the new owner's, which is why participants
// guard their calls with a [Barrier].
//
// An instance runs once: Run with the ID of one that the store holds takes
// it over if its coordinator died (its lease ran out) and drives it to its
// end, returns the outcome it recorded if it ended, and returns [ErrExists]
// while another coordinator drives it. A caller that retries its submit
// with the same ID gets the saga's outcome either way.
//
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
// # Operating
//
// [Coordinator.List] shows a durable coordinator's instances as the store
// holds them, selected by a [Filter] (status, orphaned, definition, age):
// where each stands, at which step, its errors, whether a coordinator
// drives it. [Coordinator.Purge] deletes the instances that ended long
// enough ago, with their steps, in bounded batches; with [WithRetention],
// [Coordinator.RunRecovery] does it as it goes.
//
// # TCC
//
// [DefineTCC] takes [Participant]s, which [Define] does not take, as
// DefineTCC takes no [Step]: the types keep the two kinds apart. It runs
// every participant's try, in order; if all succeed, every confirm, at
// once, and otherwise every cancel of a participant that was tried or may
// have been, in reverse. Confirms and cancels are retried until they
// succeed. A participant guards its branches with a [Barrier] in its own
// transaction, which makes each branch take effect once, turns a cancel
// that arrives before its try into a no-op, and stops a try that arrives
// after its cancel.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, what the coordinator
// does. A saga's events have its ID as their Subject: it started, it
// succeeded or was compensated, a round of its compensations failed and
// another comes later ([resilience.Retry]), it was parked as stuck
// ([resilience.Dead]), and the coordinator's own errors about it
// ([resilience.Error]: an alert, a lease lost, a store that failed). A
// step's events have "<saga ID>/<step>" as their Subject: each attempt of
// each of its calls started, and how each call ended, with the attempts
// made and how long it took. [WithOnEvent], which sees only the
// coordinator's alarms, is deprecated.
package saga
