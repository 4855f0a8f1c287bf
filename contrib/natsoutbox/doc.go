// Package natsoutbox publishes the messages of a transactional outbox
// (package [outbox]) to NATS JetStream: a [Publisher] is the
// [outbox.Publisher] that an [outbox.Relay] sends its batches through.
//
//	nc, err := nats.Connect(url)
//	js, err := jetstream.New(nc)
//	relay := outbox.New(db, outbox.Postgres).NewRelay(natsoutbox.New(js))
//	err = relay.Run(ctx)
//
// Each message goes to the subject named by its topic ([WithSubject] maps
// topics to subjects), which a stream must take. Its payload is the body,
// its headers are NATS headers, its ID is in the Nats-Msg-Id header and its
// key, if any, in the [KeyHeader] header ([NewMsg] shows the mapping).
//
// # Acceptance
//
// [Publisher.Publish] sends a batch without waiting between messages, then
// waits for the stream's acknowledgement (its PubAck) of each message. A
// message is accepted, and the relay marks it published, only once the
// stream has acknowledged it, which the stream does once a quorum of its
// replicas has stored the message, or once it has recognised the message
// as a duplicate. (The relay deletes published messages at once, or keeps
// them for [outbox.WithRetention].) Every other outcome is that message's
// error, and the relay tries it again later: a stream that refuses it (too
// large, limits reached, [WithExpectStream] not met), a lost connection, or
// a context that ended first. One message's failure does not hold up the
// others of its batch.
//
// The stream must acknowledge what it stores: one with NoAck set stores
// messages and never answers, so that each of them would fail when the
// context ends, be published again at every attempt, and end dead
// ([outbox.WithMaxAttempts]). Nothing but the stream should answer on its
// subjects: Publish takes the first answer to a message for the stream's.
//
// When nothing at all is subscribed to a message's subject, the server says
// so at once, and the message fails with an error that wraps
// [jetstream.ErrNoStreamResponse]. That holds only then: a subject that
// plain NATS subscribers take, and no stream, gets no acknowledgement, and
// its messages fail only when the context ends. The context given to
// Publish must therefore have a deadline; the relay gives each call one
// ([outbox.WithPublishTimeout]).
//
// # Duplicates
//
// The relay publishes at least once: a batch whose acknowledgements were
// lost, or whose relay stalled past its lease, is published again. The
// stream drops a message whose Nats-Msg-Id it has stored within its
// duplicate window (the stream's Duplicates setting, two minutes by
// default), and acknowledges it as a duplicate. A copy that comes later
// than the window, such as one the relay tried again after a long outage
// or backoff, is stored a second time. Consumers that must act once per
// message therefore record the IDs they have handled, with [outbox.Inbox],
// in the transaction that does the work; the duplicate window only makes
// such duplicates rare.
//
// # Cancellation
//
// Publish honours its context: when it ends, the messages not yet
// acknowledged fail with an error that wraps the context's cause, and
// Publish returns at once; the acknowledgements that had already come still
// count. The same holds when the connection is lost, with [ErrNotConnected]:
// Publish sends nothing more on it. It starts no goroutine, and it stops
// listening for the acknowledgements of its batch before it returns, so
// nothing of a call outlives it.
package natsoutbox
