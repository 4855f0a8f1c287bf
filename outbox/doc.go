// Package outbox is a transactional outbox on database/sql: a service writes
// its business data and the messages that announce it in one local
// transaction, and a relay publishes the messages to a broker afterwards,
// at least once. A message exists if and only if its transaction commits,
// and no message that committed is ever lost.
//
//	// Once, at start-up:
//	err := outbox.Migrate(ctx, db, outbox.Postgres)
//
//	// In the business transaction:
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... write the order ...
//	err = outbox.Enqueue(ctx, tx, outbox.Postgres, outbox.Message{
//		Topic: "orders.created", Key: order.ID, Payload: body,
//	})
//	err = tx.Commit()
//
//	// In a goroutine that lives as long as the service:
//	relay := outbox.NewRelay(db, outbox.Postgres, publisher)
//	err = relay.Run(ctx)
//
// # Databases
//
// [Postgres], [MySQL] (MySQL 8, MariaDB 10.6 and later) and [SQLite]
// (through a pure-Go driver such as modernc.org/sqlite, in WAL mode with a
// busy timeout). [Migrate] creates the tables; [Dialect.WithTable] names
// them. Times are kept as microseconds of the database's clock, so relays on
// hosts with different clocks agree on leases and backoffs.
//
// # Delivery
//
// A relay claims a batch with a lease, publishes it outside any
// transaction, and acknowledges only what it still holds: a relay that
// stalled past its lease changes nothing, and another relay publishes the
// batch again. Messages are therefore published at least once, with
// duplicates bounded by the batches in flight when a relay dies or stalls;
// the message ID goes to the broker (NATS Nats-Msg-Id, AMQP message-id) and
// to consumers, whose [Inbox] drops duplicates. A message that fails is tried
// again after a backoff and marked dead after [WithMaxAttempts]; operators
// list, retry and discard dead messages with [ListDead], [Retry] and
// [Discard], and watch [ReadBacklog].
//
// # Ordering
//
// Unordered mode, the default, maximises throughput: any number of relays
// claim batches side by side. In ordered mode ([WithOrdered]), messages with
// the same key are published in the order they were written, with any
// number of relays, and none is ever skipped: each key hashes to one of
// [Lanes] lanes, one relay at a time owns a lane, and it publishes the lane
// in id order, stopping at a failure. A message is published only when no
// message of a lower id can still appear: on PostgreSQL, once every
// transaction older than it has ended; on MySQL, after a grace period
// ([WithGapGrace]); on SQLite, whose writes are serial, at once. The order
// of two messages of one key is the order their rows were inserted, which is
// the order their transactions committed whenever those transactions are
// serialized, as writers of one aggregate are by its row lock.
//
// # Wakeups and growth
//
// Enqueue wakes the relays of its own process, which publish within
// milliseconds of the commit; relays also poll ([WithPollInterval]), and on
// PostgreSQL may LISTEN ([Dialect.WithNotify], [WithWaker]). Published
// messages are deleted at once by default, or kept for [WithRetention] and
// swept in batches, so the table does not grow without bound.
package outbox
