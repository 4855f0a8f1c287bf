// Package outbox is a transactional outbox on database/sql: a service writes
// its business data and the messages that announce it in one local
// transaction, and a relay publishes the messages to a broker afterwards,
// at least once. A message exists if and only if its transaction commits,
// and no message that committed is ever lost.
//
//	// Once, at start-up:
//	orders := outbox.New(db, outbox.Postgres)
//	err := orders.Migrate(ctx)
//
//	// In the business transaction:
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... write the order ...
//	err = orders.Enqueue(ctx, tx, outbox.Message{
//		Topic: "orders.created", Key: order.ID, Payload: body,
//	})
//	err = tx.Commit()
//
//	// In a goroutine that lives as long as the service:
//	relay := orders.NewRelay(publisher)
//	err = relay.Run(ctx)
//
// An [Outbox] is one table in one database; make one per table and share
// it, so that its relays wake the moment its Enqueue writes. Operators use
// the same value: [Outbox.Backlog], [Outbox.ListDead], [Outbox.Retry],
// [Outbox.Discard]. The functions of the package that take the database
// and the [Dialect] on every call are the same operations, deprecated.
//
// # Databases
//
// [Postgres], [MySQL] (MySQL 8, MariaDB 10.6 and later) and [SQLite]
// (through a pure-Go driver such as modernc.org/sqlite, in WAL mode with a
// busy timeout). SQLite lets one writer in at a time and keeps no order
// among those that wait, so the relays of one Outbox take turns to write,
// first come first served: run a process's relays from one Outbox.
// [Outbox.Migrate] creates the tables, after checking that the server is
// the dialect's database; [Dialect.WithTable] names them.
// Times are kept as microseconds of the database's clock, so relays on
// hosts with different clocks agree on leases and backoffs.
//
// # Delivery
//
// A relay claims a batch with a lease, publishes it outside any
// transaction, and acknowledges only what it still holds: a relay that
// stalled past its lease changes nothing, and another relay publishes the
// batch again. A relay starts a publish only while it knows it holds the
// lease for the whole publish ([WithPublishTimeout]) and a tenth of the
// lease to spare, on its own clock, counting the lease from before the
// statement that set it; in ordered mode it renews a lane's lease, under
// the fence, before a publish that could outlast it. So healthy relays
// never publish a message twice, however long their work takes. Messages are
// published at least once; a relay that dies or stalls past its lease
// causes at most one batch ([WithBatchSize]) of duplicates: the messages it
// had published and not yet acknowledged, and a publish under way when the
// lease ran out. The message ID goes to the broker (NATS Nats-Msg-Id, AMQP
// message-id) and to consumers, whose [Inbox] drops duplicates. A message
// that fails is tried again after a backoff and marked dead after
// [WithMaxAttempts]; operators list, retry and discard dead messages with
// [Outbox.ListDead], [Outbox.Retry] and [Outbox.Discard], and watch
// [Outbox.Backlog].
//
// # Ordering
//
// Unordered mode, the default, maximises throughput: any number of relays
// claim batches side by side. In ordered mode ([WithOrdered]), messages with
// the same key are published in the order they were written, with any
// number of relays, and none is ever skipped: each key hashes to one of
// [Lanes] lanes, one relay at a time owns a lane, and it publishes the lane
// in id order, stopping at a failure. The relays of a table share the lanes
// evenly: each announces itself on every pass, and a pass ends once it has
// published for a third of the lease, so a relay that joins gets its share
// within about that time. A message is published only when no
// message of a lower id can still appear: on PostgreSQL, once every
// transaction older than it has ended, in any database of the server, so
// that a long transaction, or a prepared one left in doubt, holds the lanes
// back until it ends; on MySQL, after a grace period ([WithGapGrace]); on
// SQLite, whose writes are serial, at once. The order
// of two messages of one key is the order their rows were inserted, which is
// the order their transactions committed whenever those transactions are
// serialized, as writers of one aggregate are by its row lock.
//
// # Throughput
//
// In unordered mode a running relay claims the next batch, and
// acknowledges the last, while the Publisher has the current one: the
// database and the broker work at once, and one relay usually keeps a
// broker as busy as it can be kept. Batches of a few hundred messages
// ([WithBatchSize], 256 by default) spread each statement over many
// messages; much larger ones add little and lengthen each publish, which
// must end within the publish timeout. Add relays (in one process or many)
// for a broker whose publishes are slow but parallel, or to survive a
// relay's host; each adds its own claims, so two to four per table are
// plenty, and more mainly add contention on the table. In ordered mode a
// relay publishes the lanes it owns one message at a time: throughput
// grows with relays, up to one per lane ([Lanes]), and with the number of
// keys, since one key's messages are published in turn.
//
// # Wakeups and growth
//
// An Outbox's Enqueue wakes its relays in this process, which publish
// within milliseconds of the commit; relays also poll ([WithPollInterval]),
// and on PostgreSQL may LISTEN ([Dialect.WithNotify], [WithWaker]).
// Published messages are deleted at once by default, or kept for
// [WithRetention] and swept in batches, so the table does not grow without
// bound.
//
// # Observing
//
// [WithObserver] tells a [resilience.Observer], such as
// [resilience.SlogObserver] or a metrics exporter, what a relay does, with
// its ID as each event's Subject and the number of messages in Count:
// messages published and acknowledged ([resilience.Success]), refused by
// the Publisher and to be tried again ([resilience.Failure]), dead
// ([resilience.Dead]), published by a relay that lost them to another
// ([resilience.Stale]), and the errors of the database, the wakeups or the
// Publisher that the relay rides out ([resilience.Error]). [WithOnEvent],
// which sees the same in a type of the package's own, is deprecated.
package outbox
