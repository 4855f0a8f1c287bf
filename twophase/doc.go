// Package twophase commits one transaction across several databases, all
// or nothing, by two-phase commit: PostgreSQL databases through PREPARE
// TRANSACTION, MySQL 8 and MariaDB databases through XA. It is opt-in:
// most work across services is better done as a saga (see [Saga or
// two-phase commit]).
//
//	orders := twophase.Postgres("orders", ordersDB)  // the home: it holds the decisions
//	ledger := twophase.MySQL("ledger", ledgerDB)
//	c, err := twophase.New(ctx, hostname, orders, []*twophase.Participant{ledger})
//	go c.RunRecovery(ctx) // in every process, from the start
//
//	tx, err := twophase.Begin(ctx, c, ledger, orders)
//	_, err = tx.On(orders).ExecContext(ctx, "UPDATE accounts SET balance = balance - $1 WHERE id = $2", 10, "alice")
//	_, err = tx.On(ledger).ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", 10, "bob")
//	err = tx.Commit(ctx)
//
// # Protocol
//
// A [Coordinator] has a home participant, whose database holds its
// decision table. [Begin] takes a connection of each participant and
// begins a branch on it ([Tx.On] returns the [Branch], used as a *sql.Tx):
// a local transaction on the home, a branch to be prepared on each other.
// [Tx.Commit] prepares each other branch, in order (PostgreSQL: PREPARE
// TRANSACTION, checked in pg_prepared_xacts, since PostgreSQL answers it
// with ROLLBACK and no error on a transaction that a failed statement
// aborted; MySQL: XA END and XA PREPARE). Then it inserts the decision row
// in the home transaction and commits it: that commit is the commit point
// of the whole transaction (the last-resource optimisation: the home needs
// no prepare, and the decision needs no store of its own). Then it commits
// the prepared branches (COMMIT PREPARED, XA COMMIT). A failure before the
// decision rolls back every branch; after it, the transaction is committed,
// and a branch whose second phase fails is committed by recovery.
//
// Between its prepare and its second phase a branch holds its locks. If
// the process dies there, they stay held until recovery ends the branch,
// and a PostgreSQL prepared transaction also holds back VACUUM: two-phase
// commit blocks where a saga would not. Keep transactions short. No
// database sees a deadlock that spans two of them: take locks in the same
// order in every transaction, or bound the waits (PostgreSQL's
// lock_timeout, InnoDB's innodb_lock_wait_timeout).
//
// # Recovery
//
// [Coordinator.Recover] (run by [Coordinator.RunRecovery] every
// [WithRecoveryInterval]) lists the prepared branches of each participant
// (pg_prepared_xacts, XA RECOVER) and ends those of its coordinator's
// transactions: it commits a branch whose transaction has a Commit
// decision, and rolls back one whose transaction has none and began longer
// ago than the grace period ([WithGrace]): presumed abort. Before it rolls
// back an undecided transaction it records an Abort decision under the
// same key, which fences off a commit that is merely slow: that commit's
// decision insert waits for the abort's and then fails, and Commit rolls
// back; if the commit's insert came first, recovery finds Commit and
// commits. An error saying the branch does not exist (PostgreSQL) or
// XAER_NOTA (MySQL) means that it was ended already.
//
// The ID of every transaction carries its coordinator's ID, and when it
// began; a branch's ID adds its participant's name. Recover resolves only
// the transactions of its own coordinator ID, so that one coordinator never
// ends another's live transaction: a process that restarts comes back with
// the same ID, and processes that run at once have IDs of their own.
// [Coordinator.ListInDoubt] lists the prepared branches of every
// coordinator, with their age and decision, for operators.
//
// # Preconditions
//
// [New] checks each participant's server and refuses one that cannot take
// part, saying what to do:
//
//   - PostgreSQL: max_prepared_transactions must be above 0. It is 0 by
//     default, which disables PREPARE TRANSACTION: set it (ALTER SYSTEM
//     SET max_prepared_transactions = 64, or in postgresql.conf; at least
//     max_connections is safe, and a standby needs as many as its primary)
//     and restart the server.
//   - MariaDB: 10.5.2 or later. Before it, a prepared XA branch was lost
//     when its connection ended (MDEV-742).
//   - MySQL: 8.0.29 or later with xa_detach_on_prepare ON (its default),
//     so that a prepared branch survives its connection and another
//     connection can end it.
//
// MySQL and MariaDB tables in a transaction must be InnoDB.
//
// A PostgreSQL branch that is prepared must not LISTEN, UNLISTEN or NOTIFY,
// create temporary tables, or hold cursors WITH HOLD: PREPARE TRANSACTION
// refuses them. An outbox whose dialect notifies through contrib/pgnotify
// ([github.com/resilience-go/resilience/outbox.Dialect.WithNotify]) runs
// pg_notify in the transaction that enqueues, so it can enqueue only in the
// home branch, which commits as a local transaction; elsewhere, leave the
// relay to its poll.
//
// # Saga or two-phase commit
//
// Use a saga ([github.com/resilience-go/resilience/saga]) when the steps
// are services rather than databases you hold connections to, when a step
// is slow or waits on people, when the participants must stay available
// while others are down, or when an effect is visible to the world before
// the end (an email, a payment). A saga never holds a lock across services
// and tolerates partitions; its price is that others can see the steps in
// between, and every step needs a compensation.
//
// Use two-phase commit when a few databases you run must change together,
// atomically, with no intermediate state anyone can see and no
// compensation to write, and a short wait on locks when a process dies is
// acceptable: moving money between two ledgers in different databases is
// the case. Every participant must be a database this package speaks to.
//
// # Observing
//
// [WithObserver] reports each commit, each failed second phase, recovery's
// errors, and alerts: a branch still in doubt past [WithAlertAfter]
// ([*InDoubtError]).
package twophase
