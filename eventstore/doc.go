// Package eventstore is an event store on database/sql: streams of events
// appended with optimistic concurrency inside the caller's transaction, one
// log of every event in commit order, durable subscriptions to that log
// with checkpoints and leases, and snapshots. It runs on PostgreSQL,
// MySQL/MariaDB and SQLite.
//
//	// Once, at start-up:
//	store := eventstore.New(db, eventstore.Postgres)
//	err := store.Migrate(ctx)
//
//	// A command: read, decide, append what happened.
//	cart, version, err := eventstore.Load(ctx, store, "cart-42", applyCart)
//	tx, _ := db.BeginTx(ctx, nil)
//	_, err = store.Append(ctx, tx, "cart-42", version, eventstore.Event{
//		Type: "ItemAdded", Payload: body,
//	})
//	err = tx.Commit()
//
//	// A read model, in a goroutine that lives as long as the service:
//	err = store.Subscribe(ctx, "cart-totals", handler)
//
// # Streams and versions
//
// A stream is the history of one aggregate, named by the application
// ("cart-42"). Its version is how many events it holds; its events are
// numbered from 1. [Store.Append] takes the version the caller decided on
// (or [NoStream], [Any], [StreamExists]) and returns a [*ConflictError]
// that carries the stream's actual version when another writer got there
// first: of writers that race for one version, exactly one wins.
// [Load] and [Fold] rebuild an aggregate from its stream with a function
// of the application's, no registry and no reflection; [Store.SaveSnapshot]
// and [Store.LoadSnapshot] spare a long stream's replay.
//
// # The log
//
// Every event also gets a global position, from 1, with no gaps, in the
// order the events committed, and [Store.ReadAll] never shows an event
// while an event of a lower position may still commit: a reader that goes
// on from the last position it read (a subscription) misses nothing, on
// every database, with no grace period and no guess at how long a
// transaction may take (the high-water mark problem of event stores on
// SQL). How depends on the database:
//
//   - PostgreSQL: an append locks its stream's row only, and writes its
//     events without positions, so appends to different streams commit side
//     by side. Readers of the log give positions to the events that have
//     committed, in one short transaction under the lock of the store's
//     head: an event that commits late gets a later position, and an event
//     gets its position once it has committed, not in Append.
//   - MySQL and SQLite: an append takes the store's head from its first
//     statement to the end of its transaction, and gives its events their
//     positions at once; appends to one store commit one at a time.
//     (SQLite lets one writer in at a time anyway.)
//
// Keep appending transactions short, and append several events per
// transaction where a command makes several.
//
// # Subscriptions
//
// [Store.Subscribe] hands the log to a [Handler] in batches, from the
// subscription's checkpoint on, catching up first and then following
// appends as they commit: this process's appends wake it at once, a
// [Waker] can wake it from other processes, and it polls otherwise. The
// handler runs in the transaction that moves the checkpoint, so a read
// model written through that transaction changes exactly once per event,
// whatever crashes; effects elsewhere happen at least once. One subscriber
// of a name at a time does the work, under a lease fenced by the
// checkpoint's update; others wait to take over. The projection package
// builds read models, with rebuilds, on top.
//
// # Publishing
//
// Events reach brokers through the outbox package: enqueue the messages
// in the transaction that appends the events, and an outbox relay
// publishes them after the commit, at least once, with the event's ID as
// the message's ID for de-duplication (see the example of Append).
package eventstore
