// Package pgnotify wakes the relays of an [outbox] in other processes as soon
// as a transaction that enqueued messages commits, through PostgreSQL's
// LISTEN and NOTIFY, instead of leaving them to their next poll. A [Waker]
// is the [outbox.Waker] that a relay takes with [outbox.WithWaker].
//
//	// Writers: Enqueue notifies the channel in the caller's transaction.
//	orders := outbox.New(db, outbox.Postgres.WithNotify("outbox"))
//	err := orders.Enqueue(ctx, tx, msg)
//
//	// Relays, in any process: LISTEN on the same channel.
//	w, err := pgnotify.New(os.Getenv("DATABASE_URL"), "outbox")
//	defer w.Close(context.Background())
//	relay := orders.NewRelay(pub, outbox.WithWaker(w))
//	err = relay.Run(ctx)
//
// # Wakeups
//
// [outbox.Dialect.WithNotify] makes [outbox.Outbox.Enqueue] run pg_notify in
// the transaction that writes the messages, so the notification is sent when
// it commits, and never for a transaction that rolls back. [Waker.Wait]
// returns nil when a notification comes; notifications that reach the
// connection together make one wakeup. A wakeup says only "look now": the
// relay claims what is there, as it does when it polls, so a wakeup too many
// costs one query and a wakeup missed costs at most a poll interval.
//
// # Connection
//
// A Waker holds one connection of its own, outside any pool, because a
// LISTEN belongs to a session: it cannot go through PgBouncer or another
// pooler in transaction mode. The first Wait connects and LISTENs. When the
// connection fails, Wait returns the error and the next Wait connects
// again; each Wait that connects returns nil at once, since notifications
// sent while there was no connection are lost (PostgreSQL keeps none for a
// listener that is not connected) and the relay should look for what they
// announced. The relay also goes on polling, so a Waker that cannot connect
// delays messages by at most the poll interval, and its errors reach the
// relay's [outbox.WithObserver] as [github.com/resilience-go/resilience.Error]
// events.
//
// # Goroutines
//
// A Waker starts no goroutine: Wait does its work on its caller's goroutine,
// and the end of its ctx interrupts the read of the connection at once. When
// a connection fails, pgx closes it on a goroutine of its own; Wait waits,
// within its ctx, for that goroutine to end before it returns.
package pgnotify
