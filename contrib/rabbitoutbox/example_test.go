package rabbitoutbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/resilience-go/resilience/contrib/rabbitoutbox"
	"github.com/resilience-go/resilience/outbox"
)

// A relay that publishes an outbox in PostgreSQL to the exchange "events",
// each message with its topic as the routing key.
func ExampleDial() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	pub, err := rabbitoutbox.Dial(ctx, "amqp://guest:guest@localhost:5672/", rabbitoutbox.WithExchange("events"))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	relay := outbox.New(db, outbox.Postgres).NewRelay(pub)
	if err := relay.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// What a Publisher sends for a message.
func ExampleEncode() {
	exchange, routingKey, pub, err := rabbitoutbox.Encode(outbox.Message{
		ID:      "0190f0c4-5b1e-7c3a-9d2f-4e6a8b0c1d2e",
		Topic:   "orders.created",
		Key:     "order-42",
		Payload: []byte(`{"order":42}`),
		Headers: map[string]string{"trace-id": "4bf92f35"},
	}, rabbitoutbox.WithExchange("events"), rabbitoutbox.WithContentType("application/json"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exchange:", exchange)
	fmt.Println("routing key:", routingKey)
	fmt.Println("message-id:", pub.MessageId)
	fmt.Println("content-type:", pub.ContentType)
	fmt.Println("persistent:", pub.DeliveryMode == amqp.Persistent)
	fmt.Println("headers:", pub.Headers)
	fmt.Println("body:", string(pub.Body))
	// Output:
	// exchange: events
	// routing key: orders.created
	// message-id: 0190f0c4-5b1e-7c3a-9d2f-4e6a8b0c1d2e
	// content-type: application/json
	// persistent: true
	// headers: map[message-key:order-42 trace-id:4bf92f35]
	// body: {"order":42}
}

// Each topic is an exchange of its own, and the key routes within it, as
// for a consistent-hash exchange.
func ExampleWithRouting() {
	byTopic := rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) {
		return m.Topic, m.Key
	})
	exchange, routingKey, _, err := rabbitoutbox.Encode(outbox.Message{Topic: "orders", Key: "order-42"}, byTopic)
	fmt.Println(exchange, routingKey, err)
	// Output: orders order-42 <nil>
}

// A consumer reads the message back from a delivery; its ID is what an
// outbox.Inbox de-duplicates by.
func ExampleDecode() {
	d := amqp.Delivery{
		RoutingKey: "orders.created",
		MessageId:  "0190f0c4-5b1e-7c3a-9d2f-4e6a8b0c1d2e",
		Headers:    amqp.Table{rabbitoutbox.KeyHeader: "order-42", "trace-id": "4bf92f35", "x-delivery-count": int64(1)},
		Body:       []byte(`{"order":42}`),
	}
	m := rabbitoutbox.Decode(d)
	fmt.Println("ID:", m.ID)
	fmt.Println("topic:", m.Topic)
	fmt.Println("key:", m.Key)
	fmt.Println("headers:", m.Headers)
	fmt.Println("payload:", string(m.Payload))
	// Output:
	// ID: 0190f0c4-5b1e-7c3a-9d2f-4e6a8b0c1d2e
	// topic: orders.created
	// key: order-42
	// headers: map[trace-id:4bf92f35]
	// payload: {"order":42}
}
