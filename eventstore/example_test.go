package eventstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/outbox"
)

// openExample opens a store in a new SQLite file, and returns it with a
// func that removes the file.
func openExample() (*eventstore.Store, func()) {
	dir, err := os.MkdirTemp("", "eventstore-example-")
	if err != nil {
		panic(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "events.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		panic(err)
	}
	store := eventstore.New(db, eventstore.SQLite)
	if err := store.Migrate(context.Background()); err != nil {
		panic(err)
	}
	return store, func() { db.Close(); os.RemoveAll(dir) }
}

// appendOne appends events in a transaction of their own.
func appendOne(ctx context.Context, store *eventstore.Store, stream string, expected int64, events ...eventstore.Event) (int64, error) {
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	version, err := store.Append(ctx, tx, stream, expected, events...)
	if err != nil {
		return 0, err
	}
	return version, tx.Commit()
}

// cart is an aggregate: what its events say, folded.
type cart struct {
	Items int
	Open  bool
}

func applyCart(c cart, e eventstore.Event) cart {
	switch e.Type {
	case "Opened":
		c.Open = true
	case "ItemAdded":
		n, _ := strconv.Atoi(string(e.Payload))
		c.Items += n
	case "CheckedOut":
		c.Open = false
	}
	return c
}

// A command loads the aggregate, decides, and appends what happened at the
// version it loaded; a writer that lost the race learns the version that
// won.
func Example() {
	store, done := openExample()
	defer done()
	ctx := context.Background()

	_, _ = appendOne(ctx, store, "cart-42", eventstore.NoStream,
		eventstore.Event{Type: "Opened"}, eventstore.Event{Type: "ItemAdded", Payload: []byte("2")})

	c, version, _ := eventstore.Load(ctx, store, "cart-42", applyCart)
	fmt.Printf("%+v at version %d\n", c, version)

	_, err := appendOne(ctx, store, "cart-42", version, eventstore.Event{Type: "ItemAdded", Payload: []byte("1")})
	fmt.Println(err)
	_, err = appendOne(ctx, store, "cart-42", version, eventstore.Event{Type: "CheckedOut"}) // stale
	var conflict *eventstore.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println(err)
	}
	c, version, _ = eventstore.Load(ctx, store, "cart-42", applyCart)
	fmt.Printf("%+v at version %d\n", c, version)
	// Output:
	// {Items:2 Open:true} at version 2
	// <nil>
	// eventstore: version conflict on stream "cart-42": expected version 2, the stream is at version 3
	// {Items:3 Open:true} at version 3
}

// A subscription catches up on the log; its handler writes a read model in
// the transaction that moves the checkpoint.
func ExampleStore_Subscribe() {
	store, done := openExample()
	defer done()
	ctx := context.Background()
	db := store.DB()
	_, _ = db.ExecContext(ctx, "CREATE TABLE item_counts (stream TEXT PRIMARY KEY, items INTEGER NOT NULL)")
	_, _ = appendOne(ctx, store, "cart-1", eventstore.NoStream, eventstore.Event{Type: "ItemAdded", Payload: []byte("2")})
	_, _ = appendOne(ctx, store, "cart-2", eventstore.NoStream, eventstore.Event{Type: "ItemAdded", Payload: []byte("5")})
	_, _ = appendOne(ctx, store, "cart-1", 1, eventstore.Event{Type: "ItemAdded", Payload: []byte("1")})

	counts := func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
		for _, e := range events {
			n, _ := strconv.Atoi(string(e.Payload))
			if _, err := tx.ExecContext(ctx, `INSERT INTO item_counts (stream, items) VALUES (?, ?)
				ON CONFLICT (stream) DO UPDATE SET items = items + excluded.items`, e.Stream, n); err != nil {
				return err
			}
		}
		return nil
	}
	// UntilCaughtUp returns once the log is handled; without it, Subscribe
	// follows the log until ctx is done.
	err := store.Subscribe(ctx, "item-counts", counts, eventstore.UntilCaughtUp())
	fmt.Println(err)

	var one, two int
	_ = db.QueryRowContext(ctx, "SELECT items FROM item_counts WHERE stream = 'cart-1'").Scan(&one)
	_ = db.QueryRowContext(ctx, "SELECT items FROM item_counts WHERE stream = 'cart-2'").Scan(&two)
	checkpoint, _ := store.Checkpoint(ctx, "item-counts")
	fmt.Println(one, two, "checkpoint", checkpoint)
	// Output:
	// <nil>
	// 3 5 checkpoint 3
}

// A snapshot spares the replay of the events before it: Fold goes on from
// it.
func ExampleFold() {
	store, done := openExample()
	defer done()
	ctx := context.Background()
	for i := range 5 {
		_, _ = appendOne(ctx, store, "cart-7", int64(i), eventstore.Event{Type: "ItemAdded", Payload: []byte("1")})
	}
	c, version, _ := eventstore.Load(ctx, store, "cart-7", applyCart)
	_ = store.SaveSnapshot(ctx, "cart-7", version, []byte(strconv.Itoa(c.Items)))
	_, _ = appendOne(ctx, store, "cart-7", version, eventstore.Event{Type: "ItemAdded", Payload: []byte("10")})

	snap, _ := store.LoadSnapshot(ctx, "cart-7")
	items, _ := strconv.Atoi(string(snap.State))
	c, version, _ = eventstore.Fold(ctx, store, "cart-7", cart{Items: items}, snap.Version, applyCart)
	fmt.Println("snapshot at", snap.Version, "then", c.Items, "items at version", version)
	// Output:
	// snapshot at 5 then 15 items at version 6
}

// Events reach a broker through the outbox: the messages that announce
// them are enqueued in the transaction that appends them, with the event's
// ID as the message's, and an outbox relay publishes them after the
// commit.
func ExampleStore_Append_outbox() {
	store, done := openExample()
	defer done()
	ctx := context.Background()
	ob := outbox.New(store.DB(), outbox.SQLite)
	_ = ob.Migrate(ctx)

	tx, _ := store.DB().BeginTx(ctx, nil)
	events := []eventstore.Event{{Type: "Opened"}, {Type: "ItemAdded", Payload: []byte("3")}}
	_, err := store.Append(ctx, tx, "cart-9", eventstore.NoStream, events...)
	fmt.Println(err)
	for _, e := range events { // Append set their IDs, streams and versions
		err = ob.Enqueue(ctx, tx, outbox.Message{ID: e.ID, Topic: "carts." + e.Type, Key: e.Stream, Payload: e.Payload})
		fmt.Println(e.Stream, e.Version, err)
	}
	_ = tx.Commit()

	backlog, _ := ob.Backlog(ctx)
	fmt.Println("to publish:", backlog.Pending)
	// Output:
	// <nil>
	// cart-9 1 <nil>
	// cart-9 2 <nil>
	// to publish: 2
}
