// Package rabbitoutbox publishes the messages of an [outbox] to RabbitMQ,
// with publisher confirms: a message the relay counts as published is one
// the broker has taken responsibility for.
//
//	pub, err := rabbitoutbox.Dial(ctx, "amqp://guest:guest@localhost:5672/",
//		rabbitoutbox.WithExchange("events"))
//	if err != nil {
//		return err
//	}
//	defer pub.Close()
//	relay := outbox.New(db, outbox.Postgres).NewRelay(pub)
//	err = relay.Run(ctx)
//
// # What is sent
//
// Each [outbox.Message] becomes one AMQP publishing ([Encode] shows it):
// the exchange of [WithExchange] (by default the default exchange, which
// routes to the queue of that name) with the Topic as the routing key, or
// wherever [WithRouting] says; the ID as the message-id property, for
// consumers' de-duplication; the Key in the [KeyHeader] header; the Headers
// as headers; the Payload as the body. Messages are persistent and
// mandatory by default ([WithPersistent], [WithMandatory]). A consumer gets
// the message back with [Decode], and drops duplicates with an
// [outbox.Inbox] keyed by the ID.
//
// # Confirms
//
// The Publisher puts its channel in confirm mode. [Publisher.Publish] sends
// a batch, in order, and waits for the broker's confirm of each message
// within its ctx; a message's error is nil only when the broker acked it and
// did not return it. Nothing is reported published that the broker did not
// confirm, so a message may be published twice, but is not lost on its way
// to the broker. The relay keeps each message that failed and tries it
// again, up to its maximum of attempts.
//
// These fail one message alone, and the rest of the batch goes on: a nack
// ([ErrNacked]); a return of a mandatory message that matched no queue
// ([*ReturnedError]); a message AMQP cannot carry ([ErrFieldTooLong]); and
// a message for an exchange that does not exist. A publish to such an
// exchange would make the broker close the channel, so before it first
// publishes to an exchange on a channel the Publisher checks that the
// exchange exists (a passive declare, once per exchange and channel); a
// message for one that does not fails with the broker's *amqp.Error (404
// NOT_FOUND) without being sent, and the next Publish checks that exchange
// again. A failed check costs a new channel, as the broker closes the
// channel it ran on.
//
// These fail the rest of the batch: ctx ending, [Publisher.Close], and the
// channel closing. The messages sent and not yet confirmed fail with
// [ErrUnconfirmed], wrapping the cause (ctx's error, [ErrClosed], the
// broker's or the connection's error), and those not yet sent with the same
// cause. The broker still closes the channel on a publish it refuses that
// the check cannot foresee: to an exchange deleted after it was checked, or
// one the user may not write to (403 ACCESS_REFUSED). Then the messages of
// the batch that it had not confirmed, some sent before the refused one
// included, fail with its error. The next Publish opens a new channel and
// checks each exchange again, so an exchange deleted after its check fails
// the rest of one batch, and its own messages alone after that.
//
// # Recovery
//
// When its channel closes, the Publisher opens a new one on the next
// Publish. A Publisher made by [Dial] owns its connection and, when it is
// lost, connects again on the next Publish: a relay that goes on calling
// Publish resumes by itself when the broker is back, and the messages that
// failed meanwhile wait in the outbox. A Publisher made by [New] uses the
// caller's connection, and once that is closed every Publish fails with
// [ErrConnectionClosed]: make a new Publisher on a new connection.
//
// # Goroutines
//
// The AMQP library's calls take no ctx, so a Publisher runs those that wait
// for the broker on goroutines of its own, and Publish gives up on them
// when its ctx ends: opening a channel, checking an exchange, and closing a
// channel Publish gave up on (after ctx ended with messages unconfirmed, or
// after the channel failed). Each ends with its call, and closes the
// channel it was left with. [Publisher.Close] waits for them at most 5s,
// the broker's answer to closing included. A Publisher made by Dial closes
// its connection, by force once that time is up, which ends them; for one
// made by New, those still waiting then end when the broker answers or the
// caller closes the connection.
// The AMQP library runs its own goroutines for each connection.
package rabbitoutbox
