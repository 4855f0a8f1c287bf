package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/outbox"
)

// openExampleDB opens a new SQLite database in a temporary directory.
func openExampleDB() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		panic(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		panic(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

func Example() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	orders := outbox.New(db, outbox.SQLite)
	if err := orders.Migrate(ctx); err != nil {
		panic(err)
	}

	// The business transaction writes the order and its message together.
	tx, _ := db.BeginTx(ctx, nil)
	// ... INSERT INTO orders ...
	err := orders.Enqueue(ctx, tx, outbox.Message{
		Topic: "orders.created", Key: "o-1", Payload: []byte(`{"order":"o-1"}`),
	})
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	// The relay publishes it; Run would keep doing so.
	publish := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		fmt.Printf("%s %s %s\n", m.Topic, m.Key, m.Payload)
		return nil
	})
	relay := orders.NewRelay(publish)
	n, err := relay.Process(ctx)
	fmt.Println(n, err)
	// Output:
	// orders.created o-1 {"order":"o-1"}
	// 1 <nil>
}

// A rolled-back transaction takes its messages with it.
func ExampleOutbox_Enqueue_rollback() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	orders := outbox.New(db, outbox.SQLite)
	_ = orders.Migrate(ctx)

	tx, _ := db.BeginTx(ctx, nil)
	_ = orders.Enqueue(ctx, tx, outbox.Message{Topic: "orders.created"})
	_ = tx.Rollback()

	backlog, err := orders.Backlog(ctx)
	fmt.Println(backlog.Pending, err)
	// Output: 0 <nil>
}

// A consumer's inbox makes a redelivered message a no-op.
func ExampleInbox_Receive() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	billing := outbox.New(db, outbox.SQLite) // the consumer's own database
	_ = billing.Migrate(ctx)
	inbox := billing.NewInbox("billing")

	for range 2 { // the broker delivers the message twice
		tx, _ := db.BeginTx(ctx, nil)
		first, err := inbox.Receive(ctx, tx, "0193a1b2-msg-1")
		if err != nil {
			panic(err)
		}
		if first {
			fmt.Println("charge the customer") // in the same transaction
		} else {
			fmt.Println("already done")
		}
		_ = tx.Commit()
	}
	// Output:
	// charge the customer
	// already done
}

// A dead message waits for an operator, who lists it and sends it again.
func ExampleOutbox_ListDead() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	orders := outbox.New(db, outbox.SQLite)
	_ = orders.Migrate(ctx)
	tx, _ := db.BeginTx(ctx, nil)
	_ = orders.Enqueue(ctx, tx, outbox.Message{ID: "m-1", Topic: "orders.created"})
	_ = tx.Commit()

	down := true
	relay := orders.NewRelay(outbox.PublisherFunc(func(context.Context, outbox.Message) error {
		if down {
			return errors.New("broker: connection refused")
		}
		return nil
	}), outbox.WithMaxAttempts(1))
	_, _ = relay.Process(ctx)

	dead, _ := orders.ListDead(ctx, 10)
	for _, m := range dead {
		fmt.Printf("%s after %d attempt: %s\n", m.ID, m.Attempts, m.LastError)
	}
	down = false
	n, _ := orders.Retry(ctx, "m-1")
	fmt.Println("retried:", n)
	n2, _ := relay.Process(ctx)
	fmt.Println("published:", n2)
	// Output:
	// m-1 after 1 attempt: broker: connection refused
	// retried: 1
	// published: 1
}
