package outbox

import (
	"context"
	"fmt"
	"time"
)

// Inbox de-duplicates messages on the consumer's side: a consumer records
// each message's ID in the same transaction as the work the message causes,
// so that a message delivered twice (at-least-once delivery does that) is
// worked on once. Make one per consumer with [Outbox.NewInbox]; it is safe
// for concurrent use. Records live in the outbox's table_inbox, keyed by
// (consumer, message ID); [Inbox.Sweep] deletes old ones.
type Inbox struct {
	d        Dialect
	consumer string
	insert   string
}

// NewInbox returns the inbox of consumer, in the outbox's database: a
// consumer's service makes an Outbox of its own database to keep it. It
// panics if consumer is empty or longer than 128 bytes.
func (o *Outbox) NewInbox(consumer string) *Inbox {
	return newInbox(o.d, consumer)
}

func newInbox(d Dialect, consumer string) *Inbox {
	if consumer == "" || len(consumer) > 128 {
		panic(fmt.Sprintf("outbox: NewInbox(%q): want a consumer name of 1 to 128 bytes", consumer))
	}
	if d.db == nil {
		panic("outbox: NewInbox: " + errZeroDialect.Error()[len("outbox: "):])
	}
	return &Inbox{
		d: d, consumer: consumer,
		insert: d.db.sql.InsertIgnore(d.table+"_inbox", []string{"consumer", "message_id", "received_at"}, "?, ?, "+d.now()),
	}
}

// Receive records messageID as received by the inbox's consumer, through
// tx, the consumer's transaction, and reports whether it is the first time:
// if not, the message was handled before and the consumer should skip it
// (and commit). The record exists if and only if tx commits.
func (in *Inbox) Receive(ctx context.Context, tx Execer, messageID string) (first bool, err error) {
	if messageID == "" || len(messageID) > maxID {
		return false, fmt.Errorf("outbox: inbox: message ID of %d bytes: want 1 to %d", len(messageID), maxID)
	}
	res, err := tx.ExecContext(ctx, in.insert, in.consumer, messageID)
	if err != nil {
		return false, fmt.Errorf("outbox: inbox: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Sweep deletes, in one batch of at most 10000, the inbox's records older
// than olderThan, and returns how many it deleted. Keep records longer than
// the broker may redeliver a message, dead-letter resubmissions included:
// a week is a common choice.
func (in *Inbox) Sweep(ctx context.Context, db Execer, olderThan time.Duration) (int64, error) {
	d := in.d
	query := d.db.sql.DeleteFirst("{t}_inbox", "consumer, message_id", "consumer = ? AND received_at < "+d.now()+" - ?",
		"received_at", 10_000)
	res, err := db.ExecContext(ctx, d.q(query), in.consumer, olderThan.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("outbox: inbox sweep: %w", err)
	}
	return res.RowsAffected()
}
