package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/resilience-go/resilience/contrib/natsoutbox"
	"github.com/resilience-go/resilience/outbox"
)

// broker is where the relay publishes and the warehouse fetches: NATS
// JetStream, or a stand-in in this process.
type broker interface {
	outbox.Publisher
	name() string
	// fetch waits for up to n messages for the warehouse's durable
	// consumer, or until ctx is done.
	fetch(ctx context.Context, n int) ([]delivery, error)
	// drained reports whether the consumer has acknowledged every message
	// the broker holds.
	drained(ctx context.Context) (bool, error)
}

// delivery is a message handed to the warehouse, to acknowledge once
// applied, or to refuse for a redelivery later.
type delivery struct {
	msg      outbox.Message
	ack, nak func()
}

// connect returns JetStream at url, with a stream and a durable consumer of
// their own, or the in-process broker when url is empty or no server
// answers, and says which.
func connect(ctx context.Context, url string, out io.Writer) (broker, func(), error) {
	if url == "" {
		fmt.Fprintln(out, "no NATS URL given: publishing to a broker in this process")
		return newMemBroker(), func() {}, nil
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		fmt.Fprintf(out, "NATS at %s does not answer (%v): publishing to a broker in this process\n", url, err)
		return newMemBroker(), func() {}, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	name := "DATASYNC_" + strings.ToUpper(run)
	subject := "datasync." + run
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject + ".>"},
		Storage: jetstream.MemoryStorage, Duplicates: time.Minute})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream stream: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "warehouse",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 500 * time.Millisecond})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream consumer: %w", err)
	}
	fmt.Fprintf(out, "publishing to NATS JetStream at %s, stream %s\n", url, name)
	b := &jsBroker{Publisher: natsoutbox.New(js, natsoutbox.WithSubject(func(topic string) string { return subject + "." + topic }),
		natsoutbox.WithExpectStream(name)), cons: cons}
	return b, func() {
		js.DeleteStream(context.Background(), name) //nolint:errcheck // a memory stream of this run
		nc.Close()
	}, nil
}

type jsBroker struct {
	*natsoutbox.Publisher
	cons jetstream.Consumer
}

func (b *jsBroker) name() string { return "NATS JetStream" }

func (b *jsBroker) drained(ctx context.Context) (bool, error) {
	info, err := b.cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
}

func (b *jsBroker) fetch(ctx context.Context, n int) ([]delivery, error) {
	batch, err := b.cons.Fetch(n, jetstream.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	var out []delivery
	for m := range batch.Messages() {
		msg := outbox.Message{ID: m.Headers().Get(nats.MsgIdHdr), Payload: m.Data(), Headers: map[string]string{}}
		for _, h := range []string{"type", "stream", "version"} {
			msg.Headers[h] = m.Headers().Get(h)
		}
		out = append(out, delivery{msg: msg, ack: func() { m.Ack() }, nak: func() { m.NakWithDelay(50 * time.Millisecond) }}) //nolint:errcheck // a lost ack means a redelivery
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, batch.Error()
}

// memBroker stands in for JetStream: a log of the messages it accepted,
// de-duplicated by ID, and one durable consumer that gets again, in
// order, what it has not acknowledged.
type memBroker struct {
	mu     sync.Mutex
	log    []outbox.Message
	ids    map[string]bool
	acked  map[int]bool
	next   int // the first message not yet acknowledged
	notify chan struct{}
}

func newMemBroker() *memBroker {
	return &memBroker{ids: map[string]bool{}, acked: map[int]bool{}, notify: make(chan struct{}, 1)}
}

func (b *memBroker) name() string { return "in-process" }

func (b *memBroker) Publish(_ context.Context, msgs []outbox.Message) []error {
	b.mu.Lock()
	for _, m := range msgs {
		if !b.ids[m.ID] {
			b.ids[m.ID] = true
			b.log = append(b.log, m)
		}
	}
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return nil
}

func (b *memBroker) fetch(ctx context.Context, n int) ([]delivery, error) {
	for {
		b.mu.Lock()
		var out []delivery
		for i := b.next; i < len(b.log) && len(out) < n; i++ {
			if b.acked[i] {
				continue
			}
			out = append(out, delivery{msg: b.log[i], ack: func() { b.ack(i) }, nak: func() {}})
		}
		b.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-b.notify:
		case <-t.C:
		}
		t.Stop()
	}
}

func (b *memBroker) drained(context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next == len(b.log), nil
}

func (b *memBroker) ack(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acked[i] = true
	for b.acked[b.next] {
		delete(b.acked, b.next)
		b.next++
	}
}
