package natsoutbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/resilience-go/resilience/contrib/natsoutbox"
	"github.com/resilience-go/resilience/outbox"
)

// A relay that publishes an outbox in PostgreSQL to a JetStream stream.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://localhost/shop")
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	// The stream takes the outbox's topics, and drops a message whose ID
	// it has seen in the last ten minutes.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       "ORDERS",
		Subjects:   []string{"orders.>"},
		Duplicates: 10 * time.Minute,
	}); err != nil {
		log.Fatal(err)
	}
	pub := natsoutbox.New(js, natsoutbox.WithExpectStream("ORDERS"))
	relay := outbox.New(db, outbox.Postgres).NewRelay(pub)
	if err := relay.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Publish reports each message's fate; the relay calls it, but a program
// may as well.
func ExamplePublisher_Publish() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs := []outbox.Message{
		{ID: "0190a5c2-1", Topic: "orders.created", Payload: []byte(`{"id":1}`)},
		{ID: "0190a5c2-2", Topic: "orders.created", Payload: []byte(`{"id":2}`)},
	}
	errs := natsoutbox.New(js).Publish(ctx, msgs)
	for i, err := range errs {
		switch {
		case err == nil:
			fmt.Println(msgs[i].ID, "stored")
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			fmt.Println(msgs[i].ID, "no stream takes", msgs[i].Topic)
		default:
			fmt.Println(msgs[i].ID, err)
		}
	}
}

// NewMsg shows what a message looks like on the wire.
func ExampleNewMsg() {
	m := natsoutbox.NewMsg("orders.created", outbox.Message{
		ID:      "0190a5c2-7e1f-7c3a-9b4e-2f1d8a6c5b3e",
		Topic:   "orders.created",
		Key:     "order-42",
		Payload: []byte(`{"order":42}`),
		Headers: map[string]string{"Content-Type": "application/json"},
	})
	fmt.Println("subject:", m.Subject)
	for _, k := range slices.Sorted(maps.Keys(m.Header)) {
		fmt.Printf("%s: %s\n", k, m.Header.Get(k))
	}
	fmt.Println("data:", string(m.Data))
	// Output:
	// subject: orders.created
	// Content-Type: application/json
	// Nats-Msg-Id: 0190a5c2-7e1f-7c3a-9b4e-2f1d8a6c5b3e
	// Outbox-Key: order-42
	// data: {"order":42}
}

// WithSubject maps topics to subjects: here every topic of the service
// goes under billing., the subjects of its stream.
func ExampleWithSubject() {
	billing := func(topic string) string { return "billing." + topic }
	// The publisher: natsoutbox.New(js, natsoutbox.WithSubject(billing))
	for _, topic := range []string{"invoice.issued", "invoice.paid"} {
		m := natsoutbox.NewMsg(billing(topic), outbox.Message{Topic: topic})
		fmt.Println(topic, "->", m.Subject)
	}
	// Output:
	// invoice.issued -> billing.invoice.issued
	// invoice.paid -> billing.invoice.paid
}
