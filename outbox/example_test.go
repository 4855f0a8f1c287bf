package outbox_test

import (
	"context"
	"database/sql"
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
	if err := outbox.Migrate(ctx, db, outbox.SQLite); err != nil {
		panic(err)
	}

	// The business transaction writes the order and its message together.
	tx, _ := db.BeginTx(ctx, nil)
	// ... INSERT INTO orders ...
	err := outbox.Enqueue(ctx, tx, outbox.SQLite, outbox.Message{
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
	relay := outbox.NewRelay(db, outbox.SQLite, publish)
	n, err := relay.Process(ctx)
	fmt.Println(n, err)
	// Output:
	// orders.created o-1 {"order":"o-1"}
	// 1 <nil>
}

// A rolled-back transaction takes its messages with it.
func ExampleEnqueue_rollback() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	_ = outbox.Migrate(ctx, db, outbox.SQLite)

	tx, _ := db.BeginTx(ctx, nil)
	_ = outbox.Enqueue(ctx, tx, outbox.SQLite, outbox.Message{Topic: "orders.created"})
	_ = tx.Rollback()

	backlog, err := outbox.ReadBacklog(ctx, db, outbox.SQLite)
	fmt.Println(backlog.Pending, err)
	// Output: 0 <nil>
}

// A consumer's inbox makes a redelivered message a no-op.
func ExampleInbox_Receive() {
	db, done := openExampleDB()
	defer done()
	ctx := context.Background()
	_ = outbox.Migrate(ctx, db, outbox.SQLite)
	inbox := outbox.NewInbox(outbox.SQLite, "billing")

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
